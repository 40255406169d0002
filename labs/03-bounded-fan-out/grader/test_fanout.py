"""Grader for lab 03: fetch_all(urls, limit, timeout) in fanout.py.

The grader runs its own server (upstream.py) with slow, failing and hanging
URLs. That server counts how many of your requests are in flight at once, so
the limit is checked where it matters - at the server - not guessed from
timings. Times are compared as ratios with wide margins, never as tight
wall-clock deadlines.
"""

import asyncio
import inspect
import json
import math
import time
import uuid
from pathlib import Path

import httpx
import pytest

from conclab.base.specs import ServerSpec
from conclab.labs import tracebacks
from conclab.labs.helpers import import_student
from conclab.processes.launcher import free_port, serve

HERE = Path(__file__).resolve().parent
LATENCY_MS = 300  # every "item" URL in the timing checks takes this long
HANG_S = 2.5  # the grader's server answers /hang with a 504 after this long (upstream.py)
WHERE = "Look at fetch_all in fanout.py"


@pytest.fixture(scope="module")
def upstream():
    with serve(ServerSpec("asgi", app="upstream:app", app_dir=str(HERE))) as server:
        yield server.url


@pytest.fixture(scope="module")
def fetch_all(submission):
    module = import_student(submission, "fanout")
    function = getattr(module, "fetch_all", None)
    if function is None:
        pytest.fail(
            "fanout.py has no function fetch_all: keep its name and arguments.", pytrace=False
        )
    if not inspect.iscoroutinefunction(function):
        pytest.fail("fetch_all must be an `async def` function: it is awaited.", pytrace=False)
    return function


class Run:
    """One call of fetch_all against a fresh run id on the grader's server."""

    def __init__(self, upstream, submission):
        self.base = f"{upstream}/{uuid.uuid4().hex[:10]}"
        self.upstream = upstream
        self.submission = submission

    def item(self, i, ms=LATENCY_MS):
        return f"{self.base}/item/{i}?ms={ms}"

    def call(self, fetch_all, urls, limit, timeout=5.0):
        async def go():
            # A bound on the whole call: an endless loop fails the check, it
            # does not hang the grader.
            return await asyncio.wait_for(fetch_all(list(urls), limit, timeout), 30)

        start = time.monotonic()
        try:
            self.results = asyncio.run(go())
        except TimeoutError:
            pytest.fail(
                f"fetch_all did not return within 30 s. {WHERE}: does every request end?",
                pytrace=False,
            )
        except Exception as err:  # noqa: BLE001 - the message says which URL and why
            yours = tracebacks.of_exception(err, self.submission)
            said = (
                "\n".join(["an exception, here in your code:", *yours])
                if yours
                else first_line(err)
            )
            pytest.fail(
                f"fetch_all raised {said}\n{hung_hint(err, timeout)}"
                "It must not raise: return each URL's error "
                f"in that URL's place in the list. {WHERE}.",
                pytrace=False,
            )
        self.elapsed = time.monotonic() - start
        self.stats = json.loads(httpx.get(f"{self.base}/stats", trust_env=False).text)
        if not isinstance(self.results, list | tuple) or len(self.results) != len(urls):
            got = (
                len(self.results)
                if isinstance(self.results, list | tuple)
                else type(self.results).__name__
            )
            pytest.fail(
                f"fetch_all returned {got} results for "
                f"{len(urls)} URLs: one result per URL, as a list.",
                pytrace=False,
            )
        return self


def hung_hint(err, timeout):
    """For the grader's 504 from the URL that hangs: why it got that far."""
    if (
        isinstance(err, httpx.HTTPStatusError)
        and err.response.status_code == 504
        and err.request.url.path == "/hang"
    ):
        return (
            f"That 504 is the URL that hangs: the grader's server gave up on it after {HANG_S} s, "
            f"because nothing stopped waiting at timeout={timeout:g} s. Pass `timeout` to httpx "
            "(httpx.AsyncClient(timeout=...)).\n"
        )
    return ""


def first_line(err):
    """'HTTPStatusError: Server error ...' - the
    exception's type and the first line of its message."""
    text = str(err).strip().splitlines()
    return f"{type(err).__name__}: {text[0]}" if text else type(err).__name__


def how_it_ran(run, limit):
    """What the server saw of a run, in words: the cause behind a slow or unbounded call."""
    seen = run.stats["max_inflight"]
    if seen <= 1:
        return (
            "The server never saw more than 1 of your requests at once: they ran one after "
            "another (`await` inside a for loop does that). Start them all as tasks "
            "(asyncio.gather or a TaskGroup) and let a semaphore admit `limit` at a time."
        )
    if seen > limit:
        return (
            f"The server saw {seen} of your requests at once, more than limit={limit}: "
            "every request must first take one of `limit` slots (asyncio.Semaphore(limit))."
        )
    return ""


@pytest.fixture(scope="module")
def uniform(upstream, fetch_all, submission):
    """9 URLs of 300 ms each, limit 3: shared by the limit and timing checks."""
    run = Run(upstream, submission)
    return run.call(fetch_all, [run.item(i) for i in range(9)], limit=3)


def test_results_in_input_order(upstream, fetch_all, submission):
    """results come back in the order of the URLs, not the order they finish"""
    run = Run(upstream, submission)
    # The first URL is the slowest, so with any concurrency it finishes last.
    latencies = [300, 240, 180, 120, 60, 0]
    run.call(fetch_all, [run.item(i, ms) for i, ms in enumerate(latencies)], limit=len(latencies))
    expected = [f"item {i}" for i in range(len(latencies))]
    assert list(run.results) == expected, (
        f"expected {expected}\n     got {list(run.results)}\n"
        f"Results must be in the order of `urls`. {WHERE}: asyncio.gather keeps the order of "
        "its arguments; collecting results as they complete does not."
    )


@pytest.mark.points(2)
def test_never_more_than_limit_in_flight(uniform):
    """never more than `limit` requests in flight at once"""
    seen = uniform.stats["max_inflight"]
    assert seen <= 3, (
        f"The server saw {seen} of your requests in flight at once; limit was 3. {WHERE}: "
        "every request must first take one of `limit` slots (asyncio.Semaphore(limit)) and "
        "give it back when it is done."
    )


def test_uses_the_limit(uniform):
    """runs `limit` requests at once, not one after another"""
    seen = uniform.stats["max_inflight"]
    assert seen >= 3, (
        f"At most {seen} request(s) were in flight at once; with limit=3 and 9 URLs there "
        f"should be 3. {WHERE}: "
        + (how_it_ran(uniform, 3) or "are `limit` requests admitted at once?")
    )


def test_total_time_near_the_ideal(uniform):
    """9 URLs of 300 ms with limit 3 take about ceil(9/3) x 300 ms = 0.9 s"""
    ideal = math.ceil(9 / 3) * LATENCY_MS / 1000
    ratio = uniform.elapsed / ideal
    # One at a time takes 3x the ideal; 1.75x (about halfway, geometrically)
    # leaves a busy machine as much room as a wrong answer.
    assert ratio <= 1.75, (
        f"fetch_all took {uniform.elapsed:.2f} s, {ratio:.1f}x the ideal {ideal:.1f} s "
        f"(ceil(n/limit) x latency; accepted up to 1.75x). {WHERE}: "
        + (how_it_ran(uniform, 3) or "are `limit` requests really running at the same time?")
    )


def test_errors_returned_not_raised(upstream, fetch_all, submission):
    """an HTTP error or an unreachable server is returned in its slot, not raised"""
    run = Run(upstream, submission)
    dead = f"http://127.0.0.1:{free_port()}/nobody-listens-here"
    urls = [
        run.item(0, 50),
        f"{run.base}/status/500?ms=50",
        dead,
        f"{run.base}/status/404",
        run.item(4, 50),
    ]
    run.call(fetch_all, urls, limit=2)
    got = [r if isinstance(r, str) else type(r).__name__ for r in run.results]
    ok = (
        run.results[0] == "item 0"
        and run.results[4] == "item 4"
        and isinstance(run.results[1], httpx.HTTPStatusError)
        and isinstance(run.results[2], httpx.ConnectError | httpx.ConnectTimeout)
        and isinstance(run.results[3], httpx.HTTPStatusError)
    )
    assert ok, (
        f"for [ok, 500, unreachable, 404, ok] fetch_all returned {got}.\n"
        "Expected ['item 0', HTTPStatusError, ConnectError, HTTPStatusError, 'item 4']. "
        f"{WHERE}: call response.raise_for_status() and catch httpx.HTTPError around each "
        "request, returning the exception instead of raising it."
    )


def test_timeout_is_honoured(upstream, fetch_all, submission):
    """a URL that does not answer in time becomes a TimeoutException after `timeout` s"""
    run = Run(upstream, submission)
    urls = [f"{run.base}/hang", run.item(1, 50), run.item(2, 50)]
    run.call(fetch_all, urls, limit=3, timeout=0.5)
    first = run.results[0]
    assert isinstance(first, httpx.TimeoutException), (
        f"the URL that never answers gave {first_line(first)}, after {run.elapsed:.1f} s; expected "
        "an httpx.TimeoutException after 0.5 s. "
        f"{hung_hint(first, 0.5) or (WHERE + ': pass `timeout` to httpx.')}"
    )
    assert run.results[1:] == ["item 1", "item 2"], (
        f"the other URLs gave {run.results[1:]}; a hanging URL must not spoil the others."
    )
    # 0.5 s is the timeout; 2 s leaves a wide margin and still catches a
    # timeout that was not applied (the URL gives up by itself after 2.5 s).
    assert run.elapsed < 2.0, (
        f"fetch_all took {run.elapsed:.1f} s with timeout=0.5 s. {WHERE}: is `timeout` "
        "passed to httpx?"
    )


def test_a_hanging_url_does_not_fail_the_queue(upstream, fetch_all, submission):
    """URLs queued behind a hanging one are still sent when a slot frees up"""
    run = Run(upstream, submission)
    urls = [f"{run.base}/hang"] + [run.item(i, 50) for i in (1, 2, 3)]
    run.call(fetch_all, urls, limit=1, timeout=0.5)
    queued = list(run.results[1:])
    expected = ["item 1", "item 2", "item 3"]
    never_sent = [r for r in queued if isinstance(r, httpx.PoolTimeout)]
    assert not never_sent, (
        f"with limit=1 and a URL that hangs first, the 3 URLs behind it gave "
        f"{[type(r).__name__ for r in queued]}, and the server saw {run.stats['served']} of the 4 "
        "requests: they waited in httpx's connection pool under the pool timeout (also 0.5 s) and "
        "failed without being sent, when the hanging URL timed out. httpx.Limits(max_connections="
        f"limit) alone is not a queue to rely on (README step 5). {WHERE}: let an "
        "asyncio.Semaphore(limit) do the queueing, outside httpx."
    )
    assert queued == expected, (
        f"with limit=1 and a URL that hangs first, the 3 URLs behind it gave "
        f"{[r if isinstance(r, str) else type(r).__name__ for r in queued]}; expected {expected}: "
        f"once the hanging URL times out, its slot goes to the next. {WHERE}."
    )


def window_time(latencies, limit):
    """When the last URL ends if each starts as soon as any slot is free."""
    slots = [0.0] * limit
    for latency in latencies:
        slots.sort()
        slots[0] += latency
    return max(slots)


def batch_time(latencies, limit):
    """When the last URL ends if URLs go in batches of `limit`, each waiting for its slowest."""
    return sum(max(latencies[i : i + limit]) for i in range(0, len(latencies), limit))


@pytest.mark.points(2)
def test_a_slow_url_holds_up_only_its_own_slot(upstream, fetch_all, submission):
    """a sliding window: the next URL starts as soon as any request finishes"""
    latencies = [0.8, 0.1, 0.1] * 3
    window, batches = window_time(latencies, 3), batch_time(latencies, 3)
    run = Run(upstream, submission)
    run.call(fetch_all, [run.item(i, int(s * 1000)) for i, s in enumerate(latencies)], limit=3)
    # Halfway (geometrically) between the two strategies: robust to noise either way.
    threshold = math.sqrt(window * batches)
    assert run.elapsed <= threshold, (
        f"fetch_all took {run.elapsed:.2f} s. A sliding window needs about {window:.1f} s; "
        f"batches of 3 that each wait for their slowest URL need {batches:.1f} s; one at a "
        f"time, {sum(latencies):.1f} s. {WHERE}: "
        + (
            how_it_ran(run, 3)
            or "it ran 3 at a time, but a slow URL held up the others, as "
            "batches do: instead of gathering chunks of `limit` URLs, start every URL and let a "
            "semaphore hand a free slot to the next one."
        )
    )
