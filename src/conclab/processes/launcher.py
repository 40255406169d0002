"""Start Gunicorn or Uvicorn on a free loopback port, and always stop them.

    with serve(ServerSpec("asgi")) as server:
        httpx.get(server.url + "/hello")

``serve`` starts the server as its own process group under a small guard
(``conclab.guard``), waits for ``/health``, yields a :class:`Server` with the URL
and the process ids, and on exit stops the whole group: TERM, then KILL after a
grace period. A server that fails to start raises :class:`ServerStartError`
quoting the server's own output. If the Python process that called ``serve`` dies -
an exception, Ctrl-C, or a kernel killed with SIGKILL - the guard stops the server.
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import os
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import psutil

SERVERS_DIR = Path(os.environ.get("CONCLAB_SERVERS", Path(__file__).resolve().parents[2] / "servers"))
DEFAULT_APPS = {"wsgi": "wsgi_flask:app", "asgi": "asgi_minimal:app"}
LOOPBACK = "127.0.0.1"


class ServerStartError(RuntimeError):
    """The server did not come up; the message quotes its own output."""


def client_cpu():
    """The core the load driver pins itself to (the last one), or None on 1 core."""
    cpus = sorted(os.sched_getaffinity(0))
    return cpus[-1] if len(cpus) > 1 else None


def server_cpus():
    """Cores left for servers by default: all but the driver's."""
    cpus = sorted(os.sched_getaffinity(0))
    return tuple(cpus[:-1]) if len(cpus) > 1 else tuple(cpus)


@dataclass(frozen=True)
class ServerSpec:
    """Everything that decides how a server runs. ``kind`` is "wsgi" or "asgi".

    WSGI (Gunicorn): ``workers`` processes; ``threads`` > 1 selects the gthread
    worker class (as Gunicorn itself does); ``timeout`` is Gunicorn's worker timeout.
    ASGI (Uvicorn): ``workers``, ``loop``, ``http``, ``threadpool`` (size of the
    app's offload pool) and ``limit_concurrency`` (Uvicorn answers 503 beyond it).
    ``cpus``: the cores the server may use; None means all but the driver's core,
    "all" means every core.
    ``config``: a gunicorn.conf.py (WSGI only). Then the file alone decides workers,
    threads, worker class and timeouts; the launcher passes only where to listen
    (``--bind``), ``--chdir`` and the app, which override the file's own.
    """

    kind: str = "asgi"
    workers: int = 1
    threads: int = 1
    worker_class: str | None = None
    loop: str = "auto"
    http: str = "auto"
    threadpool: int = 40
    limit_concurrency: int | None = None
    timeout: int = 30
    app: str | None = None
    app_dir: str | None = None
    cpus: tuple[int, ...] | str | None = None
    port: int | None = None
    env: tuple[tuple[str, str], ...] = field(default_factory=tuple)
    config: str | None = None

    def __post_init__(self):
        problems = []
        if self.kind not in DEFAULT_APPS:
            problems.append(f"kind must be 'wsgi' or 'asgi', not {self.kind!r}")
        for name, low, high in (("workers", 1, 64), ("threads", 1, 1024), ("threadpool", 1, 1024), ("timeout", 1, 3600)):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
                problems.append(f"{name} must be an integer {low}..{high}, not {value!r}")
        if self.limit_concurrency is not None and (isinstance(self.limit_concurrency, bool) or not (isinstance(self.limit_concurrency, int) and self.limit_concurrency >= 1)):
            problems.append(f"limit_concurrency must be a positive integer, not {self.limit_concurrency!r}")
        if self.loop not in ("auto", "asyncio", "uvloop"):
            problems.append(f"loop must be auto, asyncio or uvloop, not {self.loop!r}")
        if self.http not in ("auto", "h11", "httptools"):
            problems.append(f"http must be auto, h11 or httptools, not {self.http!r}")
        if self.worker_class not in (None, "sync", "gthread"):
            problems.append(f"worker_class must be sync or gthread, not {self.worker_class!r}")
        if self.port is not None and (isinstance(self.port, bool) or not (isinstance(self.port, int) and 1 <= self.port <= 65535)):
            problems.append(f"port must be 1..65535, not {self.port!r}")
        usable = os.sched_getaffinity(0)
        if self.cpus not in (None, "all") and not (
            isinstance(self.cpus, tuple | list) and self.cpus and all(isinstance(c, int) and c in usable for c in self.cpus)
        ):
            problems.append(f"cpus must be None, 'all' or core numbers from {sorted(usable)}, not {self.cpus!r}")
        if self.config is not None and (self.kind != "wsgi" or not isinstance(self.config, str)):
            problems.append(f"config (a gunicorn.conf.py path) is for kind 'wsgi' only, not {self.config!r}")
        if problems:
            raise ValueError("; ".join(problems))

    @property
    def gunicorn_class(self):
        return self.worker_class or ("gthread" if self.threads > 1 else "sync")

    @property
    def label(self):
        """A short name for legends: 'gunicorn sync x1', 'uvicorn x2 pool=4'."""
        if self.kind == "wsgi" and self.config:
            return f"gunicorn -c {Path(self.config).name}"
        if self.kind == "wsgi":
            cls = self.gunicorn_class
            threads = f"x{self.threads}t" if cls == "gthread" else ""
            return f"gunicorn {cls} {self.workers}w{threads}".strip()
        pool = f" pool={self.threadpool}" if self.threadpool != 40 else ""
        return f"uvicorn {self.workers}w{pool}"

    def to_dict(self):
        return dataclasses.asdict(self)

    def command(self, port, host=LOOPBACK):
        """The real gunicorn/uvicorn command line - the one a student could type."""
        app = self.app or DEFAULT_APPS[self.kind]
        app_dir = str(self.app_dir or SERVERS_DIR)
        if self.kind == "wsgi" and self.config:
            # Command-line flags beat the config file, so pass only these three.
            return [
                sys.executable, "-m", "gunicorn", "--config", str(self.config),
                "--bind", f"{host}:{port}", "--chdir", app_dir, app,
            ]
        if self.kind == "wsgi":
            return [
                sys.executable, "-m", "gunicorn", "--bind", f"{host}:{port}",
                "--chdir", app_dir, "--workers", str(self.workers),
                "--worker-class", self.gunicorn_class, "--threads", str(self.threads),
                "--timeout", str(self.timeout), "--graceful-timeout", "3", *_gunicorn_extra_flags(), app,
            ]
        cmd = [
            sys.executable, "-m", "uvicorn", "--host", host, "--port", str(port),
            "--app-dir", app_dir, "--workers", str(self.workers),
            "--loop", self.loop, "--http", self.http, "--no-access-log",
            "--timeout-graceful-shutdown", "3",
        ]
        if self.limit_concurrency:
            cmd += ["--limit-concurrency", str(self.limit_concurrency)]
        return cmd + [app]

    def resolved_cpus(self):
        if self.cpus == "all":
            return tuple(sorted(os.sched_getaffinity(0)))
        if self.cpus is None:
            return server_cpus()
        return tuple(self.cpus)


@dataclass
class Server:
    """A running server: where it listens and which processes it is."""

    spec: ServerSpec
    url: str
    port: int
    guard_pid: int
    log_path: Path
    command: list[str]

    @property
    def pgid(self):
        return self.guard_pid

    def processes(self):
        try:
            return psutil.Process(self.guard_pid).children(recursive=True)
        except psutil.NoSuchProcess:
            return []

    # A server that fails to start can exit between two of these calls: a
    # vanished process reads as "no pids", and the caller sees the exit itself.

    @property
    def master_pid(self):
        try:
            kids = psutil.Process(self.guard_pid).children()
        except psutil.NoSuchProcess:
            return None
        return kids[0].pid if kids else None

    @property
    def worker_pids(self):
        """Processes that serve requests (for a single Uvicorn process: itself)."""
        master = self.master_pid
        if master is None:
            return []
        try:
            workers = [p.pid for p in psutil.Process(master).children()
                       if "resource_tracker" not in " ".join(_cmdline(p))]
        except psutil.NoSuchProcess:
            return []
        return workers or [master]

    @property
    def pids(self):
        """Every process of the server, the guard included."""
        return [self.guard_pid] + [p.pid for p in self.processes()]

    def log(self):
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def rss_bytes(self):
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


@functools.cache
def _gunicorn_extra_flags():
    """Recent Gunicorn opens a control socket at one fixed path (~/.gunicorn/gunicorn.ctl):
    two labs running at once would take it from each other. The lab never uses it."""
    try:
        from gunicorn.config import KNOWN_SETTINGS
    except ImportError:
        return ()
    return ("--no-control-socket",) if any(s.name == "control_socket_disable" for s in KNOWN_SETTINGS) else ()


def _cmdline(proc):
    try:
        return proc.cmdline()
    except psutil.Error:
        return []


def free_port(host=LOOPBACK):
    with socket.socket() as s:
        s.bind((host, 0))
        return s.getsockname()[1]


def _tail(text, lines=25):
    return "\n".join(text.strip().splitlines()[-lines:])


def _start(spec, port, start_timeout, log_path):
    command = spec.command(port)
    env = dict(os.environ, PYTHONUNBUFFERED="1", THREADPOOL_SIZE=str(spec.threadpool))
    env.pop("WEB_CONCURRENCY", None)  # Uvicorn would read it as --workers
    env.update(dict(spec.env))
    guard = [
        sys.executable, "-m", "conclab.guard", "--parent", str(os.getpid()),
        "--cpus", ",".join(map(str, spec.resolved_cpus())), "--log-dir", str(log_path.parent), "--",
        *command,
    ]
    with open(log_path, "ab") as log:
        proc = subprocess.Popen(
            guard, stdin=subprocess.PIPE, stdout=log, stderr=subprocess.STDOUT,
            start_new_session=True, env=env,
        )
    server = Server(spec, f"http://{LOOPBACK}:{port}", port, proc.pid, log_path, command)
    server._proc = proc
    try:
        return _wait_ready(server, start_timeout)
    except BaseException:  # Ctrl-C while starting: a notebook kernel lives on, so must not the server
        _stop(server)
        raise


def _listens_on(server):
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


def _wait_ready(server, start_timeout):
    spec, proc, command = server.spec, server._proc, server.command
    deadline = time.monotonic() + start_timeout
    with httpx.Client(timeout=1.0, trust_env=False) as client:
        while True:
            if proc.poll() is not None:
                _stop(server)  # close our end of its stdin pipe; KILL any straggler in the group
                raise ServerStartError(
                    f"{spec.label} exited while starting (code {proc.returncode}).\n"
                    f"command: {shlex.join(command)}\n--- server output ---\n{_tail(server.log())}"
                )
            if time.monotonic() > deadline:
                _stop(server)
                raise ServerStartError(
                    f"{spec.label} did not answer /health within {start_timeout:g} s.\n"
                    f"command: {shlex.join(command)}\n--- server output ---\n{_tail(server.log())}"
                )
            try:
                ok = client.get(server.url + "/health").status_code == 200
            except httpx.HTTPError:
                ok = False
            if ok and len(server.worker_pids) >= spec.workers and _listens_on(server):
                return server
            time.sleep(0.05)


def _stop(server, grace=5.0):
    proc = server._proc
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
def serve(spec: ServerSpec | None = None, start_timeout: float = 20.0, **overrides):
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
        _stop(server)
        shutil.rmtree(log_dir, ignore_errors=True)  # the log was only needed while it ran


def describe(server):
    return (
        f"{server.spec.label} listening on {server.url}\n"
        f"  command: {shlex.join(server.command)}\n"
        f"  pids: guard {server.guard_pid}, master {server.master_pid}, workers {server.worker_pids}\n"
        f"  log: {server.log_path}"
    )
