"""`make try LAB=01 SUBMISSION=<your folder>`: your app.py by hand, as the grader runs it.

Starts the slow service that /fetch calls (upstream.py here, 800 ms per
answer, on a free port), then YOUR app.py under Uvicorn on 127.0.0.1:<port>
with UPSTREAM_URL pointing at that service, and shows the server's log - your
tracebacks included - until Ctrl-C, which stops both.
"""

from pathlib import Path

from conclab.labs.trying import try_beside_service

HERE = Path(__file__).resolve().parent
WAIT_MS = 800  # as in the grader

TIPS = """
Try, in another terminal:
  curl -s '{url}/sleep?ms=3000' & sleep 0.5; time curl -s {url}/health; wait
  time curl -s {url}/fetch                       # the upstream answers after {wait_ms} ms
  time curl -s '{url}/hash?text=pw&rounds=2000000'
"""


def try_it(submission: Path, port: int) -> None:
    try_beside_service(
        submission,
        port,
        grader_dir=HERE,
        service="the slow service /fetch calls",
        env_name="UPSTREAM_URL",
        path="/data",
        wait_ms=WAIT_MS,
        tips=TIPS,
    )
