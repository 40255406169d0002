"""`make try LAB=02 SUBMISSION=<your folder>`: your gunicorn.conf.py by hand, as the grader runs it.

Starts Gunicorn with the repository's app.py and YOUR gunicorn.conf.py on
127.0.0.1:<port>, with the two settings the grader adds (README, "How it is
graded"), and shows the server's log until Ctrl-C. Measure it with
`conclab bench` from another terminal.
"""

import runpy
from pathlib import Path

from conclab.base.errors import LabError
from conclab.base.specs import ServerSpec
from conclab.labs.trying import follow, serve_for_trying

LAB = Path(__file__).resolve().parent.parent  # the repository's app.py, as in the grader


def try_it(submission: Path, port: int) -> None:
    conf = submission / "gunicorn.conf.py"
    try:
        threads = runpy.run_path(str(conf)).get("threads", 1)
    except Exception as err:  # noqa: BLE001 - any error in the student's file is for the student
        raise LabError(f"{conf} fails to run: {type(err).__name__}: {err}") from None
    fair = f"--keep-alive 0 --worker-connections {threads}"
    spec = ServerSpec(
        "wsgi",
        app="app:app",
        app_dir=str(LAB),
        config=str(conf),
        port=port,
        cpus="all",
        env=(("GUNICORN_CMD_ARGS", fair),),
    )
    with serve_for_trying(
        spec,
        "Gunicorn with your gunicorn.conf.py",
        env_shown={"GUNICORN_CMD_ARGS": fair},
        start_timeout=30,
    ) as server:
        print(
            f"""
Measure it, in another terminal (the grader's load: 16 users, 1 s warm-up, 4 s measured):
  .venv/bin/conclab bench --url {server.url} --path /order --concurrency 16 --duration 4 --warmup 1
""",
            flush=True,
        )
        follow(server)
