"""Helpers for grader tests: find and import the student's files, explain a failed start.

A grader process imports this module and the plugin, nothing else of the lab
tooling. pytest is imported inside the functions that fail a check.
"""

from __future__ import annotations

import contextlib
import importlib.util
import re
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType

from ..base.errors import ServerStartError
from ..base.specs import ServerSpec
from ..processes.launcher import Server, serve
from . import tracebacks


def student_file(folder: Path, name: str) -> Path:
    """The path of a file the student hands in; a clear failure if it is missing."""
    import pytest

    path = Path(folder) / name
    if not path.is_file():
        pytest.fail(
            f"{name} is missing from {folder}: hand in the whole lab folder.", pytrace=False
        )
    return path


def import_student(folder: Path, name: str) -> ModuleType:
    """Import the student's module `name`.py from the submission folder, by path."""
    import pytest

    path = student_file(folder, f"{name}.py")
    spec = importlib.util.spec_from_file_location(f"student_{name}", path)
    module = importlib.util.module_from_spec(spec)
    try:
        spec.loader.exec_module(module)
    except Exception as err:  # any error in student code is a finding, not a crash
        line = getattr(err, "lineno", None)
        where = f"{path.name} line {line}" if line else path.name
        pytest.fail(f"{where} could not be imported: {type(err).__name__}: {err}", pytrace=False)
    return module


EXCEPTION_LINE = re.compile(r"^\s*\w[\w.]*(Error|Exception|Exit)\b")


def start_failure(err: ServerStartError, folder: Path, what: str) -> str:
    """A short reason for a server that did not start: the traceback from the
    first line in the student's own files down to the exception; failing that,
    the launcher's summary and the exception lines of the server's output."""
    lines = [err.reason, *err.output.splitlines()]
    first = next(
        (i for i, line in enumerate(lines) if "File " in line and str(folder) in line), None
    )
    if first is not None:
        end = next(
            (i for i in range(first, len(lines)) if EXCEPTION_LINE.match(lines[i])), len(lines) - 1
        )
        shown = lines[first : end + 1]
    else:
        shown = lines[:1] + [line for line in lines if EXCEPTION_LINE.match(line)][-3:]
    return f"{what} did not start:\n" + "\n".join(line.strip() for line in shown)


@contextlib.contextmanager
def serve_or_fail(
    spec: ServerSpec, folder: Path, what: str, start_timeout: float = 20.0
) -> Iterator[Server]:
    """Serve the student's app for a ``with`` block; if it does not start, fail the
    check with the student's own traceback (see :func:`start_failure`). While it
    runs, and after, a failing check shows the end of any traceback through the
    student's files that the server logged (``conclab.labs.tracebacks``)."""
    import pytest

    with contextlib.ExitStack() as stack:
        try:
            server = stack.enter_context(serve(spec, start_timeout=start_timeout))
        except ServerStartError as err:
            pytest.fail(start_failure(err, folder, what), pytrace=False)
        watched = tracebacks.watch(server.log, folder)
        try:
            yield server
        finally:
            watched.final = server.log()  # the log file goes with the server


@contextlib.contextmanager
def serve_service(grader_dir: Path, delay_ms: int, **env: str) -> Iterator[Server]:
    """The grader's helper service (``grader_dir/upstream.py``, answering after
    ``delay_ms``) under Uvicorn for a ``with`` block, with ``env`` set."""
    pairs = (("DELAY_MS", str(delay_ms)), *((k, str(v)) for k, v in env.items()))
    with serve(
        ServerSpec("asgi", app="upstream:app", app_dir=str(grader_dir), env=pairs)
    ) as server:
        yield server


@contextlib.contextmanager
def serve_behind_shim(submission: Path, grader_dir: Path, **env: str) -> Iterator[Server]:
    """The student's app.py under Uvicorn behind the grader's ``shim.py`` (which
    finds it through $LAB_SUBMISSION), with ``env`` set; see :func:`serve_or_fail`."""
    student_file(submission, "app.py")
    pairs = (("LAB_SUBMISSION", str(submission)), *((k, str(v)) for k, v in env.items()))
    spec = ServerSpec("asgi", app="shim:app", app_dir=str(grader_dir), env=pairs)
    with serve_or_fail(spec, submission, "your app.py under Uvicorn") as server:
        yield server
