"""Statistics of a load run: throughput, latency percentiles, errors, Little's law.

Definitions used everywhere in the lab:

* measured window - from the end of the warm-up to the end of the run;
* throughput - successful responses that *completed* inside the window, per second;
* latency - from when a request was meant to start (open loop: its scheduled
  time, so queueing in the client counts) to its response;
* Little's law - mean number in flight L = throughput X x mean latency R. We
  measure L independently (by integrating the in-flight count over time) so
  the law checks the measurement.
"""

from __future__ import annotations

from collections import Counter

import numpy as np

from ..base.specs import FIELDS

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
        return {name: np.array([], dtype=object if name in ("error", "path") else np.int64) for name in FIELDS}
    cols = list(zip(*records, strict=True))
    out = {}
    for name, values in zip(FIELDS, cols, strict=True):
        out[name] = np.array(values, dtype=object) if name in ("error", "path") else np.array(values, dtype=np.int64)
    return out


def max_overlap(starts, ends) -> int:
    """The most intervals [start, end) that were open at the same instant."""
    events = sorted([(int(s), 1) for s in starts] + [(int(e), -1) for e in ends], key=lambda ev: (ev[0], ev[1]))
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


def percentiles(values_ms) -> dict[str, float]:
    if len(values_ms) == 0:
        return {"p50": float("nan"), "p90": float("nan"), "p99": float("nan"), "max": float("nan"), "mean": float("nan")}
    arr = np.asarray(values_ms, dtype=float)
    out = {f"p{p}": float(np.percentile(arr, p)) for p in PERCENTILES}
    out["max"] = float(arr.max())
    out["mean"] = float(arr.mean())
    return out


def summarize(result) -> dict:
    """The summary of a :class:`conclab.driver.LoadResult` (a plain, JSON-ready dict)."""
    c = columns(result.records)
    w0, w1 = result.window
    window_s = max((w1 - w0) / 1e9, 1e-9)
    measured = c["intended_ns"] >= w0
    ok = (c["error"] == "") if len(c["error"]) else np.array([], dtype=bool)
    # Throughput counts every completion inside the window, whenever it started:
    # dropping those that started during warm-up would bias it low.
    done_in_window = (c["end_ns"] >= w0) & (c["end_ns"] <= w1)
    latency_ms = (c["end_ns"] - c["intended_ns"]) / 1e6
    service_ms = (c["end_ns"] - c["start_ns"]) / 1e6
    send_lag_ms = (c["start_ns"] - c["intended_ns"]) / 1e6
    good = measured & ok
    completed = int(np.sum(done_in_window & ok))
    throughput = completed / window_s
    errors = Counter(str(e) for e in c["error"][measured] if e)
    wall_s = max((result.finished_ns - result.started_ns) / 1e9, 1e-9)
    client_cpu = result.client_cpu_s / wall_s
    # Time the driver was ready to run but its core was busy with other programs:
    # a starved client is as much a bottleneck as a busy one.
    client_wait = getattr(result, "client_wait_s", 0.0) / wall_s
    lag = np.asarray(result.loop_lag_ms, dtype=float)
    lag_p99 = float(np.percentile(lag, 99)) if lag.size else 0.0
    send_lag_p99 = float(np.percentile(send_lag_ms[measured], 99)) if measured.any() else 0.0
    open_loop = result.load.rate is not None
    saturated = bool(client_cpu + client_wait >= SATURATION_CPU or client_wait >= SATURATION_WAIT or (open_loop and send_lag_p99 > SATURATION_SEND_LAG_MS))
    lat = percentiles(latency_ms[good])
    in_flight = mean_in_flight(c["intended_ns"], c["end_ns"], w0, w1)
    return {
        "throughput_rps": throughput,
        "latency_ms": lat,
        "service_ms": percentiles(service_ms[good]),
        "completed": completed,
        "sent": int(len(c["intended_ns"])),
        "measured": int(np.sum(measured)),
        "errors": dict(errors),
        "error_count": int(sum(errors.values())),
        "window_s": window_s,
        "client_cpu": client_cpu,
        "client_wait": client_wait,
        "client_saturated": saturated,
        "loop_lag_ms_p99": lag_p99,
        "send_lag_ms_p99": send_lag_p99,
        "mean_in_flight": in_flight,
        "littles_law": {"L_measured": in_flight, "X_times_R": throughput * lat["mean"] / 1000 if completed else 0.0},
        "worker_pids": sorted({int(p) for p in c["worker_pid"][good] if p}),
        "threads": len({(int(p), int(t)) for p, t in zip(c["worker_pid"][good], c["thread"][good], strict=True) if t}),
        "interrupted": bool(result.interrupted),
        "failed": result.failed,
        "dropped_records": int(result.dropped_records),
    }


def format_summary(summary: dict) -> str:
    """A few human lines for the terminal."""
    lat = summary["latency_ms"]
    lines = [
        f"throughput  {summary['throughput_rps']:10.1f} req/s   ({summary['completed']} ok in {summary['window_s']:.1f} s)",
        f"latency ms  p50 {lat['p50']:.1f}   p90 {lat['p90']:.1f}   p99 {lat['p99']:.1f}   max {lat['max']:.1f}   mean {lat['mean']:.1f}",
        f"errors      {summary['error_count']}" + (f"  {summary['errors']}" if summary["errors"] else ""),
        f"client CPU  {summary['client_cpu']:.0%} of one core, {summary.get('client_wait', 0.0):.0%} waiting for it" + ("   <-- SATURATED: the client is the bottleneck" if summary["client_saturated"] else ""),
        f"Little's law  L measured {summary['littles_law']['L_measured']:.1f}  vs  X*R {summary['littles_law']['X_times_R']:.1f}",
    ]
    if summary.get("interrupted"):
        lines.append("run INTERRUPTED: partial results")
    if summary.get("failed"):
        lines.append(f"run FAILED: {summary['failed']}")
    return "\n".join(lines)
