"""nginx in front of the app servers (the front): client <-> nginx <-> Gunicorn/Uvicorn/Granian.

    with serve_front(FrontSpec(ServerSpec("wsgi", workers=2))) as front:
        httpx.get(front.url + "/hello")        # through nginx, to Gunicorn

    with serve_front(FrontSpec(ServerSpec("wsgi"), instances=3)) as front:
        ...                                    # nginx balancing over 3 separate Gunicorns

In code the concept is called the front (``FrontSpec``, ``Front``, ``serve_front``);
the command line says ``--behind-nginx``. ``serve_nginx`` runs nginx alone, in
front of app servers that already run.

nginx is a system program (Debian ``apt-get install nginx``, Homebrew ``brew
install nginx``), not a Python package. The launcher runs it as the current
user, in the foreground, from the template ``servers/nginx.conf``:

    nginx -p PREFIX -c PREFIX/nginx.conf -e stderr

PREFIX is a fresh temporary folder holding the filled-in config, the pid file
and every ``*_temp_path``; nginx listens on a free loopback port and logs
errors to stderr. It runs under the same guard as the app servers
(``python -m conclab.processes.guard``), so no nginx process outlives the
Python process that started it - not even when that one is killed with SIGKILL.
nginx starts through the launcher's one start-wait-retry path
(``launcher.launch``, ``launcher.start_on_a_free_port``): a failed start raises
:class:`ServerStartError` carrying nginx's own error.

Install policy: :func:`nginx_missing` is the one place that decides what a
missing nginx means. Tests, experiments and notebook cells skip with its
one-line reason; with ``CI=true`` it raises instead, so CI cannot pass by
skipping.
"""

from __future__ import annotations

import contextlib
import os
import shlex
import shutil
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass, replace
from pathlib import Path

from ..base.errors import SpecError
from ..base.paths import SERVERS_DIR
from ..base.specs import LOOPBACK, ServerSpec
from ..base.system import ProgramMissing, missing
from .launcher import Server, launch, serve, start_on_a_free_port

TEMPLATE = SERVERS_DIR / "nginx.conf"
INSTALL_HINT = (
    "install it with `apt-get install nginx` (Debian/Ubuntu) or `brew install nginx` (macOS)"
)
# Debian installs nginx into /usr/sbin, which an ordinary user's PATH may lack.
_EXTRA_PATHS = ("/usr/sbin", "/usr/local/sbin", "/usr/local/bin", "/opt/homebrew/bin")


def find_nginx() -> str | None:
    """The nginx executable: $CONCLAB_NGINX, else PATH, else the usual sbin folders."""
    if os.environ.get("CONCLAB_NGINX"):
        return shutil.which(os.environ["CONCLAB_NGINX"])
    search = os.pathsep.join([os.environ.get("PATH", ""), *_EXTRA_PATHS])
    return shutil.which("nginx", path=search)


def nginx_missing() -> str | None:
    """None when nginx is installed; else one line saying how to install it.

    The install policy in one place: callers skip with this line (tests,
    experiments, notebook cells). Under CI (``CI=true``) a missing nginx is an
    error instead - :class:`~conclab.base.system.ProgramMissing` is raised - because CI must run the
    nginx tests, not skip them.
    """
    return missing("nginx", find_nginx(), INSTALL_HINT)


def render_conf(
    port: int,
    prefix: Path,
    upstreams: list[int],
    client_header_timeout: int = 60,
    template: Path = TEMPLATE,
) -> str:
    """servers/nginx.conf with its {{fields}} filled in."""
    fields = {
        "prefix": str(prefix),
        "port": str(port),
        "upstream_servers": "\n".join(f"        server {LOOPBACK}:{p};" for p in upstreams),
        "client_header_timeout": f"{client_header_timeout}s",
    }
    text = template.read_text()
    for name, value in fields.items():
        text = text.replace("{{" + name + "}}", value)
    if "{{" in text:
        left = text[text.index("{{") :].split("}}")[0] + "}}"
        raise SpecError(f"{template} has a field the launcher does not fill: {left}")
    return text


@dataclass(frozen=True)
class NginxSpec:
    """nginx alone: the app servers' ports it forwards to, and how long a client may dawdle."""

    upstreams: tuple[int, ...]
    client_header_timeout: int = 60
    cpus: tuple[int, ...] | None = None
    port: int | None = None

    @property
    def label(self) -> str:
        n = len(self.upstreams)
        return f"nginx -> {n} app server{'s' if n != 1 else ''}"

    def resolved_cpus(self) -> tuple[int, ...]:
        from ..base.cores import server_cpus

        return tuple(self.cpus) if self.cpus else server_cpus()


@dataclass(frozen=True)
class FrontSpec:
    """nginx in front of ``instances`` separate copies of the app server ``app``.

    Each instance is its own Gunicorn or Uvicorn (its own port, master and
    workers); nginx balances requests over them round robin. ``client_header_timeout``
    (seconds) is how long nginx lets a client take to send its request header.
    """

    app: ServerSpec = ServerSpec("wsgi", workers=2)
    instances: int = 1
    client_header_timeout: int = 60
    port: int | None = None  # nginx's port (default: a free one)

    def __post_init__(self):
        problems = []
        if not isinstance(self.app, ServerSpec):
            problems.append(f"app must be a ServerSpec, not {self.app!r}")
        elif self.app.port is not None:
            problems.append("app.port must be None: each instance gets its own free port")
        for name, low, high in (("instances", 1, 16), ("client_header_timeout", 1, 3600)):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
                problems.append(f"{name} must be an integer {low}..{high}, not {value!r}")
        if problems:
            raise SpecError("; ".join(problems))

    @property
    def label(self) -> str:
        many = f"{self.instances} x " if self.instances > 1 else ""
        return f"nginx -> {many}{self.app.label}"

    def to_dict(self) -> dict:
        return {
            "front": "nginx",
            "instances": self.instances,
            "client_header_timeout": self.client_header_timeout,
            "port": self.port,
            "app": self.app.to_dict(),
        }


@dataclass
class Front:
    """nginx and the app servers behind it, running (a ``stack.RunningServer``)."""

    spec: FrontSpec
    nginx: Server
    apps: list[Server]

    @property
    def url(self) -> str:
        return self.nginx.url

    @property
    def port(self) -> int:
        return self.nginx.port

    @property
    def command(self) -> list[str]:
        return self.nginx.command

    @property
    def interpreter(self) -> dict | None:
        """The app servers' Python and GIL state, as the first one reported them."""
        return self.apps[0].interpreter if self.apps else None

    def running(self) -> bool:
        """True while nginx and every app server run."""
        return all(s.running() for s in (self.nginx, *self.apps))

    @property
    def worker_pids(self) -> list[int]:
        """The app processes that serve requests, over every instance."""
        return [pid for app in self.apps for pid in app.worker_pids]

    @property
    def pids(self) -> list[int]:
        """Every process: nginx's and each instance's, guards included."""
        return self.nginx.pids + [pid for app in self.apps for pid in app.pids]

    def cpu_seconds(self) -> float:
        """CPU time of the app servers behind nginx (every instance), nginx's own left
        out: the server's cost per request is the app's. nginx's: ``front.nginx.cpu_seconds()``."""
        return sum(app.cpu_seconds() for app in self.apps)

    def log(self) -> str:
        return "\n".join(s.log() for s in (self.nginx, *self.apps))

    def rss_bytes(self) -> int:
        """Memory of nginx and every app server (PSS, see ``Server.rss_bytes``)."""
        return self.nginx.rss_bytes() + sum(app.rss_bytes() for app in self.apps)

    def stop(self) -> None:
        """nginx first (no new requests reach the apps), then the apps."""
        for server in (self.nginx, *self.apps):
            server.stop()

    def describe(self) -> str:
        """What runs where, as `conclab serve --behind-nginx` prints it."""
        lines = [
            f"{self.spec.label} listening on {self.url}",
            f"  nginx: {shlex.join(self.nginx.command)}",
            f"  nginx pids: guard {self.nginx.guard_pid}, master {self.nginx.master_pid}, "
            f"workers {self.nginx.worker_pids}",
        ]
        for i, app in enumerate(self.apps, 1):
            lines.append(
                f"  app {i}: {app.url}  pids: guard {app.guard_pid}, master {app.master_pid}, "
                f"workers {app.worker_pids}"
            )
        return "\n".join(lines)


def command(prefix: Path) -> list[str]:
    """The nginx command line - the one a student could type."""
    exe = find_nginx()
    if exe is None:
        raise ProgramMissing(f"nginx is not installed: {INSTALL_HINT}")
    # -e stderr: without it nginx first opens its compiled-in error log
    # (/var/log/nginx/error.log), which an ordinary user may not write.
    return [exe, "-p", str(prefix), "-c", str(prefix / "nginx.conf"), "-e", "stderr"]


def _start(spec: NginxSpec, port: int, start_timeout: float) -> Server:
    """nginx on ``port``, from a fresh prefix folder (removed again if it fails to start)."""
    prefix = Path(tempfile.mkdtemp(prefix="conclab-nginx-"))
    # Started as root, nginx runs its workers as an unprivileged user, which
    # must still reach the temp folders under the prefix.
    prefix.chmod(0o755)
    try:
        conf = render_conf(port, prefix, list(spec.upstreams), spec.client_header_timeout)
        (prefix / "nginx.conf").write_text(conf)
        # nginx answers /health by forwarding it to an app server
        return launch(spec, command(prefix), port, prefix / "nginx.log", start_timeout)
    except BaseException:
        shutil.rmtree(prefix, ignore_errors=True)
        raise


@contextlib.contextmanager
def serve_nginx(spec: NginxSpec, start_timeout: float = 20.0) -> Iterator[Server]:
    """Run nginx in front of already running app servers (``spec.upstreams``: their ports)."""
    if find_nginx() is None:
        raise ProgramMissing(f"nginx is not installed: {INSTALL_HINT}")
    server = start_on_a_free_port(lambda port: _start(spec, port, start_timeout), spec.port)
    try:
        yield server
    finally:
        server.stop()
        shutil.rmtree(server.log_path.parent, ignore_errors=True)


@contextlib.contextmanager
def serve_front(
    spec: FrontSpec | None = None, start_timeout: float = 20.0, **overrides: object
) -> Iterator[Front]:
    """Start ``spec.instances`` app servers, then nginx in front of them; yield a :class:`Front`.

    On exit nginx stops first (no new requests reach the apps), then the apps.
    """
    spec = replace(spec or FrontSpec(), **overrides)
    if find_nginx() is None:
        raise ProgramMissing(f"nginx is not installed: {INSTALL_HINT}")
    with contextlib.ExitStack() as stack:
        apps = [stack.enter_context(serve(spec.app, start_timeout)) for _ in range(spec.instances)]
        nginx_spec = NginxSpec(
            tuple(app.port for app in apps), spec.client_header_timeout, port=spec.port
        )
        nginx = stack.enter_context(serve_nginx(nginx_spec, start_timeout))
        yield Front(spec, nginx, apps)
