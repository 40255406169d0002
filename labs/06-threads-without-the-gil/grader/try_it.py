"""`make try LAB=06 SUBMISSION=<your folder>`: your app.py by hand, as the grader runs it.

Runs YOUR app.py on the free-threaded Python (`make freethreaded` builds it)
under Uvicorn with 2 pool threads on 127.0.0.1:<port>, and shows the server's
log until Ctrl-C. Like the grader, it serves app.py through shim.py, which
answers /health and /interpreter and passes every other request to your app.
"""

from pathlib import Path

from conclab.base.errors import UserError
from conclab.base.paths import SERVERS_DIR
from conclab.base.specs import ServerSpec
from conclab.labs.trying import follow, serve_for_trying
from conclab.processes import interpreters

HERE = Path(__file__).resolve().parent
THREADS = 2  # as in the grader


def try_it(submission: Path, port: int) -> None:
    python = interpreters.freethreaded_python()
    if python is None:
        raise UserError(
            f"lab 06 runs on a free-threaded Python, and none is built: "
            f"{interpreters.BUILD_COMMAND}"
        )
    spec = ServerSpec(
        "asgi",
        app="shim:app",
        app_dir=str(HERE),
        port=port,
        cpus="all",
        threadpool=THREADS,
        python=str(python),
        env=(("LAB_SUBMISSION", str(submission)), ("CONCLAB_SERVERS", str(SERVERS_DIR))),
    )
    with serve_for_trying(spec, "your app.py") as app:
        url = app.url
        print(
            f"""
Try, in another terminal (8 requests at once, then the totals; 8 x 20000 numbers were checked):
  for i in $(seq 8); do curl -s "{url}/primes?below=20000" & done; wait
  curl -s {url}/stats
  curl -s {url}/interpreter
""",
            flush=True,
        )
        follow(app)
