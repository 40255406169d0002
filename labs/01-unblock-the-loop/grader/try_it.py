"""`make try LAB=01 SUBMISSION=<your folder>`: your app.py by hand, as the grader runs it.

Starts the slow service that /fetch calls (upstream.py here, 800 ms per
answer, on a free port), then YOUR app.py under Uvicorn on 127.0.0.1:<port>
with UPSTREAM_URL pointing at that service, and shows the server's log - your
tracebacks included - until Ctrl-C, which stops both.
"""

from pathlib import Path

from conclab.base.specs import ServerSpec
from conclab.labs.trying import follow, serve_for_trying

HERE = Path(__file__).resolve().parent
WAIT_MS = 800  # as in the grader


def try_it(submission: Path, port: int) -> None:
    upstream_spec = ServerSpec("asgi", app="upstream:app", app_dir=str(HERE), cpus="all",
                               env=(("DELAY_MS", str(WAIT_MS)),))
    with serve_for_trying(upstream_spec, "the slow service /fetch calls") as upstream:
        data = upstream.url + "/data"
        spec = ServerSpec("asgi", app="app:app", app_dir=str(submission), port=port, cpus="all",
                          env=(("UPSTREAM_URL", data),))
        with serve_for_trying(spec, "your app.py", env_shown={"UPSTREAM_URL": data}) as app:
            url = app.url
            print(f"""
Try, in another terminal:
  curl -s '{url}/sleep?ms=3000' & sleep 0.5; time curl -s {url}/health; wait
  time curl -s {url}/fetch                       # the upstream answers after {WAIT_MS} ms
  time curl -s '{url}/hash?text=pw&rounds=2000000'
""", flush=True)
            follow(app, upstream)
