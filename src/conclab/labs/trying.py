"""Try a student's copy of a lab by hand: ``make try LAB=01 SUBMISSION=path/to/folder``.

    conclab try 01 --submission path/to/your/01-unblock-the-loop [--port 8000]

Each lab says how it is tried in ``grader/try_it.py``, a function
``try_it(submission, port)`` that starts what the student needs - usually the
student's own app on ``port`` plus the grader's helper servers - prints what to
try, and shows the server's log until Ctrl-C (:func:`follow`). Like grading, it
runs the repository's copy of that file against the student's folder, so what
the student tries is what the grader runs, and never the solution.
"""

from __future__ import annotations

import contextlib
import importlib.util
import shlex
import signal
import sys
import time
from collections.abc import Iterator
from pathlib import Path

from ..base.errors import LabError, ServerStartError
from ..base.specs import ServerSpec
from ..processes.launcher import Server, serve
from .grading import check_submission
from .handout import find_lab

DEFAULT_PORT = 8000
TRY_FILE = Path("grader") / "try_it.py"


def try_lab(
    key: str | None, submission: str | None, port: int = DEFAULT_PORT, labs_dir=None
) -> int:
    """Run the lab's try_it(submission, port); return an exit code."""
    if not key:
        raise LabError("which lab? e.g. make try LAB=01 SUBMISSION=path/to/your/01-folder")
    lab = find_lab(key, labs_dir)
    script = lab / TRY_FILE
    if not script.is_file():
        raise LabError(f"lab {lab.name} has nothing to try by hand ({TRY_FILE} is missing)")
    folder = check_submission(lab, submission or ".", what="try")
    spec = importlib.util.spec_from_file_location(f"try_{lab.name[:2]}", script)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    print(f"Trying {lab.name}: {folder}", flush=True)
    # Ctrl-C stops it, and so does a plain `kill`: both unwind the `with` blocks
    # that stop the servers. (A shell starts background jobs with SIGINT
    # ignored; Ctrl-C must work however `make try` was started.)
    signal.signal(signal.SIGINT, signal.default_int_handler)
    signal.signal(signal.SIGTERM, _interrupt)
    try:
        module.try_it(folder, port)
    except KeyboardInterrupt:
        print("\nstopped; no server left running.", flush=True)
    return 0


def _interrupt(signum, frame):
    raise KeyboardInterrupt


@contextlib.contextmanager
def serve_for_trying(
    spec: ServerSpec,
    what: str,
    env_shown: dict[str, str] | None = None,
    start_timeout: float = 20.0,
    quiet: bool = False,
) -> Iterator[Server]:
    """Serve for a ``with`` block and say what runs where; a failed start is a
    LabError holding the server's own output (the student's traceback)."""
    with contextlib.ExitStack() as stack:
        try:
            server = stack.enter_context(serve(spec, start_timeout=start_timeout))
        except ServerStartError as err:
            if err.port_in_use and spec.port:
                raise LabError(
                    f"port {spec.port} is taken: pick another, "
                    f"e.g. PORT={spec.port + 1} make try ..."
                ) from None
            raise LabError(f"{what} did not start:\n{err.output}") from None
        if not quiet:
            env = " ".join(f"{k}={shlex.quote(v)}" for k, v in (env_shown or {}).items())
            command = shlex.join(_short(server.command))
            print(f"{what}: {server.url}\n  {env + ' ' if env else ''}{command}", flush=True)
        yield server


def _short(command):
    """The command as a student would type it: `gunicorn ...`, not `/abs/python -m gunicorn ...`."""
    if len(command) > 2 and command[0] == sys.executable and command[1] == "-m":
        return [command[2], *command[3:]]
    return list(command)


def follow(*servers: Server, poll: float = 0.2) -> None:
    """Copy the servers' logs to the terminal until Ctrl-C or until one of them exits."""
    print("Serving until Ctrl-C. The server's log follows.", flush=True)
    offsets = dict.fromkeys(range(len(servers)), 0)
    while True:
        for i, server in enumerate(servers):
            text = server.log()
            if len(text) > offsets[i]:
                sys.stdout.write(text[offsets[i] :])
                sys.stdout.flush()
                offsets[i] = len(text)
        stopped = [s for s in servers if not s.running()]
        if stopped:
            raise LabError(f"{stopped[0].spec.label} exited by itself; its log is above")
        time.sleep(poll)


def try_beside_service(
    submission: Path,
    port: int,
    *,
    grader_dir: Path,
    service: str,
    env_name: str,
    path: str,
    wait_ms: int,
    tips: str,
) -> None:
    """The try_it of a lab whose app calls a slow service: the grader's
    ``upstream.py`` (``wait_ms`` per answer, on a free port), then the student's
    app.py under Uvicorn on ``port`` with $``env_name`` pointing at ``path`` there;
    print ``tips`` (format fields ``url`` and ``wait_ms``) and follow both logs
    until Ctrl-C, which stops both."""
    upstream_spec = ServerSpec(
        "asgi",
        app="upstream:app",
        app_dir=str(grader_dir),
        cpus="all",
        env=(("DELAY_MS", str(wait_ms)),),
    )
    with serve_for_trying(upstream_spec, service) as upstream:
        target = upstream.url + path
        spec = ServerSpec(
            "asgi",
            app="app:app",
            app_dir=str(submission),
            port=port,
            cpus="all",
            env=((env_name, target),),
        )
        with serve_for_trying(spec, "your app.py", env_shown={env_name: target}) as app:
            print(tips.format(url=app.url, wait_ms=wait_ms), flush=True)
            follow(app, upstream)
