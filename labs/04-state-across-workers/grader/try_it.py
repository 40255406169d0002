"""`make try LAB=04 SUBMISSION=<your folder>`: your app.py by hand, as the grader runs it.

Runs YOUR app.py under Gunicorn with 4 sync workers on 127.0.0.1:<port>, with
COUNTER_PATH set to a new file in an empty folder, and shows the server's log
until Ctrl-C. Like the grader, it serves app.py through shim.py, which answers
/health (the launcher waits for it) and passes every other request to your app.
"""

import tempfile
from pathlib import Path

from conclab.base.specs import ServerSpec
from conclab.labs.trying import follow, serve_for_trying

HERE = Path(__file__).resolve().parent
WORKERS = 4  # as in the grader


def try_it(submission: Path, port: int) -> None:
    with tempfile.TemporaryDirectory(prefix="lab04-try-") as state:
        counter = str(Path(state) / "counter")
        spec = ServerSpec(
            "wsgi",
            workers=WORKERS,
            app="shim:app",
            app_dir=str(HERE),
            port=port,
            cpus="all",
            env=(("LAB_SUBMISSION", str(submission)), ("COUNTER_PATH", counter)),
        )
        with serve_for_trying(spec, "your app.py", env_shown={"COUNTER_PATH": counter}) as app:
            url = app.url
            print(
                f"""
Try, in another terminal (20 hits at once, then the total, asked 4 times):
  for i in $(seq 20); do curl -s -X POST {url}/hit & done; wait
  for i in 1 2 3 4; do curl -s {url}/count; done
""",
                flush=True,
            )
            follow(app)
