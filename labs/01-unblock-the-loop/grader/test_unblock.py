"""Grader for lab 01: every handler of app.py must leave the event loop free.

For each route the grader fires 4 requests at once at your app under Uvicorn,
and while they run, probes /health. The server stamps each request with when
it started and finished (shim.py), so the checks count overlap on the server's
own clock - "were the 4 requests in progress at the same time?" and "was
/health answered before any of them finished?" - instead of racing a stopwatch.
"""

import asyncio
import hashlib
import uuid
from pathlib import Path

import httpx
import pytest

from conclab.labs.harness import burst, pbkdf2_rounds_for
from conclab.labs.helpers import serve_behind_shim, serve_service
from conclab.measuring.stats import max_overlap

HERE = Path(__file__).resolve().parent
N = 4  # requests fired at once per route
WAIT_MS = 800  # how long /sleep and the upstream of /fetch take
HASH_SECONDS = 0.4  # CPU time of one /hash request on this machine
SALT = b"conclab-lab-01"

ADVICE = {
    "sleep": "Look at sleep() in app.py: time.sleep() holds the event loop's only thread "
    "while it waits. `await asyncio.sleep(...)` hands the loop back meanwhile.",
    "fetch": "Look at fetch() in app.py: httpx.get() is a synchronous call, so the loop waits "
    "with it. Use an httpx.AsyncClient and `await client.get(...)` (open one client at "
    "startup, in lifespan, and close it at shutdown).",
    "hash": "Look at hash_text() in app.py: hashing is CPU work on the loop's own thread, and "
    "CPU work cannot be awaited. Offload it to a pool thread: "
    "`await asyncio.to_thread(slow_hash, ...)` (hashlib releases the GIL meanwhile).",
}


@pytest.fixture(scope="module")
def upstream():
    token = uuid.uuid4().hex
    with serve_service(HERE, WAIT_MS, UPSTREAM_TOKEN=token) as server:
        yield server.url, token


@pytest.fixture(scope="module")
def app_url(submission, upstream):
    with serve_behind_shim(submission, HERE, UPSTREAM_URL=upstream[0] + "/data") as server:
        yield server.url


async def fire(base, paths):
    """Send `paths` all at once; 0.25 s later, while they run, probe /health 3 times."""
    limits = httpx.Limits(max_connections=len(paths) + 2)
    async with httpx.AsyncClient(timeout=30, limits=limits) as client:
        return await burst(client, base, paths)


@pytest.fixture(scope="module", params=["sleep", "fetch", "hash"])
def route(request, app_url, upstream):
    """One burst of N requests at one route; the three checks of a route share it."""
    name = request.param
    if name == "sleep":
        paths, expected = [f"/sleep?ms={WAIT_MS}"] * N, None
    elif name == "fetch":
        paths, expected = ["/fetch"] * N, [upstream[1]] * N
    else:
        rounds = pbkdf2_rounds_for(HASH_SECONDS, SALT)
        paths = [f"/hash?text=lab01&rounds={rounds}"] * N
        expected = [hashlib.pbkdf2_hmac("sha256", b"lab01", SALT, rounds).hex()] * N
    try:
        answers, probes = asyncio.run(asyncio.wait_for(fire(app_url, paths), 45))
    except (TimeoutError, httpx.HTTPError) as err:
        pytest.fail(
            f"/{name}: requests failed ({type(err).__name__}: {err}). {ADVICE[name]}", pytrace=False
        )
    return name, answers, probes, expected


def test_route_still_does_its_job(route):
    """the route answers 200 with the same result as before"""
    name, answers, _, expected = route
    bad = [a for a in answers if a["status"] != 200]
    assert not bad, f"/{name} answered {bad[0]['status']}: {bad[0]['body'][:300]}"
    if name == "sleep":
        took = min(a["end"] - a["start"] for a in answers) / 1e9
        assert took >= 0.9 * WAIT_MS / 1000, (
            f"/sleep?ms={WAIT_MS} returned after {took:.2f} s: it must still wait {WAIT_MS} ms, "
            "just without blocking the loop. Look at sleep() in app.py."
        )
    else:
        got = [a["body"] for a in answers]
        assert got == expected, (
            f"/{name} answered {got[0][:80]!r}, expected "
            f"{expected[0][:80]!r}. Make it non-blocking "
            f"without changing what it answers. Look at {name}() in app.py."
        )


@pytest.mark.points(2)
def test_requests_overlap(route):
    """the requests to this route are in progress at the same time"""
    name, answers, _, _ = route
    overlap = max_overlap([a["start"] for a in answers], [a["end"] for a in answers])
    # N - 1, not N: a busy machine may deliver one request late; a blocked
    # loop gives exactly 1 whatever the machine.
    assert overlap >= N - 1, (
        f"{N} requests to /{name} were sent at once, but the server worked on at most "
        f"{overlap} at a time: each waited for the one before. {ADVICE[name]}"
    )


@pytest.mark.points(2)
def test_health_stays_fast(route):
    """/health is answered while requests to this route are still running"""
    name, answers, probes, _ = route
    first_done = min(a["end"] for a in answers)
    late = [p for p in probes if p["end"] >= first_done]
    worst = max(p["received"] - p["sent"] for p in probes) / 1e9
    # An ordering on the server's clock, not a deadline: with a free loop,
    # /health is answered in milliseconds, long before any /{name} finishes;
    # with a blocked loop it cannot even start until one of them has.
    assert not late, (
        f"/health waited up to {worst:.2f} s while {N} /{name} requests ran: it was answered "
        f"only after one of them finished, so the loop was blocked. {ADVICE[name]}"
    )
    assert all(p["status"] == 200 for p in probes), (
        "/health did not answer 200; keep the /health route."
    )
