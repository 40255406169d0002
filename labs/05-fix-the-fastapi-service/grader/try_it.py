"""`make try LAB=05 SUBMISSION=<your folder>`: your app.py by hand, as the grader runs it.

Starts the rates service that /rates calls (upstream.py here, 800 ms per
answer, on a free port), then YOUR app.py under Uvicorn on 127.0.0.1:<port>
with RATES_URL pointing at that service, and shows the server's log - your
tracebacks included - until Ctrl-C, which stops both.
"""

from pathlib import Path

from conclab.labs.trying import try_beside_service

HERE = Path(__file__).resolve().parent
WAIT_MS = 800  # as in the grader

TIPS = """
Try, in another terminal:
  curl -s '{url}/reports/7?ms=3000' & sleep 0.5; time curl -s {url}/health; wait
  curl -s {url}/rates & sleep 0.2; time curl -s {url}/health; wait    # the rates service takes {wait_ms} ms
  curl -s '{url}/api-key?user=Ada&rounds=3000000' & sleep 0.2; time curl -s {url}/health; wait
  # 45 slow PDFs at once: more than the threadpool's 40 tokens
  for i in $(seq 45); do curl -s -o /dev/null '{url}/reports/'$i'/pdf?ms=3000' & done; sleep 0.5; time curl -s {url}/health; wait
"""  # noqa: E501


def try_it(submission: Path, port: int) -> None:
    try_beside_service(
        submission,
        port,
        grader_dir=HERE,
        service="the rates service /rates calls",
        env_name="RATES_URL",
        path="/rates",
        wait_ms=WAIT_MS,
        tips=TIPS,
    )
