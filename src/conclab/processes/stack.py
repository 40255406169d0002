"""Start whatever a spec describes: one app server, or nginx in front of several.

    with serve(ServerSpec("wsgi", workers=2)) as server: ...        # Gunicorn (launcher)
    with serve(FrontSpec(ServerSpec("wsgi"), instances=3)) as front: ...  # nginx + 3 Gunicorns

Experiments and the CLI start servers through here, so a sweep can put the web
server in front without knowing how it is started.
"""

from __future__ import annotations

from contextlib import AbstractContextManager

from ..base.specs import ServerSpec
from . import launcher
from .nginx import FrontSpec, serve_behind_nginx


def serve(spec: ServerSpec | FrontSpec | None = None, start_timeout: float = 20.0,
          **overrides) -> AbstractContextManager:
    """A context manager running ``spec`` (see launcher.serve and nginx.serve_behind_nginx)."""
    if isinstance(spec, FrontSpec):
        return serve_behind_nginx(spec, start_timeout, **overrides)
    return launcher.serve(spec, start_timeout, **overrides)
