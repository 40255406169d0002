"""Grader for lab 04: the hit counter in app.py must be exact across workers.

The grader runs your app under Gunicorn with 4 worker processes, sends many
POST /hit requests from 16 clients at once, and then checks two things that
do not depend on timing at all: every hit got a different number, and the
total that every worker reports equals the number of hits sent.
"""

import asyncio
import collections
import tempfile
from pathlib import Path

import httpx
import pytest

from conclab.base.specs import ServerSpec
from conclab.labs.helpers import serve_or_fail, student_file

HERE = Path(__file__).resolve().parent
HITS = 200
CLIENTS = 16
WHERE = (
    "Look at hit() and total() in app.py: a global lives inside one worker process, and "
    "Gunicorn runs 4 of them. Keep the count in one place that every worker opens - a file "
    "or database at COUNTER_PATH - and make read-add-write one locked step (a SQLite "
    "transaction, BEGIN IMMEDIATE, or fcntl.flock on a file)."
)


async def hammer(url, hits, clients):
    """POST /hit `hits` times from `clients` concurrent clients; then read /count 8 times."""
    todo = iter(range(hits))
    answers = []

    async def client_loop(client):
        for _ in todo:  # the clients share one iterator: `hits` requests in all
            response = await client.post(url + "/hit")
            answers.append(response)

    limits = httpx.Limits(max_connections=clients)
    async with httpx.AsyncClient(timeout=20, limits=limits) as client:
        await asyncio.gather(*(client_loop(client) for _ in range(clients)))
        reads = [await client.get(url + "/count") for _ in range(8)]
    return answers, reads


def count_of(response, what):
    try:
        return int(response.json()["count"])
    except (ValueError, KeyError, TypeError):
        pytest.fail(
            f"{what} answered {response.status_code} {response.text[:200]!r}; expected "
            'JSON like {"count": 7}. Look at app.py.',
            pytrace=False,
        )


def burst(submission, workers, threads, hits):
    """Serve app.py (through shim.py) with a fresh COUNTER_PATH and hammer it."""
    student_file(submission, "app.py")
    with tempfile.TemporaryDirectory(prefix="lab04-") as state:
        env = (("LAB_SUBMISSION", str(submission)), ("COUNTER_PATH", str(Path(state) / "counter")))
        spec = ServerSpec(
            "wsgi", workers=workers, threads=threads, app="shim:app", app_dir=str(HERE), env=env
        )
        with serve_or_fail(spec, submission, "your app.py under Gunicorn") as server:
            answers, reads = asyncio.run(asyncio.wait_for(hammer(server.url, hits, CLIENTS), 40))
    return {
        "answers": answers,
        "reads": reads,
        "hits": hits,
        "pids": collections.Counter(r.headers.get("x-grader-pid") for r in answers),
    }


def counts(result):
    """The numbers /hit handed out and the totals /count reported; fails on any error."""
    failed = [r for r in result["answers"] + result["reads"] if r.status_code != 200]
    if failed:
        # The student's traceback, from the server's log, is shown under this
        # failure (serve_or_fail watches the log).
        pytest.fail(
            f"{len(failed)} of {len(result['answers']) + len(result['reads'])} requests "
            f"failed with status {failed[0].status_code}. "
            "Look at app.py; `make try LAB=04 SUBMISSION=<your folder>` runs it by hand and "
            "shows its log.",
            pytrace=False,
        )
    return (
        [count_of(r, "POST /hit") for r in result["answers"]],
        [count_of(r, "GET /count") for r in result["reads"]],
    )


@pytest.fixture(scope="module")
def processes(submission):
    """4 sync workers (4 processes, 1 thread each), as in the README."""
    return burst(submission, workers=4, threads=1, hits=HITS)


@pytest.fixture(scope="module")
def threads(submission):
    """1 gthread worker with 8 threads: the count must be safe for threads too."""
    return burst(submission, workers=1, threads=8, hits=HITS // 2)


def spread(result):
    # Without this the check would prove nothing: one worker serving
    # everything would make even a global look right.
    assert len(result["pids"]) >= 2, (
        f"all hits were served by one worker ({dict(result['pids'])}); the grader could not "
        "spread them. Run the grader again on a quieter machine."
    )


@pytest.mark.points(2)
def test_every_hit_gets_its_own_number(processes):
    """with 4 workers, no two hits get the same number"""
    hits, _ = counts(processes)
    spread(processes)
    seen = collections.Counter(hits)
    repeated = sorted(n for n, times in seen.items() if times > 1)
    assert not repeated, (
        f"{HITS} hits from {CLIENTS} clients over {len(processes['pids'])} workers got only "
        f"{len(seen)} different numbers; e.g. {repeated[:5]} were handed out more than once. "
        f"Each worker counted on its own, or two read the same old value. {WHERE}"
    )


@pytest.mark.points(2)
def test_total_is_exact_in_every_worker(processes):
    """with 4 workers, GET /count equals the number of hits, whichever worker answers"""
    _, totals = counts(processes)
    spread(processes)
    assert sorted(set(totals)) == [HITS], (
        f"after {HITS} hits, GET /count answered {sorted(set(totals))} (asked 8 times). {WHERE}"
    )


def test_exact_with_threads_too(threads):
    """with 8 threads in a worker, every hit counted once and the total exact"""
    n = threads["hits"]
    hits, totals = counts(threads)
    assert sorted(hits) == list(range(1, n + 1)) and sorted(set(totals)) == [n], (
        f"with one gthread worker of 8 threads, {n} hits gave {len(set(hits))} different "
        f"numbers and GET /count answered {sorted(set(totals))}. The threads of a worker run "
        "hit() at the same time. Look at hit() in app.py: make read-add-write one locked step."
    )
