"""FastAPI's figures measure what its rules predict.

* ``fastapi``: a plain `def` endpoint plateaus at tokens / S (40 tokens and a
  raised limit), `async def` + await grows with the users, and `async def` +
  time.sleep stays at 1 / S - each within 10% of Little's law.
* ``threadpool_cliff``: a `def` health check waits exactly when the slow `def`
  requests in flight hold every token - the cliff sits at the token count, at
  two token counts - while an `async def` /health never notices.

Counts and ratios, not absolute times. The machine is shared, so an experiment
that misses is measured again from scratch, 3 runs in all (as
tests/test_experiments.py does); a real error misses every time.
"""

import pytest

from conclab.figures.experiment import measure
from conclab.figures.fastapi import (
    ASYNC_AWAIT,
    ASYNC_SLEEP,
    DEF_SLEEP,
    DEFAULT_TOKENS,
    FASTAPI,
    RAISED_TOKENS,
    THREADPOOL_CLIFF,
    cliff_points,
)
from conclab.measuring.theory import parse_route

RUNS = 3
TOLERANCE = 0.10


def measured_until_right(exp, check, tmp_path):
    """Measure ``exp`` in quick mode until ``check(points)`` finds nothing wrong (RUNS tries).

    The first run takes the points the session already measured (test_experiments
    draws every quick figure into the same results folder); each later run
    measures afresh.
    """
    runs = []
    for i in range(RUNS):
        points = measure(
            exp,
            quick=True,
            results_dir=tmp_path / f"run{i}" if i else None,
            fresh=i > 0,
            progress=False,
        )["points"]
        problems = check(points)
        runs.append(problems)
        if not problems:
            return points
    pytest.fail("every run missed:\n" + "\n".join(f"run {i + 1}: {p}" for i, p in enumerate(runs)))


def littles_law_misses(points):
    """Points more than 10% off Little's law, or a series with no point the driver could measure."""
    misses, checked = [], set()
    for p in points:
        assert p["status"] == "complete"
        if p["summary"].client_saturated:
            continue  # the driver says its own number is a lower bound
        checked.add(p["series"])
        measured, expected = p["summary"].throughput_rps, p["prediction"]["throughput_rps"]
        if abs(measured / expected - 1) > TOLERANCE:
            misses.append(
                f"{p['series']} x={p['x']}: {measured:.0f} req/s, Little's law {expected:.0f}"
            )
    unchecked = {p["series"] for p in points} - checked
    return misses + [f"{s}: every point client-saturated" for s in sorted(unchecked)]


@pytest.fixture(scope="module")
def fastapi_points(tmp_path_factory):
    return measured_until_right(FASTAPI, littles_law_misses, tmp_path_factory.mktemp("fastapi"))


def series(points, name):
    return sorted((p for p in points if p["series"] == name), key=lambda p: p["x"])


@pytest.mark.parametrize("tokens", [DEFAULT_TOKENS, RAISED_TOKENS])
def test_a_def_endpoint_plateaus_at_tokens_over_the_service_time(fastapi_points, tokens):
    above = [p for p in series(fastapi_points, DEF_SLEEP.format(tokens)) if p["x"] > tokens]
    assert above, "no point with more users than tokens"
    for p in above:
        assert p["spec"]["threadpool"] == tokens
        assert p["prediction"]["slots"] == tokens and p["prediction"]["bound"] == "slots"
        # tokens / S: 400 req/s with 40 tokens and 100 ms, whatever the number of users
        assert p["prediction"]["ideal_throughput_rps"] == pytest.approx(tokens / 0.1)


def test_async_def_with_await_grows_with_the_users(fastapi_points):
    pts = series(fastapi_points, ASYNC_AWAIT)
    assert len(pts) >= 2 and all(p["prediction"]["bound"] == "clients" for p in pts)
    lo, hi = pts[0], pts[-1]
    ratio = hi["summary"].throughput_rps / lo["summary"].throughput_rps
    assert ratio == pytest.approx(hi["x"] / lo["x"], rel=2 * TOLERANCE), (
        "throughput did not grow with the users"
    )


def test_time_sleep_inside_async_def_serves_one_request_at_a_time(fastapi_points):
    pts = series(fastapi_points, ASYNC_SLEEP)
    assert len(pts) >= 2 and all(p["prediction"]["slots"] == 1 for p in pts)
    for p in pts:  # 1 / S however many users: the loop itself is the one slot
        assert p["summary"].throughput_rps == pytest.approx(
            p["prediction"]["throughput_rps"], rel=TOLERANCE
        )


def test_every_fastapi_point_agrees_with_littles_law(fastapi_points):
    assert not littles_law_misses(fastapi_points)


# --------------------------------------------------------------------------- the cliff


def p50(point, path):
    return point["probes"][path].latency_ms.p50


def cliff_problems(points):
    """Where the measured cliff disagrees with the token
    count, or the in-flight count was not exact."""
    problems = []
    for tokens in cliff_points(True):
        pts = sorted((p for p in points if p["tokens"] == tokens), key=lambda p: p["x"])
        slow_ms = parse_route(pts[0]["load"]["path"])[1] * 1000
        for p in pts:
            n = p["x"]
            before = p["pool"][0]
            if before != {"borrowed": min(n, tokens), "total": tokens}:
                problems.append(
                    f"{tokens} tokens, N={n}: /pool said {before}, not {min(n, tokens)} of {tokens}"
                )
            if p50(p, "/health") > slow_ms / 10:
                problems.append(
                    f"{tokens} tokens, N={n}: async def /health p50 {p50(p, '/health'):.0f} ms"
                )
        # The cliff: the first N at which a def health check waits for a slow request to end.
        waited = [p["x"] for p in pts if p50(p, "/def-health") > slow_ms / 10]
        cliff = waited[0] if waited else None
        if cliff != tokens or waited != [p["x"] for p in pts if p["x"] >= tokens]:
            lat = ", ".join(f"N={p['x']}: {p50(p, '/def-health'):.0f} ms" for p in pts)
            problems.append(f"{tokens} tokens: cliff at {cliff} ({lat})")
    return problems


@pytest.fixture(scope="module")
def cliff(tmp_path_factory):
    return measured_until_right(THREADPOOL_CLIFF, cliff_problems, tmp_path_factory.mktemp("cliff"))


def test_the_slow_requests_in_flight_are_exactly_n_as_the_server_counts_them(cliff):
    for p in cliff:
        assert p["pool"][0]["borrowed"] == min(p["x"], p["tokens"])
        assert p["summary"].mean_in_flight == pytest.approx(p["x"], rel=TOLERANCE)


@pytest.mark.parametrize("tokens", [DEFAULT_TOKENS, RAISED_TOKENS])
def test_the_cliff_sits_at_the_token_count(cliff, tokens):
    pts = {p["x"]: p for p in cliff if p["tokens"] == tokens}
    below, at = pts[tokens - 1], pts[tokens]
    # One token free: answered at once. None free: wait for a slow request to end.
    assert p50(at, "/def-health") > 10 * p50(below, "/def-health")
    # The async def health check needs no token: at the cliff it answers as fast as below it.
    assert p50(at, "/def-health") > 10 * p50(at, "/health")
    assert not cliff_problems(cliff)
