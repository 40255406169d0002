"""Shared fixtures: one real server per spec, started once per test module."""

import pytest

from conclab.launcher import ServerSpec, serve


@pytest.fixture(scope="module")
def wsgi_server():
    """Flask on one sync Gunicorn worker."""
    with serve(ServerSpec("wsgi")) as server:
        yield server


@pytest.fixture(scope="module")
def asgi_server():
    """The raw ASGI app on one Uvicorn process."""
    with serve(ServerSpec("asgi")) as server:
        yield server
