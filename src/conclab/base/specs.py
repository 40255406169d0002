"""The value types every layer shares: how a server runs, what load to apply, what one request left.

    ServerSpec    kind (wsgi/asgi), workers, threads, loop, pools ... and the real command line
    LoadSpec      closed loop (users) or open loop (rate), bounded in time or requests
    FIELDS        the columns of the per-request record the driver keeps

They check themselves when built: a bad value raises one clear line.
"""

from __future__ import annotations

import dataclasses
import functools
import math
import sys
from dataclasses import asdict, dataclass, field
from pathlib import Path

from . import system
from .cores import server_cpus
from .errors import LoadError, SpecError
from .paths import SERVERS_DIR

DEFAULT_APPS = {"wsgi": "wsgi_flask:app", "asgi": "asgi_minimal:app", "fastapi": "asgi_fastapi:app"}
MANAGERS = ("uvicorn", "gunicorn")
LOOPBACK = "127.0.0.1"
TRANSPORTS = ("aiohttp", "httpx")
LIMITS = {"concurrency": 4096, "rate": 20_000.0, "duration": 600.0, "requests": 2_000_000, "timeout": 600.0}

# One record per request. Times are time.monotonic_ns(): one clock for every
# process on Linux, so they line up with the server's X-Start-Ns/X-End-Ns.
FIELDS = (
    "intended_ns", "start_ns", "end_ns", "status", "error", "path",
    "worker_pid", "thread", "server_start_ns", "server_end_ns",
)


@functools.cache
def _gunicorn_extra_flags():
    """Recent Gunicorn opens a control socket at one fixed path (~/.gunicorn/gunicorn.ctl):
    two labs running at once would take it from each other. The lab never uses it."""
    try:
        from gunicorn.config import KNOWN_SETTINGS
    except ImportError:
        return ()
    return ("--no-control-socket",) if any(s.name == "control_socket_disable" for s in KNOWN_SETTINGS) else ()


@dataclass(frozen=True)
class ServerSpec:
    """Everything that decides how a server runs. ``kind`` is "wsgi" (Flask),
    "asgi" (the raw ASGI app) or "fastapi".

    WSGI (Gunicorn): ``workers`` processes; ``threads`` > 1 selects the gthread
    worker class (as Gunicorn itself does); ``timeout`` is Gunicorn's worker timeout.
    ASGI (Uvicorn): ``workers``, ``loop``, ``http``, ``threadpool`` (size of the
    app's offload pool; for FastAPI, AnyIO's thread tokens) and
    ``limit_concurrency`` (Uvicorn answers 503 beyond it).
    ``manager``: who runs an ASGI app. "uvicorn" (the default) or "gunicorn", the
    production shape: Gunicorn managing Uvicorn workers (``-k
    uvicorn_worker.UvicornWorker``); its workers pick loop and parser themselves
    ("auto") and ``timeout`` is Gunicorn's worker timeout.
    ``cpus``: the cores the server may use; None means all but the driver's core,
    "all" means every core.
    ``python``: the interpreter that runs the server (a path); None means the
    lab's own Python.
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
    manager: str | None = None
    python: str | None = None

    def __post_init__(self):
        problems = []
        if self.kind not in DEFAULT_APPS:
            problems.append(f"kind must be 'wsgi', 'asgi' or 'fastapi', not {self.kind!r}")
        if self.manager not in (None, *MANAGERS):
            problems.append(f"manager must be uvicorn or gunicorn, not {self.manager!r}")
        elif self.kind == "wsgi" and self.manager == "uvicorn":
            problems.append("manager uvicorn is for ASGI apps; a WSGI app runs on Gunicorn")
        elif self.kind != "wsgi" and self.manager == "gunicorn" and (
            self.loop != "auto" or self.http != "auto" or self.limit_concurrency is not None
        ):
            problems.append("with manager gunicorn, Uvicorn's workers choose loop and http themselves "
                            "and take no limit_concurrency: leave them unset")
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
        # None and "all" are resolved when the server starts (resolved_cpus), so
        # that building a spec asks nothing of the operating system.
        if self.cpus not in (None, "all"):
            usable = system.cpu_ids()
            if not (isinstance(self.cpus, tuple | list) and self.cpus
                    and all(isinstance(c, int) and c in usable for c in self.cpus)):
                problems.append(f"cpus must be None, 'all' or core numbers from {list(usable)}, not {self.cpus!r}")
        if self.config is not None and (self.kind != "wsgi" or not isinstance(self.config, str)):
            problems.append(f"config (a gunicorn.conf.py path) is for kind 'wsgi' only, not {self.config!r}")
        if problems:
            raise SpecError("; ".join(problems))

    @property
    def gunicorn_class(self) -> str:
        return self.worker_class or ("gthread" if self.threads > 1 else "sync")

    @property
    def runner(self) -> str:
        """The program that runs the app: "gunicorn" or "uvicorn"."""
        return "gunicorn" if self.kind == "wsgi" else (self.manager or "uvicorn")

    @property
    def serves_in_master(self) -> bool:
        """True when the first process serves requests itself (one Uvicorn process, no workers)."""
        return self.runner == "uvicorn" and self.workers == 1

    @property
    def label(self) -> str:
        """A short name for legends: 'gunicorn sync 1w', 'uvicorn 2w pool=4',
        'fastapi uvicorn 1w tokens=80', 'fastapi gunicorn+uvicorn 2w'."""
        if self.kind == "wsgi" and self.config:
            return f"gunicorn -c {Path(self.config).name}"
        if self.kind == "wsgi":
            cls = self.gunicorn_class
            threads = f"x{self.threads}t" if cls == "gthread" else ""
            return f"gunicorn {cls} {self.workers}w{threads}".strip()
        runner = "gunicorn+uvicorn" if self.runner == "gunicorn" else "uvicorn"
        if self.kind == "fastapi":
            tokens = f" tokens={self.threadpool}" if self.threadpool != 40 else ""
            return f"fastapi {runner} {self.workers}w{tokens}"
        pool = f" pool={self.threadpool}" if self.threadpool != 40 else ""
        return f"{runner} {self.workers}w{pool}"

    def to_dict(self):
        doc = dataclasses.asdict(self)
        if doc["python"] is None:  # the lab's own Python: keeps saved points' keys as they were
            del doc["python"]
        return doc

    @property
    def interpreter(self) -> str:
        """The Python that runs the server: ``python`` or, by default, the lab's own."""
        return self.python or sys.executable

    def command(self, port: int, host: str = LOOPBACK) -> list[str]:
        """The real gunicorn/uvicorn command line - the one a student could type."""
        app = self.app or DEFAULT_APPS[self.kind]
        app_dir = str(self.app_dir or SERVERS_DIR)
        if self.kind == "wsgi" and self.config:
            # Command-line flags beat the config file, so pass only these three.
            return [
                self.interpreter, "-m", "gunicorn", "--config", str(self.config),
                "--bind", f"{host}:{port}", "--chdir", app_dir, app,
            ]
        if self.runner == "gunicorn":
            # An ASGI app under Gunicorn: Gunicorn manages the processes, each
            # worker is a Uvicorn server (the uvicorn-worker package).
            worker = ["--worker-class", "uvicorn_worker.UvicornWorker"] if self.kind != "wsgi" else [
                "--worker-class", self.gunicorn_class, "--threads", str(self.threads)]
            return [
                self.interpreter, "-m", "gunicorn", "--bind", f"{host}:{port}",
                "--chdir", app_dir, "--workers", str(self.workers), *worker,
                "--timeout", str(self.timeout), "--graceful-timeout", "3", *_gunicorn_extra_flags(), app,
            ]
        cmd = [
            self.interpreter, "-m", "uvicorn", "--host", host, "--port", str(port),
            "--app-dir", app_dir, "--workers", str(self.workers),
            "--loop", self.loop, "--http", self.http, "--no-access-log",
            "--timeout-graceful-shutdown", "3",
        ]
        if self.limit_concurrency:
            cmd += ["--limit-concurrency", str(self.limit_concurrency)]
        return cmd + [app]

    def resolved_cpus(self) -> tuple[int, ...]:
        if self.cpus == "all":
            return system.cpu_ids()
        if self.cpus is None:
            return server_cpus()
        return tuple(self.cpus)



@dataclass(frozen=True)
class LoadSpec:
    """What load to apply. Exactly one of concurrency/rate, at least one of duration/requests."""

    path: str = "/hello"
    concurrency: int | None = None
    rate: float | None = None
    arrivals: str = "constant"
    duration: float | None = None
    requests: int | None = None
    warmup: float = 0.0
    timeout: float = 10.0
    transport: str = "aiohttp"
    seed: int = 0

    def __post_init__(self):
        check_load(self)

    @property
    def shape(self) -> str:
        return "closed" if self.concurrency else "open"

    def to_dict(self):
        return asdict(self)


def _bad(message):
    raise LoadError(message)


def check_load(load: LoadSpec) -> None:
    if (load.concurrency is None) == (load.rate is None):
        _bad("give exactly one of concurrency (closed loop) or rate (open loop)")
    if load.duration is None and load.requests is None:
        _bad("give a duration or a number of requests, so the run stops by itself")
    if not isinstance(load.path, str) or not load.path.startswith("/"):
        _bad(f"path must start with '/', not {load.path!r}")
    checks = (
        ("concurrency", load.concurrency, 1), ("rate", load.rate, 0.1),
        ("duration", load.duration, 0.1), ("requests", load.requests, 1), ("timeout", load.timeout, 0.01),
    )
    for name, value, low in checks:
        if value is None:
            continue
        if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
            _bad(f"{name} must be a number, not {value!r}")
        if not low <= value <= LIMITS[name]:
            _bad(f"{name} must be between {low:g} and {LIMITS[name]:g}, not {value:g}")
    if load.concurrency is not None and int(load.concurrency) != load.concurrency:
        _bad(f"concurrency must be a whole number, not {load.concurrency!r}")
    if not (isinstance(load.warmup, int | float) and 0 <= load.warmup <= LIMITS["duration"]):
        _bad(f"warmup must be between 0 and {LIMITS['duration']:g} s, not {load.warmup!r}")
    if load.arrivals not in ("constant", "poisson"):
        _bad(f"arrivals must be 'constant' or 'poisson', not {load.arrivals!r}")
    if load.transport not in TRANSPORTS:
        _bad(f"transport must be one of {', '.join(TRANSPORTS)}, not {load.transport!r}")
