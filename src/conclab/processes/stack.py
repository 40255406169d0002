"""Start whatever a spec describes: one app server, or nginx in front of several.

    with running(ServerSpec("wsgi", workers=2)) as server: ...        # Gunicorn (launcher.serve)
    with running(FrontSpec(ServerSpec("wsgi"), instances=3)) as front: ...  # nginx + 3 Gunicorns

Experiments and the CLI start servers through here, so a sweep can put nginx in
front without knowing how it is started. Both yield a :class:`RunningServer`.
"""

from __future__ import annotations

from contextlib import AbstractContextManager
from typing import Protocol

from ..base.specs import ServerSpec
from .launcher import serve
from .nginx import FrontSpec, serve_front


class RunningServer(Protocol):
    """What every running server offers: an app server (``launcher.Server``) and
    nginx in front of app servers (``nginx.Front``) alike."""

    @property
    def url(self) -> str: ...  # http://127.0.0.1:PORT

    @property
    def port(self) -> int: ...

    @property
    def command(self) -> list[str]: ...  # what was run (for the front: nginx's command)

    @property
    def pids(self) -> list[int]: ...  # every process, guards included

    @property
    def worker_pids(self) -> list[int]: ...  # the processes that serve requests

    @property
    def interpreter(
        self,
    ) -> dict | None: ...  # the app server's own /interpreter answer (None: not read)

    def cpu_seconds(self) -> float: ...  # CPU time of the app server processes so far

    def rss_bytes(self) -> int: ...  # memory of every process (PSS)

    def running(self) -> bool: ...

    def log(self) -> str: ...

    def describe(self) -> str: ...  # what runs where, a few lines

    def stop(self) -> None: ...  # TERM, then KILL after a grace period


def running(
    spec: ServerSpec | FrontSpec | None = None, start_timeout: float = 20.0, **overrides
) -> AbstractContextManager[RunningServer]:
    """A context manager running ``spec`` (see launcher.serve and nginx.serve_front)."""
    if isinstance(spec, FrontSpec):
        return serve_front(spec, start_timeout, **overrides)
    return serve(spec, start_timeout, **overrides)
