"""Start an app server (Gunicorn, Uvicorn, Granian ...) on a free loopback port, and always stop it.

    with serve(ServerSpec("asgi")) as server:
        httpx.get(server.url + "/hello")

``serve`` starts the server as its own process group under a small guard
(``conclab.processes.guard``), waits for ``/health``, yields a :class:`Server` with the URL
and the process ids, and on exit stops the whole group: TERM, then KILL after the
runner's grace period. A server that fails to start raises :class:`ServerStartError`
carrying the server's own output; when its port was taken meanwhile
(``port_in_use``), another free port is tried. If the Python process that called
``serve`` dies - an exception, Ctrl-C, or a kernel killed with SIGKILL - the guard
stops the server.

:func:`launch` and :func:`start_on_a_free_port` are the one start-wait-retry path:
nginx (``conclab.processes.nginx``) starts through them too.
"""

from __future__ import annotations

import contextlib
import dataclasses
import errno
import importlib.util
import os
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import psutil

from ..base import system
from ..base.errors import ServerStartError, SpecError
from ..base.specs import LIMITS, LOOPBACK, ServerSpec
from . import interpreters

GRACE = 5.0  # seconds between TERM and KILL, unless the runner says otherwise


@dataclass
class Server:
    """A running server: where it listens and which processes it is."""

    spec: ServerSpec  # or, for nginx, its NginxSpec
    url: str
    port: int
    guard_pid: int
    log_path: Path
    command: list[str]
    proc: subprocess.Popen | None = field(default=None, repr=False)  # the guard process
    grace: float = GRACE  # seconds from TERM to KILL when it stops
    serves_in_master: bool = False  # one process that serves requests itself (one Uvicorn process)
    interpreter: dict | None = None  # the server's own /interpreter answer: version, GIL on or off

    def stop(self) -> None:
        """Stop every process of the server: TERM, then KILL after the grace period."""
        stop_server(self, self.grace)

    def describe(self) -> str:
        """What runs where, as `conclab serve` prints it."""
        return (
            f"{self.spec.label} listening on {self.url}\n"
            f"  command: {shlex.join(self.command)}\n"
            f"  python: {interpreters.gil_words(self.interpreter)} (as the server reports it)\n"
            f"  pids: guard {self.guard_pid}, master {self.master_pid}, "
            f"workers {self.worker_pids}\n"
            f"  log: {self.log_path}"
        )

    def running(self) -> bool:
        """True while the server (its guard) has not exited."""
        return self.proc is not None and self.proc.poll() is None

    def exit_code(self) -> int | None:
        """The server's own exit code once it has exited (None while it runs).

        Its guard ends by KILLing its process group, itself included, so the guard's
        status is KILL whatever the server did: the guard writes the server's code
        beside the log first. Without that file (the guard itself was killed), the
        guard's status is all there is.
        """
        if self.proc is None or self.proc.poll() is None:
            return None
        with contextlib.suppress(OSError, ValueError):
            return int(self.log_path.with_suffix(".exit").read_text())
        return self.proc.returncode

    @property
    def pgid(self) -> int:
        return self.guard_pid

    def processes(self) -> list[psutil.Process]:
        try:
            return psutil.Process(self.guard_pid).children(recursive=True)
        except psutil.NoSuchProcess:
            return []

    # A server that fails to start can exit between two of these calls: a
    # vanished process reads as "no pids", and the caller sees the exit itself.

    @property
    def master_pid(self) -> int | None:
        try:
            kids = psutil.Process(self.guard_pid).children()
        except psutil.NoSuchProcess:
            return None
        return kids[0].pid if kids else None

    @property
    def worker_pids(self) -> list[int]:
        """Processes that serve requests (for a single Uvicorn process: itself).

        An ASGI app's own helpers are not workers: its process pool (/process-cpu)
        and multiprocessing's resource tracker.
        """
        master = self.master_pid
        if master is None:
            return []
        if self.serves_in_master:  # its children are the app's pool processes
            return [master]
        try:
            workers = [
                p.pid
                for p in psutil.Process(master).children()
                if "resource_tracker" not in " ".join(_cmdline(p))
            ]
        except psutil.NoSuchProcess:
            return []
        return workers or [master]

    @property
    def pids(self) -> list[int]:
        """Every process of the server, the guard included."""
        return [self.guard_pid] + [p.pid for p in self.processes()]

    def cpu_seconds(self) -> float:
        """CPU time used so far by every server process (children included, not the guard).

        Read it before and after a run: the difference over the requests served is
        the server's CPU cost per request. psutil's cpu_times count clock ticks
        (10 ms), too coarse for a short run, so on Linux each thread's
        /proc/PID/task/TID/schedstat (nanoseconds on the CPU) is summed instead
        (see system.process_cpu_ns).
        """
        total = 0.0
        for p in self.processes():
            with contextlib.suppress(psutil.Error):
                total += _thread_cpu_ns(p.pid) / 1e9
        return total

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def rss_bytes(self) -> int:
        """Memory of every server process (not the guard), summed as PSS on Linux.

        PSS (proportional set size) splits each shared page between the processes
        that share it, so forked workers are not charged N times for the code
        they share with their master - the honest total for N processes. Other
        systems have no PSS: there it is RSS (system.memory_label says which).
        """
        total = 0
        for p in self.processes():
            with contextlib.suppress(psutil.Error):
                total += system.memory_of(p)
        return total


def _cmdline(proc):
    try:
        return proc.cmdline()
    except psutil.Error:
        return []


def _thread_cpu_ns(pid):
    """Nanoseconds every thread of ``pid`` has spent on a CPU (schedstat on Linux)."""
    return system.process_cpu_ns(pid)


def free_port(host: str = LOOPBACK) -> int:
    with socket.socket() as s:
        s.bind((host, 0))
        return s.getsockname()[1]


TRACEBACK = "Traceback (most recent call last):"
MAX_CAUSE_LINES = 60  # of the first traceback kept above the tail (its innermost frames)


def start_output(log: str, lines: int = 25) -> str:
    """What a failed start quotes of the server's log: its last ``lines`` lines, and
    above them the log's first traceback when it ends before them.

    The first traceback is the cause (the app's own error, in the first worker that
    failed to load it); the end of the log is how the server died, and that can be
    long. Gunicorn's master halts when a worker fails to boot; if a second one fails
    while it halts, the master dies of an uncaught HaltServer of its own, a chained
    traceback of 30-odd lines (https://github.com/benoitc/gunicorn/issues/2393)
    that alone fills the tail. How often depends on timing alone: about one start in
    two of an app that raises on import, with 4 workers on one core.
    """
    text = log.strip().splitlines()
    start = max(0, len(text) - lines)
    first = next((i for i, line in enumerate(text[:start]) if line.strip() == TRACEBACK), None)
    if first is None:
        return "\n".join(text[start:])
    end = first + 1  # its exception line: the first unindented line after the frames
    while end < len(text) and (not text[end].strip() or text[end].startswith(" ")):
        end += 1
    cause = text[first : min(end + 1, start)]
    if len(cause) > MAX_CAUSE_LINES:
        cause = [cause[0], "  ...", *cause[-(MAX_CAUSE_LINES - 1) :]]
    skipped = ["..."] if end + 1 < start else []
    return "\n".join([*cause, *skipped, *text[start:]])


def port_taken(port: int, host: str = LOOPBACK) -> bool:
    """True if another socket holds ``port``: we try to bind it ourselves (EADDRINUSE).

    SO_REUSEADDR, as servers set it, so that connections of a server that just
    exited (TIME_WAIT) do not count; a listening socket still does.
    """
    with socket.socket() as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind((host, port))
        except OSError as err:
            return err.errno == errno.EADDRINUSE
    return False


def taken_by_another_program(server: Server) -> bool:
    """True if another program holds the server's port: the start failed because of it.

    A process the server forked away (a crashing lab submission's child, say) may
    still hold the port the server bound itself; it writes to the server's log, so
    its open files name it. Where the system does not say who holds a port, a
    taken port counts as another program's.
    """
    if not port_taken(server.port):
        return False
    try:
        holders = {
            c.pid
            for c in psutil.net_connections("tcp")
            if c.status == psutil.CONN_LISTEN and c.laddr and c.laddr[1] == server.port and c.pid
        }
    except psutil.Error:
        return True
    for pid in holders:
        with contextlib.suppress(psutil.Error):
            if any(f.path == str(server.log_path) for f in psutil.Process(pid).open_files()):
                return False  # one of the server's own
    return True


def launch(
    spec,
    command: list[str],
    port: int,
    log_path: Path,
    start_timeout: float,
    *,
    env: dict[str, str] | None = None,
    grace: float = GRACE,
    serves_in_master: bool = False,
    ready: Callable[[Server], bool] = lambda server: True,
) -> Server:
    """Start ``command`` under the guard, on ``spec``'s cores, and wait until it serves.

    ``spec`` gives the label and the cores (``resolved_cpus``); the server's output
    goes to ``log_path``. See :func:`wait_for_health` for what "serves" means.
    """
    guard = [
        sys.executable,
        "-m",
        "conclab.processes.guard",
        "--parent",
        str(os.getpid()),
        "--cpus",
        ",".join(map(str, spec.resolved_cpus())),
        "--grace",
        f"{grace:g}",
        "--log-dir",
        str(log_path.parent),
        "--exit-file",
        str(log_path.with_suffix(".exit")),
        "--",
        *command,
    ]
    with open(log_path, "ab") as log:
        proc = subprocess.Popen(
            guard,
            stdin=subprocess.PIPE,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            env=env,
        )
    server = Server(
        spec,
        f"http://{LOOPBACK}:{port}",
        port,
        proc.pid,
        log_path,
        command,
        proc,
        grace,
        serves_in_master,
    )
    try:
        return wait_for_health(server, start_timeout, ready=lambda: ready(server))
    except (
        BaseException
    ):  # Ctrl-C while starting: a notebook kernel lives on, so must not the server
        server.stop()
        raise


def start_on_a_free_port(
    start: Callable[[int], Server], port: int | None = None, attempts: int = 3
) -> Server:
    """``start(port)`` on ``port``, or on a free port: another program may take a free
    port between our check and the server's bind, so a start whose port was taken
    (``ServerStartError.port_in_use``) is tried again on another, up to ``attempts`` times."""
    tries = 1 if port else attempts
    for attempt in range(1, tries + 1):
        try:
            return start(port or free_port())
        except ServerStartError as err:
            if not err.port_in_use or attempt == tries:
                raise
    raise AssertionError("unreachable: the last attempt returns or raises")


def check_installed(spec: ServerSpec) -> None:
    """A runner or app whose package the lab's Python lacks is one clear line, not a
    server that dies starting. (Another interpreter, ``spec.python``, speaks for itself.)"""
    if spec.python is None:
        missing = [name for name in spec.needs if importlib.util.find_spec(name) is None]
        if missing:
            raise SpecError(
                f"{spec.label} needs {', '.join(missing)}, not installed in {sys.executable}: "
                "install the lab again (make setup)"
            )


def _start(spec: ServerSpec, port: int, start_timeout: float, log_dir: Path) -> Server:
    env = dict(os.environ, PYTHONUNBUFFERED="1", THREADPOOL_SIZE=str(spec.threadpool))
    env.pop("WEB_CONCURRENCY", None)  # Uvicorn would read it as --workers
    env.update(system.server_env())  # macOS: forked workers may touch Objective-C
    # A server inherits our open-files limit: macOS starts at 256, fewer than a
    # 256-user run's sockets. Raised once here (a no-op where it is high enough).
    system.raise_open_files_limit(LIMITS["concurrency"])
    env.update(dict(spec.env))
    # Another Python (spec.python) runs from a venv of its own, made on first use.
    command = interpreters.prepare(spec).command(port)
    # every worker is up, not just the first to answer
    server = launch(
        spec,
        command,
        port,
        log_dir / f"{spec.kind}-{port}.log",
        start_timeout,
        env=env,
        grace=spec.runner.grace,
        serves_in_master=spec.serves_in_master,
        ready=lambda server: len(server.worker_pids) >= spec.workers,
    )
    server.interpreter = interpreters.read_report(server.url, server.log())
    return server


def listens_on(server: Server) -> bool:
    """True if one of the server's own processes holds the listening socket.

    Another lab's server may own the port (two notebooks picked it at once);
    its /health would answer for ours.
    """
    for p in server.processes():
        try:
            conns = (
                p.net_connections("tcp") if hasattr(p, "net_connections") else p.connections("tcp")
            )
        except psutil.Error:
            continue
        if any(
            c.status == psutil.CONN_LISTEN and c.laddr and c.laddr[1] == server.port for c in conns
        ):
            return True
    return False


def wait_for_health(
    server: Server, start_timeout: float, ready: Callable[[], bool] = lambda: True
) -> Server:
    """Poll ``/health`` until it answers 200, ``ready()`` holds and one of the server's
    own processes holds the listening socket; a start that fails or takes too long
    stops the server and raises ServerStartError with its output."""
    deadline = time.monotonic() + start_timeout
    bound = False  # seen holding its port: then a failure is the server's own, not a taken port
    with httpx.Client(timeout=1.0, trust_env=False) as client:
        while True:
            exited = server.proc.poll() is not None
            if exited or time.monotonic() > deadline:
                server.stop()  # close our end of its stdin pipe; KILL any straggler in the group
                what = (
                    f"exited while starting (code {server.exit_code()})"
                    if exited
                    else f"did not answer /health within {start_timeout:g} s"
                )
                output = start_output(server.log())
                # A process the server forked away may hold the port it bound itself:
                # that port was ours, so trying another would only fail again.
                taken = not bound and taken_by_another_program(server)
                in_use = f"; port {server.port} is in use" if taken else ""
                raise ServerStartError(
                    f"{server.spec.label} {what}{in_use}.",
                    output=output,
                    command=server.command,
                    port_in_use=taken,
                )
            try:
                ok = client.get(server.url + "/health").status_code == 200
            except httpx.HTTPError:
                ok = False
            listening = bound = bound or listens_on(server)
            if ok and ready() and listening:
                return server
            time.sleep(0.05)


def stop_server(server: Server, grace: float = GRACE) -> None:
    proc = server.proc
    with contextlib.suppress(OSError):
        proc.stdin.close()  # the guard sees EOF and stops the group gracefully
    try:
        proc.wait(timeout=grace + 2)
    except subprocess.TimeoutExpired:
        pass
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(server.pgid, signal.SIGKILL)
    with contextlib.suppress(subprocess.TimeoutExpired):
        proc.wait(timeout=2)


@contextlib.contextmanager
def serve(
    spec: ServerSpec | None = None, start_timeout: float = 20.0, **overrides: object
) -> Iterator[Server]:
    """Run a server for the duration of a ``with`` block. See the module docstring."""
    spec = (
        dataclasses.replace(spec or ServerSpec(), **overrides)
        if overrides
        else (spec or ServerSpec())
    )
    check_installed(spec)
    log_dir = Path(tempfile.mkdtemp(prefix="conclab-server-"))
    try:
        server = start_on_a_free_port(
            lambda port: _start(spec, port, start_timeout, log_dir), spec.port
        )
        try:
            yield server
        finally:
            server.stop()
    finally:
        # The log was only needed while it ran (a start error carries its tail).
        shutil.rmtree(log_dir, ignore_errors=True)
