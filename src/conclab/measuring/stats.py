"""Statistics of a load run: throughput, latency percentiles, errors, Little's law.

Definitions used everywhere in the lab:

* measured window - from the end of the warm-up to the end of the run;
* throughput - successful responses that *completed* inside the window, per
  second. In a run timed by a duration, completions within one cycle of an
  edge (closed loop: the mean latency; open loop: the gap between arrivals) are
  weighed in linearly, which removes the steps of counting whole completions
  in a short window (``smoothed_throughput``);
* spread - the same throughput in consecutive 0.5 s bins of the window (a
  window shorter than 1 s, as in quick mode, in its two halves; runs bounded in
  time only: a wave of requests has no steady stretch to bin);
* where the time went - ``handler_ms`` is the server's handler (X-Start-Ns to
  X-End-Ns, on the same clock) and ``outside_ms`` the rest of the latency:
  connecting, waiting to be accepted and read, queueing before the handler,
  sending the answer, and the client's own delay;
* latency - from when a request was meant to start (open loop: its scheduled
  time, so queueing in the client counts) to its response;
* Little's law - mean number in flight L = throughput X x mean latency R. We
  measure L independently (by integrating the in-flight count over time) so
  the law checks the measurement.
"""

from __future__ import annotations

import math
from collections import Counter

import numpy as np

from ..base import system
from ..base.specs import FIELDS
from .summary import LittlesLaw, Percentiles, Spread, Summary

PERCENTILES = (50, 90, 99)
SATURATION_CPU = 0.90
SATURATION_SEND_LAG_MS = 10.0
# Waiting this share of the run for its own core (another program on it): on the
# 2-core machine, 20-40 % of waiting made c=100..256 runs read 8-20 % low while
# the client's own CPU stayed near 50 %.
SATURATION_WAIT = 0.2


def columns(records) -> dict[str, np.ndarray]:
    """Turn the driver's record tuples into named numpy columns."""

    if not records:
        return {
            name: np.array([], dtype=object if name in ("error", "path") else np.int64)
            for name in FIELDS
        }
    cols = list(zip(*records, strict=True))
    out = {}
    for name, values in zip(FIELDS, cols, strict=True):
        out[name] = (
            np.array(values, dtype=object)
            if name in ("error", "path")
            else np.array(values, dtype=np.int64)
        )
    return out


def max_overlap(starts, ends) -> int:
    """The most intervals [start, end) that were open at the same instant."""
    events = sorted(
        [(int(s), 1) for s in starts] + [(int(e), -1) for e in ends], key=lambda ev: (ev[0], ev[1])
    )
    best = now = 0
    for _, step in events:
        now += step
        best = max(best, now)
    return best


def mean_in_flight(starts, ends, w0, w1) -> float:
    """Time-averaged number of requests in flight within [w0, w1] (Little's L)."""
    if w1 <= w0 or len(starts) == 0:
        return 0.0
    s = np.clip(np.asarray(starts, dtype=np.int64), w0, w1)
    e = np.clip(np.asarray(ends, dtype=np.int64), w0, w1)
    return float(np.sum(e - s) / (w1 - w0))


BIN_S = 0.5  # width of the bins the throughput spread is read from


def completions_throughput(ends, w0, w1) -> float:
    """Completions inside [w0, w1] per second."""
    if w1 <= w0:
        return 0.0
    e = np.asarray(ends, dtype=np.int64)
    return float(np.sum((e >= w0) & (e <= w1)) / ((w1 - w0) / 1e9))


def smoothed_throughput(ends, w0, w1, ramp_ns) -> float:
    """Completions per second in [w0, w1], those near the edges weighted in.

    Counting whole completions in a short window steps: one user at 101 ms per
    request finishes 19 or 20 times in 2 s, 9.5 or 10.0 req/s, depending on
    where the window falls. Here a completion counts fully inside the window,
    and by a share that falls linearly to 0 over the ``ramp_ns`` next to each
    edge (a trapezoid); the sum is divided by the window less one ramp. That is
    the whole-completion count averaged over every window of that length that
    fits: with a ramp of one request's cycle, a steady closed loop reads exactly
    (1 / 0.101 s), and only completions are counted, so a queue that is still
    filling up cannot inflate it.
    """
    span = w1 - w0
    if span <= 0:
        return 0.0
    ramp = float(min(max(ramp_ns, 0), span / 2))
    e = np.asarray(ends, dtype=np.int64)
    if ramp <= 0:
        return completions_throughput(e, w0, w1)
    weight = np.clip(np.minimum(e - w0, w1 - e) / ramp, 0.0, 1.0)
    return float(np.sum(weight) / ((span - ramp) / 1e9))


# A shorter window (quick mode's 0.5 s) is cut in two bins, none shorter than this: a
# window ends within a few milliseconds of its duration, either side.
MIN_BIN_S = 0.24


def throughput_spread(ends, w0, w1, ramp_ns=0, bin_s: float = BIN_S) -> Spread | None:
    """Throughput in consecutive bins of ``bin_s`` seconds: how much the run varied.

    A window shorter than two bins (quick mode's) is cut in two halves instead, if
    each is at least ``MIN_BIN_S`` long. None when the window holds fewer than two bins.
    """
    window_s = (w1 - w0) / 1e9
    if window_s < 2 * bin_s:
        bin_s = window_s / 2
        if bin_s < MIN_BIN_S:
            return None
    n = int(window_s // bin_s)
    if n < 2:
        return None
    step = int(bin_s * 1e9)
    edges = [w0 + i * step for i in range(n + 1)]
    rates = [
        smoothed_throughput(ends, a, b, ramp_ns) for a, b in zip(edges, edges[1:], strict=False)
    ]
    arr = np.asarray(rates)
    return Spread(
        bin_s=bin_s,
        bins_rps=[float(r) for r in rates],
        min=float(arr.min()),
        max=float(arr.max()),
        std=float(arr.std(ddof=1)),
    )


def percentiles(values_ms) -> Percentiles:
    """p50, p90, p99, max and mean of some times in ms (all NaN when there are none)."""
    if len(values_ms) == 0:
        return Percentiles.empty()
    arr = np.asarray(values_ms, dtype=float)
    p50, p90, p99 = (float(np.percentile(arr, p)) for p in PERCENTILES)
    return Percentiles(p50=p50, p90=p90, p99=p99, max=float(arr.max()), mean=float(arr.mean()))


def latency_ns(intended, start, end):
    """Each request's latency, from when it was due (its intended start) to its answer.

    A request sent late counts its wait: the queue a slow server causes (open loop),
    which a latency from the actual send would hide. One sent early counts from when
    it was sent: an event loop's timer can end a sleep up to a millisecond early
    (uvloop counts whole milliseconds from a cached clock), and no request is
    faster than its own round trip. Takes numbers or numpy arrays.
    """
    return end - np.minimum(intended, start)


def summarize(result) -> Summary:
    """The summary of a :class:`conclab.measuring.driver.LoadResult`."""
    c = columns(result.records)
    w0, w1 = result.window
    window_s = max((w1 - w0) / 1e9, 1e-9)
    measured = c["intended_ns"] >= w0
    ok = (c["error"] == "") if len(c["error"]) else np.array([], dtype=bool)
    # Throughput counts every completion inside the window, whenever it started:
    # dropping those that started during warm-up would bias it low.
    done_in_window = (c["end_ns"] >= w0) & (c["end_ns"] <= w1)
    open_loop = result.load.rate is not None
    latency_ms = latency_ns(c["intended_ns"], c["start_ns"], c["end_ns"]) / 1e6
    service_ms = (c["end_ns"] - c["start_ns"]) / 1e6
    send_lag_ms = (c["start_ns"] - c["intended_ns"]) / 1e6
    good = measured & ok
    completed = int(np.sum(done_in_window & ok))
    # Completions within one cycle of an edge are weighed in: a closed loop's
    # cycle is its latency, an open loop's the gap between arrivals. A wave
    # (bounded by its requests) counts whole completions: its window ends at the last.
    in_window = done_in_window & ok
    cycle_ns = 0.0
    if result.load.requests is None:
        if open_loop:
            cycle_ns = 1e9 / result.load.rate
        elif in_window.any():
            cycle_ns = float(np.mean(latency_ms[in_window]) * 1e6)
    throughput = smoothed_throughput(c["end_ns"][ok], w0, w1, cycle_ns)
    # A run bounded by its number of requests (a wave) has no steady stretch to bin.
    spread = (
        throughput_spread(c["end_ns"][ok], w0, w1, cycle_ns)
        if result.load.requests is None
        else None
    )
    # Where the time went: the handler on the server's clock, and everything else.
    stamped = good & (c["server_start_ns"] > 0) & (c["server_end_ns"] >= c["server_start_ns"])
    handler_ms = (c["server_end_ns"] - c["server_start_ns"])[stamped] / 1e6
    outside_ms = latency_ms[stamped] - handler_ms
    errors = Counter(str(e) for e in c["error"][measured] if e)
    wall_s = max((result.finished_ns - result.started_ns) / 1e9, 1e-9)
    client_cpu = result.client_cpu_s / wall_s
    # Time the driver was ready to run but its core was busy with other programs:
    # a starved client is as much a bottleneck as a busy one.
    # None where the system cannot tell (no schedstat: macOS): shown as "not measured".
    wait_s = getattr(result, "client_wait_s", 0.0)
    client_wait = None if wait_s is None else wait_s / wall_s
    waited = client_wait or 0.0
    lag = np.asarray(result.loop_lag_ms, dtype=float)
    lag_p99 = float(np.percentile(lag, 99)) if lag.size else 0.0
    send_lag_p99 = float(np.percentile(send_lag_ms[measured], 99)) if measured.any() else 0.0
    saturated = bool(
        client_cpu + waited >= SATURATION_CPU
        or waited >= SATURATION_WAIT
        or (open_loop and send_lag_p99 > SATURATION_SEND_LAG_MS)
    )
    lat = percentiles(latency_ms[good])
    in_flight = mean_in_flight(c["intended_ns"], c["end_ns"], w0, w1)
    return Summary(
        throughput_rps=throughput,
        latency_ms=lat,
        service_ms=percentiles(service_ms[good]),
        handler_ms=percentiles(handler_ms),
        outside_ms=percentiles(outside_ms),
        throughput_spread=spread,
        completed=completed,
        sent=int(len(c["intended_ns"])),
        measured=int(np.sum(measured)),
        errors=dict(errors),
        error_count=int(sum(errors.values())),
        window_s=window_s,
        client_cpu=client_cpu,
        client_wait=client_wait,
        client_placement=getattr(result, "client_placement", None),
        client_saturated=saturated,
        loop_lag_ms_p99=lag_p99,
        send_lag_ms_p99=send_lag_p99,
        mean_in_flight=in_flight,
        littles_law=LittlesLaw(
            L_measured=in_flight, X_times_R=throughput * lat.mean / 1000 if completed else 0.0
        ),
        worker_pids=sorted({int(p) for p in c["worker_pid"][good] if p}),
        threads=len(
            {
                (int(p), int(t))
                for p, t in zip(c["worker_pid"][good], c["thread"][good], strict=True)
                if t
            }
        ),
        interrupted=bool(result.interrupted),
        failed=result.failed,
        dropped_records=int(result.dropped_records),
    )


def _where_the_time_went(summary: Summary) -> list[str]:
    lines = []
    for d, name in ((summary.handler_ms, "handler ms"), (summary.outside_ms, "outside ms")):
        if d.p50 is not None and not math.isnan(d.p50):
            lines.append(
                f"{name:<11} p50 {d.p50:.1f}   p90 {d.p90:.1f}   p99 "
                f"{d.p99:.1f}   max {d.max:.1f}   mean {d.mean:.1f}"
            )
    if lines:
        lines[-1] += "   (outside = latency - handler: connect, accept, queue, transfer)"
    spread = summary.throughput_spread
    if spread:
        lines.append(
            f"spread      {spread.min:.1f} .. {spread.max:.1f} req/s "
            f"over {len(spread.bins_rps)} bins of {spread.bin_s:g} s"
        )
    return lines


def _waiting(summary: Summary) -> str:
    if summary.client_wait is None:
        return system.wait_note()
    return f"{summary.client_wait:.0%} waiting for it"


def _about_the_server(summary: Summary) -> list[str]:
    """The optional fields, those that are set."""
    lines = []
    if summary.server_cpu_us_per_request is not None:
        lines.append(
            f"server CPU  {summary.server_cpu_us_per_request:.0f} us per request "
            "(the app server's processes, warm-up included)"
        )
    served = [
        f"by {summary.runner}" if summary.runner else "",
        f"Python {summary.server_python}" if summary.server_python else "",
        ""
        if summary.server_gil_enabled is None
        else f"GIL {'on' if summary.server_gil_enabled else 'off'}",
    ]
    if any(served):
        lines.append("served      " + ", ".join(s for s in served if s))
    return lines


def format_summary(summary: Summary) -> str:
    """A few human lines for the terminal."""
    lat = summary.latency_ms
    lines = [
        f"throughput  {summary.throughput_rps:10.1f} req/s   "
        f"({summary.completed} ok in {summary.window_s:.1f} s)",
        f"latency ms  p50 {lat.p50:.1f}   p90 {lat.p90:.1f}   p99 "
        f"{lat.p99:.1f}   max {lat.max:.1f}   mean {lat.mean:.1f}",
        *_where_the_time_went(summary),
        f"errors      {summary.error_count}" + (f"  {summary.errors}" if summary.errors else ""),
        f"client CPU  {summary.client_cpu:.0%} of one core, {_waiting(summary)}"
        + ("   <-- SATURATED: the client is the bottleneck" if summary.client_saturated else ""),
        *([f"client      {summary.client_placement}"] if summary.client_placement else []),
        f"Little's law  L measured {summary.littles_law.L_measured:.1f}  vs  "
        f"X*R {summary.littles_law.X_times_R:.1f}",
        *_about_the_server(summary),
    ]
    if summary.interrupted:
        lines.append("run INTERRUPTED: partial results")
    if summary.failed:
        lines.append(f"run FAILED: {summary.failed}")
    return "\n".join(lines)
