"""Grader for lab 05: every route of the FastAPI service in app.py must leave the
event loop - and the threadpool /health needs - free while it works.

For each slow route the grader fires a burst of requests at your app under
Uvicorn and, while they run, probes /health. The server stamps each request
with when it started and finished (shim.py), so the checks count overlap on
the server's own clock - "were the requests in progress at the same time?",
"was /health answered before any of them finished?" - instead of racing a
stopwatch. Every answer must be the one the untouched service gives.
"""

import asyncio
import hashlib
import importlib.util
import json
import uuid
from pathlib import Path

import httpx
import pytest

from conclab.labs import harness
from conclab.labs.helpers import serve_behind_shim, serve_service
from conclab.measuring.stats import max_overlap

HERE = Path(__file__).resolve().parent
N = 4  # requests fired at once at /reports, /rates and /api-key
WAIT_MS = 800  # how long a report query, a PDF render and the rates service take
HASH_SECONDS = 0.4  # CPU time of one /api-key request on this machine
FREE = 10  # AnyIO tokens the grader leaves free before the PDF burst ...
PDFS = FREE + 10  # ... which is bigger than that
SALT = b"conclab-lab-05"

# The lab's own backends.py (never the submission's) says what the answers are.
_spec = importlib.util.spec_from_file_location("lab05_backends", HERE.parent / "backends.py")
backends = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(backends)

LABELS = {
    "report": "/reports/{id}",
    "rates": "/rates",
    "api-key": "/api-key",
    "pdf": "/reports/{id}/pdf",
}
ADVICE = {
    "report": "Look at report() in app.py: backends.query() blocks the thread it runs on, and an "
    "`async def` endpoint runs on the event loop's only thread. Await the asyncio "
    "driver (`await backends.query_async(...)`), or make the endpoint a plain `def`, "
    "which FastAPI runs in its threadpool.",
    "rates": "Look at rates() in app.py: httpx.Client is a synchronous client, so the loop waits "
    "with it. Use an httpx.AsyncClient and `await http.get(...)` (open it at startup, in "
    "lifespan, and close it at shutdown) - or make the endpoint a plain `def`.",
    "api-key": "Look at api_key() in app.py: key derivation is CPU work on the loop's own "
    "thread, and CPU work cannot be awaited. Hand it to a pool: `await "
    "run_in_threadpool(derive_key, ...)` (hashlib releases the GIL meanwhile).",
    "pdf": "Look at health() and report_pdf() in app.py. A plain `def` endpoint needs a token "
    "from AnyIO's threadpool, and slow PDF renders can hold every one: a plain `def` "
    "/health then waits behind them. /health waits for nothing - make it `async def` "
    "so it never needs a token (or give the renders a CapacityLimiter of their own). "
    "Raising total_tokens, or loop.set_default_executor, does not do it.",
}


@pytest.fixture(scope="module")
def upstream():
    token = uuid.uuid4().hex
    with serve_service(HERE, WAIT_MS, UPSTREAM_TOKEN=token) as server:
        rates = httpx.get(server.url + "/rates", timeout=10).json()
        yield server.url, rates


@pytest.fixture(scope="module")
def app_url(submission, upstream):
    with serve_behind_shim(submission, HERE, RATES_URL=upstream[0] + "/rates") as server:
        yield server.url


async def fire(base, paths, fill_pool=False):
    """Send `paths` all at once; 0.25 s later, while they run, probe /health 3 times.
    With fill_pool, first borrow all but FREE of AnyIO's tokens (given back after)."""
    limits = httpx.Limits(max_connections=len(paths) + 2)
    async with httpx.AsyncClient(timeout=30, limits=limits) as client:
        pool = (
            (await client.get(base + f"/__grader/fill?free={FREE}")).json() if fill_pool else None
        )
        try:
            answers, probes = await harness.burst(client, base, paths, json_body=True)
            return answers, probes, pool
        finally:
            if fill_pool:
                await client.get(base + "/__grader/empty")


def plan(name, rates):
    """The burst for one route: the paths, and the answer each must get."""
    if name == "report":
        ids = range(1, N + 1)
        return (
            [f"/reports/{i}?ms={WAIT_MS}" for i in ids],
            [{"id": i, "rows": backends.query(i, 0)} for i in ids],
        )
    if name == "rates":
        return ["/rates"] * N, [{"source": "rates-service", "rates": rates}] * N
    if name == "api-key":
        rounds = harness.pbkdf2_rounds_for(HASH_SECONDS, SALT)
        key = hashlib.pbkdf2_hmac("sha256", b"Ada", SALT, rounds).hex()
        return [f"/api-key?user=Ada&rounds={rounds}"] * N, [{"user": "Ada", "key": key}] * N
    ids = range(1, PDFS + 1)
    return [f"/reports/{i}/pdf?ms={WAIT_MS}" for i in ids], [backends.render_pdf(i, 0) for i in ids]


@pytest.fixture(scope="module")
def burst(app_url, upstream):
    """burst(name): fire one route's burst (once; its checks share it)."""
    done = {}

    def run(name):
        if name not in done:
            paths, expected = plan(name, upstream[1])
            try:
                answers, probes, pool = asyncio.run(
                    asyncio.wait_for(fire(app_url, paths, fill_pool=name == "pdf"), 45)
                )
                done[name] = {
                    "answers": answers,
                    "probes": probes,
                    "pool": pool,
                    "paths": paths,
                    "expected": expected,
                }
            except (TimeoutError, httpx.HTTPError) as err:
                done[name] = (
                    f"{LABELS[name]}: requests failed ({type(err).__name__}: {err}). {ADVICE[name]}"
                )
        if isinstance(done[name], str):
            pytest.fail(done[name], pytrace=False)
        return done[name]

    return run


@pytest.mark.parametrize("name", ["report", "rates", "api-key", "pdf"])
def test_answers_unchanged(burst, name):
    """the route answers 200 with the same body as before"""
    result = burst(name)
    for path, answer, expected in zip(
        result["paths"], result["answers"], result["expected"], strict=True
    ):
        assert answer["status"] < 500, (
            f"GET {path} answered {answer['status']} {json.dumps(answer['body'])[:200]}: your code "
            f"raised an exception (the server's log says which). {ADVICE[name]}"
        )
        assert answer["status"] == 200 and answer["body"] == expected, (
            f"GET {path} answered {answer['status']} "
            f"{json.dumps(answer['body'])[:200]}; expected 200 "
            f"{json.dumps(expected)[:200]}. Fix how the "
            f"route waits, not what it answers. {ADVICE[name]}"
        )
    if name in ("report", "pdf"):
        took = min(a["end"] - a["start"] for a in result["answers"]) / 1e9
        assert took >= 0.9 * WAIT_MS / 1000, (
            f"GET {result['paths'][0]} answered after {took:.2f} s: it must still take the "
            f"{WAIT_MS} ms the {'database' if name == 'report' else 'renderer'} needs, just "
            f"without blocking others. {ADVICE[name]}"
        )


def still_running(result, name):
    """Overlap and /health mean something only while the burst runs: fail clearly
    if every request had finished before the grader's first probe went out."""
    answers, probes = result["answers"], result["probes"]
    if max(a["end"] for a in answers) <= probes[0]["sent"]:
        took = max(a["end"] - a["start"] for a in answers) / 1e9
        pytest.fail(
            f"every request to {LABELS[name]} was answered within {took:.2f} s, before the "
            "grader probed /health 0.25 s later, so this cannot be checked: the route "
            f"must still take its time. See answers_unchanged[{name}].",
            pytrace=False,
        )


@pytest.mark.points(2)
@pytest.mark.parametrize("name", ["report", "rates", "api-key"])
def test_requests_overlap(burst, name):
    """the requests to this route are in progress at the same time"""
    result = burst(name)
    still_running(result, name)
    answers = result["answers"]
    overlap = max_overlap([a["start"] for a in answers], [a["end"] for a in answers])
    # N - 1, not N: a busy machine may deliver one request late; a blocked
    # loop gives exactly 1 whatever the machine.
    assert overlap >= N - 1, (
        f"{N} requests to {LABELS[name]} were sent at once, but the server worked on at most "
        f"{overlap} at a time: each waited for the one before. {ADVICE[name]}"
    )


@pytest.mark.points(2)
@pytest.mark.parametrize("name", ["report", "rates", "api-key", "pdf"])
def test_health_answers_meanwhile(burst, name):
    """/health is answered while requests to this route are still running"""
    result = burst(name)
    still_running(result, name)
    answers, probes, pool = result["answers"], result["probes"], result["pool"]
    # An ordering on the server's clock, not a deadline: a /health that needs
    # nothing busy is answered in milliseconds, before any request that was
    # running when it was sent has finished; behind a blocked loop or an empty
    # pool it cannot even start until one of them has.
    late = []
    for probe in probes:
        running = [a["end"] for a in answers if a["end"] > probe["sent"]]
        if running and probe["end"] >= min(running):
            late.append(probe)
    worst = max(p["received"] - p["sent"] for p in probes) / 1e9
    if pool:
        what = (
            f"{len(answers)} PDF renders (the grader first borrowed all but {pool['free']} of "
            f"the threadpool's {pool['total']} tokens, as other traffic would)"
        )
    else:
        what = f"{len(answers)} requests to {LABELS[name]}"
    assert not late, (
        f"/health waited up to {worst:.2f} s during {what}: it was answered only after one of "
        f"them finished. {ADVICE[name]}"
    )
    assert all(p["status"] == 200 for p in probes), (
        "/health did not answer 200; keep the /health route."
    )
