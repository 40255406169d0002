"""Start Gunicorn or Uvicorn on a free loopback port, and always stop them.

    with serve(ServerSpec("asgi")) as server:
        httpx.get(server.url + "/hello")

``serve`` starts the server as its own process group under a small guard
(``conclab.processes.guard``), waits for ``/health``, yields a :class:`Server` with the URL
and the process ids, and on exit stops the whole group: TERM, then KILL after a
grace period. A server that fails to start raises :class:`ServerStartError`
quoting the server's own output. If the Python process that called ``serve`` dies -
an exception, Ctrl-C, or a kernel killed with SIGKILL - the guard stops the server.
"""

from __future__ import annotations

import contextlib
import dataclasses
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

from ..base.errors import ServerStartError
from ..base.specs import LOOPBACK, ServerSpec
from . import interpreters


@dataclass
class Server:
    """A running server: where it listens and which processes it is."""

    spec: ServerSpec
    url: str
    port: int
    guard_pid: int
    log_path: Path
    command: list[str]
    proc: subprocess.Popen | None = field(default=None, repr=False)  # the guard process
    interpreter: dict | None = None  # the server's own /interpreter answer: version, GIL on or off

    def running(self) -> bool:
        """True while the server (its guard) has not exited."""
        return self.proc is not None and self.proc.poll() is None

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
        if getattr(self.spec, "serves_in_master", False):  # its children are the app's pool processes
            return [master]
        try:
            workers = [p.pid for p in psutil.Process(master).children()
                       if "resource_tracker" not in " ".join(_cmdline(p))]
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
        /proc/PID/task/TID/schedstat (nanoseconds on the CPU) is summed instead.
        """
        total = 0.0
        for p in self.processes():
            with contextlib.suppress(psutil.Error):
                total += _thread_cpu_ns(p.pid) / 1e9 if _HAS_SCHEDSTAT else sum(p.cpu_times()[:2])
        return total

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def rss_bytes(self) -> int:
        """Memory of every server process (not the guard), summed as PSS.

        PSS (proportional set size) splits each shared page between the processes
        that share it, so forked workers are not charged N times for the code
        they share with their master - the honest total for N processes.
        """
        total = 0
        for p in self.processes():
            with contextlib.suppress(psutil.Error):
                info = p.memory_full_info()
                total += getattr(info, "pss", info.rss)
        return total


def _cmdline(proc):
    try:
        return proc.cmdline()
    except psutil.Error:
        return []


_HAS_SCHEDSTAT = Path("/proc/self/task").is_dir() and Path(f"/proc/self/task/{os.getpid()}/schedstat").exists()


def _thread_cpu_ns(pid):
    """Nanoseconds every thread of ``pid`` has spent on a CPU (first field of schedstat)."""
    total = 0
    with contextlib.suppress(OSError):
        for task in Path(f"/proc/{pid}/task").iterdir():
            with contextlib.suppress(OSError, ValueError, IndexError):
                total += int((task / "schedstat").read_text().split()[0])
    return total


def free_port(host: str = LOOPBACK) -> int:
    with socket.socket() as s:
        s.bind((host, 0))
        return s.getsockname()[1]


def tail(text: str, lines: int = 25) -> str:
    return "\n".join(text.strip().splitlines()[-lines:])


def _start(spec, port, start_timeout, log_path):
    # Another Python (spec.python) runs from a venv of its own, made on first use.
    command = interpreters.prepare(spec).command(port)
    env = dict(os.environ, PYTHONUNBUFFERED="1", THREADPOOL_SIZE=str(spec.threadpool))
    env.pop("WEB_CONCURRENCY", None)  # Uvicorn would read it as --workers
    env.update(dict(spec.env))
    guard = [
        sys.executable, "-m", "conclab.processes.guard", "--parent", str(os.getpid()),
        "--cpus", ",".join(map(str, spec.resolved_cpus())), "--log-dir", str(log_path.parent), "--",
        *command,
    ]
    with open(log_path, "ab") as log:
        proc = subprocess.Popen(
            guard, stdin=subprocess.PIPE, stdout=log, stderr=subprocess.STDOUT,
            start_new_session=True, env=env,
        )
    server = Server(spec, f"http://{LOOPBACK}:{port}", port, proc.pid, log_path, command, proc)
    try:
        # every worker is up, not just the first to answer
        wait_for_health(server, start_timeout, ready=lambda: len(server.worker_pids) >= spec.workers)
        server.interpreter = interpreters.read_report(server.url, server.log())
        return server
    except BaseException:  # Ctrl-C while starting: a notebook kernel lives on, so must not the server
        stop_server(server)
        raise


def listens_on(server: Server) -> bool:
    """True if one of the server's own processes holds the listening socket.

    Another lab's server may own the port (two notebooks picked it at once);
    its /health would answer for ours.
    """
    for p in server.processes():
        try:
            conns = p.net_connections("tcp") if hasattr(p, "net_connections") else p.connections("tcp")
        except psutil.Error:
            continue
        if any(c.status == psutil.CONN_LISTEN and c.laddr and c.laddr[1] == server.port for c in conns):
            return True
    return False


def wait_for_health(server: Server, start_timeout: float, ready: Callable[[], bool] = lambda: True,
                    output: str = "server output") -> Server:
    """Poll ``/health`` until it answers 200, ``ready()`` holds and one of the server's
    own processes holds the listening socket; a start that fails or takes too long
    stops the server and raises ServerStartError quoting its ``output``."""
    deadline = time.monotonic() + start_timeout
    with httpx.Client(timeout=1.0, trust_env=False) as client:
        while True:
            exited = server.proc.poll() is not None
            if exited or time.monotonic() > deadline:
                stop_server(server)  # close our end of its stdin pipe; KILL any straggler in the group
                what = (f"exited while starting (code {server.proc.returncode})" if exited
                        else f"did not answer /health within {start_timeout:g} s")
                raise ServerStartError(
                    f"{server.spec.label} {what}.\n"
                    f"command: {shlex.join(server.command)}\n--- {output} ---\n{tail(server.log())}"
                )
            try:
                ok = client.get(server.url + "/health").status_code == 200
            except httpx.HTTPError:
                ok = False
            if ok and ready() and listens_on(server):
                return server
            time.sleep(0.05)


def stop_server(server: Server, grace: float = 5.0) -> None:
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
def serve(spec: ServerSpec | None = None, start_timeout: float = 20.0, **overrides: object) -> Iterator[Server]:
    """Run a server for the duration of a ``with`` block. See the module docstring."""
    spec = dataclasses.replace(spec or ServerSpec(), **overrides) if overrides else (spec or ServerSpec())
    log_dir = Path(tempfile.mkdtemp(prefix="conclab-server-"))
    attempts = 1 if spec.port else 3
    for attempt in range(attempts):
        port = spec.port or free_port()
        log_path = log_dir / f"{spec.kind}-{port}.log"
        try:
            server = _start(spec, port, start_timeout, log_path)
            break
        except ServerStartError as err:
            # Another program may grab the free port between our check and the bind.
            if "already in use" not in str(err) or attempt == attempts - 1:
                shutil.rmtree(log_dir, ignore_errors=True)  # the error quotes the log
                raise
        except BaseException:
            shutil.rmtree(log_dir, ignore_errors=True)
            raise
    try:
        yield server
    finally:
        stop_server(server)
        shutil.rmtree(log_dir, ignore_errors=True)  # the log was only needed while it ran


def describe(server: Server) -> str:
    return (
        f"{server.spec.label} listening on {server.url}\n"
        f"  command: {shlex.join(server.command)}\n"
        f"  python: {interpreters.gil_words(server.interpreter)} (as the server reports it)\n"
        f"  pids: guard {server.guard_pid}, master {server.master_pid}, workers {server.worker_pids}\n"
        f"  log: {server.log_path}"
    )
