"""The lab's apps and the programs that run them, declared once.

    APPS      name -> App: the module:attribute in servers/, its interface (WSGI or ASGI),
              the routes it adds to the shared ones, the packages it imports
    RUNNERS   name -> Runner: Gunicorn (sync/gthread workers), Uvicorn, Gunicorn managing
              Uvicorn workers, Granian; the interfaces each serves, its command line,
              how it is stopped, the options it honours, the packages it needs

A :class:`~conclab.base.specs.ServerSpec` names an app (``kind``) and, optionally, a
``manager`` - the word the command line uses (``--manager gunicorn``). The runner
is the first in ``RUNNERS`` with that manager word that serves the app's
interface; without a manager, the first that serves it at all (Gunicorn for
WSGI, Uvicorn for ASGI). The CLI's choices, the specs' checks and labels, the
launcher and the tests read these tables: adding a runner is adding one entry.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

# A conclab.base.specs.ServerSpec; specs imports this module, so not the other way round.
ServerSpec = Any

WSGI, ASGI = "wsgi", "asgi"
SHARED_ROUTES = ("/health", "/hello", "/io", "/cpu", "/state")
ASYNC_ROUTES = ("/blocking-io", "/offload-io", "/offload-cpu", "/hash-cpu", "/process-cpu")


@dataclass(frozen=True)
class App:
    """One of the lab's apps in servers/."""

    name: str  # what ServerSpec.kind and the CLI call it
    target: str  # module:attribute, imported from servers/ (or a spec's app_dir)
    interface: str  # WSGI or ASGI
    what: str  # a few words for help texts
    routes: tuple[str, ...] = ()  # routes beyond SHARED_ROUTES
    needs: tuple[str, ...] = ()  # packages it imports
    label_prefix: str = ""  # before the runner in a legend: "fastapi uvicorn 1w"
    pool_word: str = "pool"  # what its threadpool size is called in a legend

    def pool_label(self, spec: ServerSpec) -> str:
        """' pool=4' / ' tokens=80' when the offload pool is not the default (ASGI only)."""
        if self.interface != ASGI or spec.threadpool == 40:
            return ""
        return f" {self.pool_word}={spec.threadpool}"


APPS: dict[str, App] = {
    app.name: app
    for app in (
        App("wsgi", "wsgi_flask:app", WSGI, "Flask", needs=("flask",)),
        App("asgi", "asgi_minimal:app", ASGI, "raw ASGI", routes=ASYNC_ROUTES),
        App(
            "fastapi",
            "asgi_fastapi:app",
            ASGI,
            "FastAPI",
            routes=(*ASYNC_ROUTES, "/def-io", "/def-health", "/pool"),
            needs=("fastapi",),
            label_prefix="fastapi ",
            pool_word="tokens",
        ),
    )
}


@functools.cache
def _gunicorn_extra_flags():
    """Recent Gunicorn opens a control socket at one fixed path (~/.gunicorn/gunicorn.ctl):
    two labs running at once would take it from each other. The lab never uses it."""
    try:
        from gunicorn.config import KNOWN_SETTINGS
    except ImportError:
        return ()
    return (
        ("--no-control-socket",)
        if any(s.name == "control_socket_disable" for s in KNOWN_SETTINGS)
        else ()
    )


def _gunicorn(spec: ServerSpec, host: str, port: int, app: str, app_dir: str) -> list[str]:
    if spec.config:
        # Command-line flags beat the config file, so pass only these three.
        return [
            spec.interpreter,
            "-m",
            "gunicorn",
            "--config",
            str(spec.config),
            "--bind",
            f"{host}:{port}",
            "--chdir",
            app_dir,
            app,
        ]
    if spec.interface == ASGI:
        # Gunicorn manages the processes, each worker is a Uvicorn server (uvicorn-worker).
        worker = ["--worker-class", "uvicorn_worker.UvicornWorker"]
    else:
        worker = ["--worker-class", spec.gunicorn_class, "--threads", str(spec.threads)]
    return [
        spec.interpreter,
        "-m",
        "gunicorn",
        "--bind",
        f"{host}:{port}",
        "--chdir",
        app_dir,
        "--workers",
        str(spec.workers),
        *worker,
        "--timeout",
        str(spec.timeout),
        "--graceful-timeout",
        "3",
        *_gunicorn_extra_flags(),
        app,
    ]


def _uvicorn(spec: ServerSpec, host: str, port: int, app: str, app_dir: str) -> list[str]:
    cmd = [
        spec.interpreter,
        "-m",
        "uvicorn",
        "--host",
        host,
        "--port",
        str(port),
        "--app-dir",
        app_dir,
        "--workers",
        str(spec.workers),
        "--loop",
        spec.loop,
        "--http",
        spec.http,
        "--no-access-log",
        "--timeout-graceful-shutdown",
        "3",
    ]
    if spec.limit_concurrency:
        cmd += ["--limit-concurrency", str(spec.limit_concurrency)]
    return cmd + [app]


def _granian(spec: ServerSpec, host: str, port: int, app: str, app_dir: str) -> list[str]:
    # --working-dir puts the app's folder first on sys.path, as uvicorn's --app-dir does.
    # A WSGI app runs in Granian's blocking threads: as many as the spec's threads.
    threads = ["--blocking-threads", str(spec.threads)] if spec.interface == WSGI else []
    return [
        spec.interpreter,
        "-m",
        "granian",
        "--interface",
        spec.interface,
        "--host",
        host,
        "--port",
        str(port),
        "--working-dir",
        app_dir,
        "--workers",
        str(spec.workers),
        *threads,
        "--loop",
        spec.loop,
        "--no-access-log",
        app,
    ]


def _gunicorn_label(spec: ServerSpec) -> str:
    if spec.config:
        return f"gunicorn -c {Path(spec.config).name}"
    cls = spec.gunicorn_class
    threads = f"x{spec.threads}t" if cls == "gthread" else ""
    return f"gunicorn {cls} {spec.workers}w{threads}"


def _granian_label(spec: ServerSpec) -> str:
    threads = f"x{spec.threads}t" if spec.interface == WSGI and spec.threads > 1 else ""
    return f"granian {spec.interface} {spec.workers}w{threads}"


@dataclass(frozen=True)
class Runner:
    """A program that runs an app: its command line, how it stops, what it needs."""

    name: str
    manager: str  # the --manager word that picks it
    interfaces: tuple[str, ...]  # WSGI and/or ASGI
    what: str  # a few words for help texts
    command: Callable[
        [ServerSpec, str, int, str, str], list[str]
    ]  # (spec, host, port, app, app_dir)
    needs: tuple[str, ...]  # packages (import names) it needs
    # ServerSpec fields it ignores, so a spec must leave them at their defaults
    rejects: tuple[str, ...] = ()
    # True when its first process serves requests itself
    # with one worker (no separate worker process)
    master_serves: bool = False
    # Stopping: SIGTERM to the whole process group, SIGKILL after this many seconds.
    grace: float = 5.0
    takes_config: bool = False  # a gunicorn.conf.py
    label: Callable[[ServerSpec], str] | None = None  # the legend, before the app's pool size

    def describe(self, spec: ServerSpec) -> str:
        if self.label:
            return self.label(spec)
        return f"{self.name} {spec.workers}w"


UVICORN_ONLY = ("loop", "http", "limit_concurrency")

RUNNERS: dict[str, Runner] = {
    r.name: r
    for r in (
        # Order matters: the first runner serving an interface is its default.
        Runner(
            "gunicorn",
            "gunicorn",
            (WSGI,),
            "Gunicorn, sync or gthread workers",
            _gunicorn,
            ("gunicorn",),
            takes_config=True,
            label=_gunicorn_label,
        ),
        Runner(
            "uvicorn", "uvicorn", (ASGI,), "Uvicorn", _uvicorn, ("uvicorn",), master_serves=True
        ),
        Runner(
            "gunicorn+uvicorn",
            "gunicorn",
            (ASGI,),
            "Gunicorn managing Uvicorn workers",
            _gunicorn,
            ("gunicorn", "uvicorn_worker"),
            rejects=UVICORN_ONLY,
        ),
        # Granian (Rust) stops its ASGI workers slowly: within 5 s of SIGTERM or not at all,
        # so the guard's SIGKILL after the grace ends it.
        Runner(
            "granian",
            "granian",
            (WSGI, ASGI),
            "Granian",
            _granian,
            ("granian",),
            rejects=("http", "limit_concurrency"),
            label=_granian_label,
        ),
    )
}
MANAGERS = tuple(dict.fromkeys(r.manager for r in RUNNERS.values()))


def runner_for(interface: str, manager: str | None) -> Runner | None:
    """The runner ``manager`` names for an app of this
    interface (None: the default); None if none."""
    return next(
        (r for r in RUNNERS.values() if interface in r.interfaces and manager in (None, r.manager)),
        None,
    )


def default_runner(app: App) -> Runner:
    return runner_for(app.interface, None)


def help_text() -> str:
    """'wsgi: Flask on Gunicorn; asgi: raw ASGI on Uvicorn; ...' for the CLI."""
    return "; ".join(
        f"{a.name}: {a.what} on {default_runner(a).name.capitalize()}" for a in APPS.values()
    )


def managers_help() -> str:
    """What each --manager word runs, for the CLI."""
    parts = []
    for word in MANAGERS:
        runs = [
            f"{r.what} ({'/'.join(i.upper() for i in r.interfaces)})"
            for r in RUNNERS.values()
            if r.manager == word
        ]
        parts.append(f"{word}: {' or '.join(runs)}")
    defaults = ", ".join(
        f"{runner_for(i, None).manager} for {i.upper()} apps" for i in (WSGI, ASGI)
    )
    return f"who runs the app (default: {defaults}); " + "; ".join(parts)
