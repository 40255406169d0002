"""Shared fixtures: one real server per spec, started once per test module."""

import os

import pytest

# Tests always measure in quick mode (fewer points, shorter runs), also when
# pytest is run directly rather than through `make test`.
os.environ.setdefault("CONCLAB_QUICK", "1")

from conclab.base.specs import ServerSpec
from conclab.processes.launcher import serve

# Each test's seconds and outcome into a JSON file when CONCLAB_TEST_DURATIONS names
# one (`make timing`; docs/timing.md is generated from it).
pytest_plugins = ("conclab.figures.suite_timing",)


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


@pytest.fixture(scope="session", autouse=True)
def shared_results_dir(tmp_path_factory):
    """One folder for the measured experiment points of the whole test session.

    Tests never write into the repo's results/; the notebooks' kernels inherit
    the variable and keep their points here too.
    """
    path = tmp_path_factory.mktemp("results")
    old = os.environ.get("CONCLAB_RESULTS")
    os.environ["CONCLAB_RESULTS"] = str(path)
    yield path
    if old is None:
        os.environ.pop("CONCLAB_RESULTS", None)
    else:
        os.environ["CONCLAB_RESULTS"] = old


@pytest.fixture(scope="session")
def freethreaded_python():
    """The free-threaded Python `make freethreaded` built; skips saying how to build it
    (under CI=true a missing build fails instead)."""
    from conclab.processes import interpreters

    why = interpreters.freethreaded_missing()
    if why:
        pytest.skip(why)
    return str(interpreters.freethreaded_python())
