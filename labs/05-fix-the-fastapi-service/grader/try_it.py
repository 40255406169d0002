"""`make try LAB=05 SUBMISSION=<your folder>`: your app.py by hand, as the grader runs it.

Starts the rates service that /rates calls (upstream.py here, 800 ms per
answer, on a free port), then YOUR app.py under Uvicorn on 127.0.0.1:<port>
with RATES_URL pointing at that service, and shows the server's log - your
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
    with serve_for_trying(upstream_spec, "the rates service /rates calls") as upstream:
        rates = upstream.url + "/rates"
        spec = ServerSpec("asgi", app="app:app", app_dir=str(submission), port=port, cpus="all",
                          env=(("RATES_URL", rates),))
        with serve_for_trying(spec, "your app.py", env_shown={"RATES_URL": rates}) as app:
            url = app.url
            print(f"""
Try, in another terminal:
  curl -s '{url}/reports/7?ms=3000' & sleep 0.5; time curl -s {url}/health; wait
  curl -s {url}/rates & sleep 0.2; time curl -s {url}/health; wait    # the rates service takes {WAIT_MS} ms
  curl -s '{url}/api-key?user=Ada&rounds=3000000' & sleep 0.2; time curl -s {url}/health; wait
  # 45 slow PDFs at once: more than the threadpool's 40 tokens
  for i in $(seq 45); do curl -s -o /dev/null '{url}/reports/'$i'/pdf?ms=3000' & done; sleep 0.5; time curl -s {url}/health; wait
""", flush=True)
            follow(app, upstream)
