"""Statistics of a run, checked on hand-made records whose answers we know.

No server here: every number below is worked out by hand from the records.
"""

import math

import numpy as np
import pytest

from conclab.base.specs import FIELDS, LoadSpec
from conclab.measuring.driver import LoadResult
from conclab.measuring.stats import (
    columns,
    completions_throughput,
    format_summary,
    max_overlap,
    mean_in_flight,
    percentiles,
    smoothed_throughput,
    throughput_spread,
)
from conclab.measuring.summary import Percentiles

MS = 1_000_000  # nanoseconds per millisecond
S = 1_000_000_000


def rec(intended, end, start=None, status=200, error="", path="/io?ms=100", pid=11, thread=1):
    """One driver record (times in ns); start defaults to the intended start."""
    start = intended if start is None else start
    return (intended, start, end, status, error, path, pid, thread, start, end)


def closed_loop_records(users, service_ns, until_ns, offset_ns=0):
    """``users`` users sending back to back, each request taking ``service_ns``."""
    out = []
    for u in range(users):
        t = offset_ns * u
        while t + service_ns <= until_ns:
            out.append(rec(t, t + service_ns, thread=u + 1))
            t += service_ns
    return out


def result_of(records, window, load=None, cpu_s=0.1, started=0, finished=None, **kw):
    load = load or LoadSpec(path="/io?ms=100", concurrency=2, duration=1.0, warmup=0.5)
    return LoadResult(
        url="http://127.0.0.1:1",
        load=load,
        records=records,
        started_ns=started,
        window=window,
        finished_ns=finished if finished is not None else window[1],
        client_cpu_s=cpu_s,
        **kw,
    )


# --- max_overlap ---------------------------------------------------------------


def test_max_overlap_of_nothing_is_zero():
    assert max_overlap([], []) == 0


def test_max_overlap_counts_intervals_open_at_the_same_instant():
    starts = [0, 5, 9, 16]
    ends = [10, 15, 20, 30]
    assert max_overlap(starts, ends) == 3


def test_back_to_back_intervals_do_not_overlap():
    # One thread finishing a request and starting the next at the same ns.
    assert max_overlap([0, 10, 20], [10, 20, 30]) == 1


def test_max_overlap_of_one_long_interval_and_many_short_ones_is_two():
    starts = [0] + list(range(0, 100, 2))
    ends = [100] + [s + 1 for s in range(0, 100, 2)]
    assert max_overlap(starts, ends) == 2


def test_max_overlap_ignores_input_order():
    starts = [16, 0, 9, 5]
    ends = [30, 10, 20, 15]
    assert max_overlap(starts, ends) == 3


# --- mean_in_flight --------------------------------------------------------------


def test_one_interval_covering_the_window_is_one_in_flight():
    assert mean_in_flight([0], [100], 0, 100) == pytest.approx(1.0)


def test_in_flight_is_the_time_average_over_the_window():
    # Busy time 50 + 75 + 50 = 175 ns over a 100 ns window: 1.75 in flight on average.
    assert mean_in_flight([0, 25, 50], [50, 100, 100], 0, 100) == pytest.approx(1.75)


def test_in_flight_clips_intervals_to_the_window():
    # Only the part inside [100, 200] counts: 50 ns of the first, 100 of the second.
    assert mean_in_flight([50, 0], [150, 1000], 100, 200) == pytest.approx(1.5)


def test_intervals_outside_the_window_count_nothing():
    assert mean_in_flight([0, 300], [50, 400], 100, 200) == 0.0


def test_in_flight_of_an_empty_window_or_no_intervals_is_zero():
    assert mean_in_flight([0], [10], 5, 5) == 0.0
    assert mean_in_flight([], [], 0, 10) == 0.0


def test_n_closed_loop_users_keep_n_in_flight():
    records = closed_loop_records(users=5, service_ns=100 * MS, until_ns=3 * S, offset_ns=7 * MS)
    c = columns(records)
    assert mean_in_flight(c["intended_ns"], c["end_ns"], 1 * S, 2 * S) == pytest.approx(5.0)


# --- percentiles ---------------------------------------------------------------


def test_percentiles_of_0_to_100():
    p = percentiles(list(range(101)))
    assert p == Percentiles(p50=50.0, p90=90.0, p99=99.0, max=100.0, mean=50.0)


def test_percentiles_do_not_depend_on_order():
    values = list(range(101))
    shuffled = list(np.random.default_rng(1).permutation(values))
    assert percentiles(shuffled) == percentiles(values)


def test_percentiles_of_one_value_are_that_value():
    assert percentiles([7.5]) == Percentiles(p50=7.5, p90=7.5, p99=7.5, max=7.5, mean=7.5)


def test_percentiles_of_nothing_are_nan_not_an_exception():
    p = percentiles([])
    assert all(math.isnan(v) for v in (p.p50, p.p90, p.p99, p.max, p.mean))


def test_a_slow_tail_shows_in_p99_and_max_but_not_p50():
    p = percentiles([10.0] * 98 + [1000.0] * 2)
    assert p.p50 == 10.0
    assert p.p99 > 500
    assert p.max == 1000.0


# --- columns -------------------------------------------------------------------


def test_columns_names_every_field_even_without_records():
    c = columns([])
    assert tuple(c) == FIELDS
    assert all(len(v) == 0 for v in c.values())


def test_columns_keeps_times_as_exact_integers():
    big = 10**18 + 1  # more digits than a float holds
    c = columns([rec(big, big + 5)])
    assert c["intended_ns"].dtype == np.int64
    assert int(c["end_ns"][0]) - int(c["intended_ns"][0]) == 5
    assert c["error"][0] == ""


# --- summarize -----------------------------------------------------------------


def two_users_for_two_seconds():
    # User 0 ends requests at 0.1, 0.2, ... s; user 1 is 50 ms later. The window
    # [0.525, 1.525] s holds 10 completions of each: 20 per second.
    records = closed_loop_records(users=2, service_ns=100 * MS, until_ns=2 * S, offset_ns=50 * MS)
    return result_of(records, window=(525 * MS, 1525 * MS), started=0, finished=2 * S)


def test_throughput_counts_completions_inside_the_window():
    s = two_users_for_two_seconds().summary
    assert s.window_s == pytest.approx(1.0)
    assert s.completed == 20
    assert s.throughput_rps == pytest.approx(20.0)


def test_latency_is_from_intended_start_to_end():
    s = two_users_for_two_seconds().summary
    assert s.latency_ms.p50 == pytest.approx(100.0)
    assert s.latency_ms.mean == pytest.approx(100.0)


def test_littles_law_holds_for_a_steady_closed_loop():
    s = two_users_for_two_seconds().summary
    assert s.mean_in_flight == pytest.approx(2.0)
    assert s.littles_law.L_measured == pytest.approx(2.0)
    assert s.littles_law.X_times_R == pytest.approx(2.0)


def test_open_loop_latency_includes_time_queued_in_the_client():
    # Meant to start at 0, actually sent 300 ms late, answered 100 ms after sending.
    load = LoadSpec(path="/io?ms=100", rate=10.0, duration=1.0)
    r = result_of([rec(0, 400 * MS, start=300 * MS)], window=(0, 1 * S), load=load)
    s = r.summary
    assert s.latency_ms.p50 == pytest.approx(400.0)
    assert s.service_ms.p50 == pytest.approx(100.0)
    assert s.send_lag_ms_p99 == pytest.approx(300.0)


def test_open_loop_latency_of_a_request_sent_early_counts_from_its_send():
    # Due at 101 ms, sent 1 ms early (a timer that woke early), answered 0.5 ms after
    # sending: its latency is its round trip, not 0.5 - 1 = -0.5 ms.
    load = LoadSpec(path="/hello", rate=10.0, duration=1.0)
    r = result_of([rec(101 * MS, 100_500_000, start=100 * MS)], window=(0, 1 * S), load=load)
    assert r.summary.latency_ms.p50 == pytest.approx(0.5)
    assert r.summary.service_ms.p50 == pytest.approx(0.5)


def test_errors_are_counted_by_kind_and_kept_out_of_throughput_and_latency():
    records = [
        rec(100 * MS, 200 * MS),
        rec(100 * MS, 900 * MS, status=0, error="timeout"),
        rec(300 * MS, 310 * MS, status=400, error="http_400"),
        rec(300 * MS, 320 * MS, status=400, error="http_400"),
    ]
    s = result_of(records, window=(0, 1 * S)).summary
    assert s.errors == {"timeout": 1, "http_400": 2}
    assert s.error_count == 3
    assert s.completed == 1
    assert s.sent == 4
    assert s.latency_ms.max == pytest.approx(100.0)


def test_warm_up_requests_are_left_out_of_latency_and_errors():
    records = [
        rec(0, 900 * MS),  # started in warm-up: slow, cold
        rec(50 * MS, 60 * MS, status=0, error="reset"),  # warm-up error
        rec(600 * MS, 700 * MS),
    ]
    s = result_of(records, window=(500 * MS, 1500 * MS)).summary
    assert s.errors == {}
    assert s.measured == 1
    assert s.latency_ms.max == pytest.approx(100.0)
    # ...but a completion inside the window counts, whenever it started.
    assert s.completed == 2


def test_a_run_without_records_summarises_to_zeros_and_nan():
    s = result_of([], window=(0, 1 * S)).summary
    assert s.completed == 0
    assert s.throughput_rps == 0.0
    assert math.isnan(s.latency_ms.p50)
    assert s.littles_law.X_times_R == 0.0


def test_a_busy_client_is_flagged_saturated():
    wall = 2 * S
    busy = result_of([], window=(0, wall), started=0, finished=wall, cpu_s=1.9)
    idle = result_of([], window=(0, wall), started=0, finished=wall, cpu_s=0.2)
    assert busy.summary.client_cpu == pytest.approx(0.95)
    assert busy.summary.client_saturated is True
    assert idle.summary.client_saturated is False


def test_a_client_starved_of_its_core_is_flagged_saturated():
    # Little CPU used, but ready to run and waiting for a busy core most of the time.
    wall = 2 * S
    starved = result_of(
        [], window=(0, wall), started=0, finished=wall, cpu_s=0.8, client_wait_s=1.2
    )
    s = starved.summary
    assert s.client_cpu == pytest.approx(0.4)
    assert s.client_wait == pytest.approx(0.6)
    assert s.client_saturated is True


def test_a_client_that_waits_long_for_its_core_is_flagged_even_at_low_cpu():
    wall = 2 * S
    shared = result_of([], window=(0, wall), started=0, finished=wall, cpu_s=0.6, client_wait_s=0.5)
    quiet = result_of([], window=(0, wall), started=0, finished=wall, cpu_s=0.6, client_wait_s=0.02)
    assert shared.summary.client_saturated is True  # 30 % busy, 25 % waiting
    assert quiet.summary.client_saturated is False


def test_an_open_loop_that_cannot_send_on_time_is_flagged_saturated():
    load = LoadSpec(path="/io?ms=1", rate=100.0, duration=1.0)
    late = [rec(i * 10 * MS, i * 10 * MS + 60 * MS, start=i * 10 * MS + 50 * MS) for i in range(50)]
    on_time = [rec(i * 10 * MS, i * 10 * MS + 2 * MS) for i in range(50)]
    assert result_of(late, window=(0, 1 * S), load=load).summary.client_saturated is True
    assert result_of(on_time, window=(0, 1 * S), load=load).summary.client_saturated is False


def test_summary_names_the_workers_and_threads_that_answered():
    records = [
        rec(0, 10, pid=7, thread=1),
        rec(0, 10, pid=7, thread=2),
        rec(0, 10, pid=9, thread=1),
    ]
    s = result_of(records, window=(0, 100)).summary
    assert s.worker_pids == [7, 9]
    assert s.threads == 3


def test_format_summary_says_when_a_run_was_interrupted_or_saturated():
    r = result_of([], window=(0, S), finished=S, cpu_s=0.99, interrupted=True)
    text = format_summary(r.summary)
    assert "INTERRUPTED" in text
    assert "SATURATED" in text
    quiet = format_summary(two_users_for_two_seconds().summary)
    assert "INTERRUPTED" not in quiet and "SATURATED" not in quiet


def test_format_summary_prints_the_optional_fields_that_are_set():
    plain = two_users_for_two_seconds().summary
    assert not any(
        word in format_summary(plain) for word in ("server CPU", "served", "GIL", "client   ")
    )
    filled = plain.replace(
        server_cpu_us_per_request=612.4,
        runner="granian",
        server_python="3.13.1",
        server_gil_enabled=False,
        client_placement="unpinned: no CPU affinity on macOS",
    )
    text = format_summary(filled)
    assert "server CPU  612 us per request" in text
    assert "served      by granian, Python 3.13.1, GIL off" in text
    assert "client      unpinned: no CPU affinity on macOS" in text
    assert "served      by uvicorn" in format_summary(plain.replace(runner="uvicorn"))


# --- throughput without steps, and its spread ------------------------------------


def one_user(service_ns, until_ns):
    """One closed-loop user: each request is sent the instant the previous answer arrives."""
    return closed_loop_records(users=1, service_ns=service_ns, until_ns=until_ns)


@pytest.mark.parametrize("w0_ms", [500, 520, 537, 590])
def test_closed_loop_throughput_is_exact_wherever_the_window_falls(w0_ms):
    # 101 ms per request: 19 or 20 completions fall in a 2 s window depending on
    # where it starts (9.5 or 10.0 req/s); weighing in the completions within one
    # cycle of each edge gives 1 / 0.101 s every time.
    records = one_user(101 * MS, 4 * S)
    w0 = w0_ms * MS
    load = LoadSpec(path="/io?ms=100", concurrency=1, duration=2.0, warmup=0.5)
    s = result_of(records, window=(w0, w0 + 2 * S), load=load, finished=4 * S).summary
    assert s.throughput_rps == pytest.approx(1 / 0.101, rel=1e-6)


def test_counting_whole_completions_would_have_stepped():
    c = columns(one_user(101 * MS, 4 * S))
    counts = {
        int(np.sum((c["end_ns"] >= w0) & (c["end_ns"] <= w0 + 2 * S)))
        for w0 in (500 * MS, 520 * MS)
    }
    assert counts == {19, 20}  # the steps the smoothing removes


def test_a_queue_still_filling_up_cannot_inflate_throughput():
    # 4 slots of 100 ms, 256 users all sent at 0: the server finishes 40 per
    # second whatever the latencies. Requests still waiting at the window's end
    # finished nothing in it and count nothing.
    records = []
    for i in range(256):
        end = (i // 4 + 1) * 100 * MS
        records.append(rec(0, end))
    load = LoadSpec(path="/io?ms=100", concurrency=256, duration=2.0, warmup=0.5)
    s = result_of(records, window=(500 * MS, 2500 * MS), load=load, finished=7 * S).summary
    assert s.throughput_rps == pytest.approx(40.0, rel=0.01)


def test_smoothing_weighs_completions_near_the_edges_linearly():
    # Window [0, 1000], ramp 100: weights 0.5 (at 50), 1, 1, 0.2 (at 980); divided by 900 ns.
    ends = [50, 400, 600, 980, 1200]
    assert smoothed_throughput(ends, 0, 1000, 100) == pytest.approx(2.7 / 900e-9)
    assert (
        smoothed_throughput(ends, 0, 1000, 0)
        == completions_throughput(ends, 0, 1000)
        == pytest.approx(4 / 1000e-9)
    )


def test_open_loop_throughput_counts_completions_not_requests_in_flight():
    # An overloaded open loop: a request sent in the window and answered 2 s
    # after it counts nothing; completions count what was done.
    load = LoadSpec(path="/io?ms=50", rate=10.0, duration=1.0)
    records = [rec(i * 100 * MS, i * 100 * MS + 50 * MS) for i in range(10)]
    records += [rec(900 * MS, 3 * S)]
    s = result_of(records, window=(0, 1 * S), load=load).summary
    assert s.throughput_rps == pytest.approx(10.0, rel=0.06)


def test_spread_gives_the_throughput_of_each_half_second():
    # Two users at 100 ms for the first second, then one user: 20 req/s, then 10.
    fast = closed_loop_records(users=2, service_ns=100 * MS, until_ns=1 * S)
    slow = [rec(t, t + 100 * MS) for t in range(1 * S, 2 * S, 100 * MS)]
    load = LoadSpec(path="/io?ms=100", concurrency=2, duration=2.0)
    s = result_of(fast + slow, window=(0, 2 * S), load=load, finished=2 * S).summary
    spread = s.throughput_spread
    assert spread.bin_s == 0.5
    assert spread.bins_rps == pytest.approx([20.0, 20.0, 10.0, 10.0])
    assert (spread.min, spread.max) == pytest.approx((10.0, 20.0))
    assert s.throughput_rps == pytest.approx(15.0, rel=0.03)


def test_a_window_shorter_than_two_bins_is_cut_in_halves_and_a_tiny_one_has_no_spread():
    # Quick mode's 0.5 s window, ending a little early: two bins of about 0.25 s,
    # each at the one user's 10 req/s.
    ends = columns(one_user(100 * MS, 1 * S))["end_ns"]
    halves = throughput_spread(ends, 0, 498 * MS, 100 * MS)
    assert halves.bin_s == pytest.approx(0.249)
    assert halves.bins_rps == pytest.approx([10.0, 10.0], rel=0.1)
    assert throughput_spread(ends, 0, 400 * MS, 100 * MS) is None  # halves under 0.24 s


def test_a_run_bounded_by_its_requests_has_no_spread():
    load = LoadSpec(path="/io?ms=100", concurrency=1, requests=20)
    records = one_user(100 * MS, 2 * S)
    assert (
        result_of(records, window=(0, 2 * S), load=load, finished=2 * S).summary.throughput_spread
        is None
    )


# --- where the time went -----------------------------------------------------------


def stamped(intended, end, handler_start, handler_end):
    return (intended, intended, end, 200, "", "/io?ms=50", 11, 1, handler_start, handler_end)


def test_latency_splits_into_handler_time_and_the_time_outside_it():
    # Sent at 0, handler 2..52 ms on the server's clock, answer at 55 ms:
    # 50 ms in the handler, 5 ms outside it (connect, accept, queue, transfer).
    records = [
        stamped(i * 100 * MS, i * 100 * MS + 55 * MS, i * 100 * MS + 2 * MS, i * 100 * MS + 52 * MS)
        for i in range(10)
    ]
    s = result_of(records, window=(0, 1 * S)).summary
    assert s.handler_ms.p50 == pytest.approx(50.0)
    assert s.handler_ms.mean == pytest.approx(50.0)
    assert s.outside_ms.p50 == pytest.approx(5.0)
    assert s.outside_ms.max == pytest.approx(5.0)
    assert s.latency_ms.mean == pytest.approx(s.handler_ms.mean + s.outside_ms.mean)


def test_requests_without_server_stamps_are_left_out_of_the_split():
    records = [stamped(0, 55 * MS, 2 * MS, 52 * MS), stamped(100 * MS, 300 * MS, 0, 0)]
    s = result_of(records, window=(0, 1 * S)).summary
    assert s.handler_ms.max == pytest.approx(50.0)
    assert s.outside_ms.max == pytest.approx(5.0)
    assert s.latency_ms.max == pytest.approx(200.0)


def test_format_summary_shows_where_the_time_went():
    records = [
        stamped(i * 100 * MS, i * 100 * MS + 55 * MS, i * 100 * MS + 2 * MS, i * 100 * MS + 52 * MS)
        for i in range(20)
    ]
    text = format_summary(result_of(records, window=(0, 2 * S), finished=2 * S).summary)
    assert "handler ms  p50 50.0" in text
    assert "outside ms  p50 5.0" in text
    assert "spread" in text
