"""wrk, the native reference: its report is read right, and the lab's driver agrees with it."""

import pytest

from conclab.base.specs import LoadSpec, ServerSpec
from conclab.measuring import wrk
from conclab.measuring.driver import run_load
from conclab.processes.launcher import serve

REPORT = """Running 2s test @ http://127.0.0.1:53065/io?ms=100
  1 threads and 64 connections
  Thread Stats   Avg      Stdev     Max   +/- Stdev
    Latency   107.20ms    4.27ms 118.26ms   55.26%
    Req/Sec   596.79    105.21   646.00     89.47%
  Latency Distribution
     50%  107.23ms
     75%  110.42ms
     90%  112.64ms
     99%    1.18s
  1169 requests in 2.01s, 269.42KB read
  Socket errors: connect 0, read 2, write 0, timeout 3
  Non-2xx or 3xx responses: 4
Requests/sec:    580.97
Transfer/sec:    133.89KB
"""


def test_wrk_report_is_read_with_its_units():
    r = wrk.parse(REPORT)
    assert (r.rps, r.requests, r.seconds) == (580.97, 1169, 2.01)
    assert r.latency_ms == {"p50": 107.23, "p75": 110.42, "p90": 112.64, "p99": 1180.0}
    assert r.errors == 2 + 3 + 4


def test_an_unreadable_wrk_report_is_a_clear_error():
    with pytest.raises(wrk.WrkError, match="could not read wrk's output"):
        wrk.parse("unable to connect to 127.0.0.1:9 Connection refused")


# The server on every core but the driver's (the default), the driver and wrk on
# the driver's core: neither client ever shares a core with the server.
IO = "/io?ms=100"
SECONDS = 4  # both clients run as long, from a cold start: each counts its own ramp-up alike
# a shared machine can steal a core for part of a run: a real disagreement misses every time
ATTEMPTS = 3


@pytest.mark.slow
@pytest.mark.parametrize("users", [64, 200])
def test_driver_agrees_with_wrk_on_io(users):
    """Throughput within 5% and median latency within 10% of wrk's, at 64 and 200 users."""
    if why := wrk.wrk_missing():
        pytest.skip(why)
    spec = ServerSpec("asgi")
    misses = []
    with serve(spec) as server:
        run_load(
            server.url, path=IO, concurrency=users, duration=1, progress=False, warn=False
        )  # warm the server
        for _ in range(ATTEMPTS):
            ours = run_load(
                server.url,
                LoadSpec(path=IO, concurrency=users, duration=SECONDS, timeout=10),
                progress=False,
                warn=False,
            ).summary
            theirs = wrk.run_wrk(server.url + IO, users, SECONDS)
            assert theirs.errors == 0 and ours.error_count == 0
            off_rps = ours.throughput_rps / theirs.rps - 1
            off_p50 = ours.latency_ms.p50 / theirs.latency_ms["p50"] - 1
            if abs(off_rps) <= 0.05 and abs(off_p50) <= 0.10:
                return
            misses.append(
                f"driver {ours.throughput_rps:.0f} req/s, "
                f"p50 {ours.latency_ms.p50:.1f} ms; "
                f"wrk {theirs.rps:.0f} req/s, p50 {theirs.latency_ms['p50']:.1f} ms "
                f"({off_rps:+.1%}, {off_p50:+.1%}; client saturated: {ours.client_saturated})"
            )
    pytest.fail(f"{users} users on {IO}: every attempt disagreed with wrk:\n" + "\n".join(misses))
