"""Drawing helpers the figures share: footer, series, throughput beside theory, timelines.

Every figure has a title, labelled axes with units, a legend, the Little's law
prediction beside the measurement where one applies (dashed), and a footer
naming the machine - a number without its machine and client means little.

Figures are built with matplotlib's object API (no pyplot state), so the same
code draws into a PNG from `make charts` and inline in a notebook.
"""

from __future__ import annotations

import math
from collections import defaultdict

import numpy as np
from matplotlib.axes import Axes
from matplotlib.figure import Figure
from matplotlib.patches import Patch

from ..processes import interpreters

COLORS = ["#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#ff7f0e", "#8c564b"]


def theory_note(data) -> str | None:
    """One line saying what the dashed theory includes and what the bars mean, from the data."""
    points = data.get("points", [])
    overheads = [
        p["prediction"]["overhead"]
        for p in points
        if p.get("prediction") and (p["prediction"].get("overhead") or {}).get("source")
    ]
    spread = any(p["summary"].throughput_spread for p in points if p.get("summary"))
    parts = []
    if overheads:
        per_request = sorted(o["per_request_ms"] for o in overheads)
        text = (
            f"theory = Little's law with S + o, o = the server's own overhead measured once per "
            f"server before the sweep (1 user: o = {per_request[0]:.1f}-{per_request[-1]:.1f} ms"
        )
        per_conn = sorted(o["per_connection_ms"] for o in overheads if o["per_connection_ms"])
        if per_conn:
            text += f"; each extra new connection of a wave {per_conn[0]:.2f}-{per_conn[-1]:.2f} ms"
        parts.append(text + ")")
    if spread:
        parts.append("bars: slowest and fastest 0.5 s of each run")
    return "; ".join(parts) or None


def footer(fig: Figure, data: dict, note: bool = True) -> None:
    note = theory_note(data) if note else None
    if note:
        fig.text(0.01, 0.024, note, fontsize=6.5, color="#555555", ha="left", va="bottom")
    m = data.get("machine", {})
    when = (data.get("time") or "")[:10]
    quick = " - QUICK MODE (few points, short runs)" if data.get("quick") else ""
    client = data.get("client_cpu")
    shared = any((p.get("spec") or {}).get("cpus") == "all" for p in data.get("points", []))
    if client is None and str(m.get("pinning", "")).startswith("unpinned: no CPU affinity"):
        where = f"{m['pinning']}: the OS places driver and servers, so points spread wider"
    elif client is None:
        where = "driver and server share cores"
    elif shared:
        where = f"driver pinned to core {client}; servers on every core, the driver's included"
    else:
        where = f"driver pinned to core {client}, servers on the others"
    cores = (
        f"{m.get('cores', '?')} cores ({m['usable_cores']} usable)"
        if "usable_cores" in m
        else f"{m.get('cores', '?')} cores"
    )
    pythons = interpreters.footer_words(data.get("points", []), m.get("python", "?"))
    fig.text(
        0.01,
        0.002,
        f"{cores}, {pythons}, {when}; {where}{quick}",
        fontsize=7,
        color="#555555",
        ha="left",
        va="bottom",
    )
    # Failed requests are left out of throughput and latency: say so on the figure.
    points = data.get("points", [])
    failed = [p for p in points if p.get("summary") and p["summary"].error_count]
    if failed:
        n = sum(p["summary"].error_count for p in failed)
        fig.text(
            0.99,
            0.002,
            f"{n} failed requests in {len(failed)} of {len(points)} runs (not counted above)",
            fontsize=7,
            color="#d62728",
            ha="right",
            va="bottom",
        )


def by_series(points: list[dict]) -> dict[str, list[dict]]:
    out = defaultdict(list)
    for p in points:
        out[p["series"]].append(p)
    for series in out.values():
        series.sort(key=lambda p: (p["x"] is None, p["x"]))
    return out


def xs(points: list[dict]) -> list:
    return [p["x"] for p in points]


def ms(summary, key: str) -> float:
    """One latency percentile (``key``: "p50", "p99", "mean" ...) of a summary, in ms:
    NaN without a summary or when it had no answer (None once saved)."""
    value = getattr(summary.latency_ms, key) if summary is not None else None
    return math.nan if value is None else value


def latencies(points: list[dict], key: str) -> list[float]:
    """One percentile (``key``: "p50", "p99", "mean" ...)
    of each point's latency, in ms (NaN when none)."""
    return [ms(p["summary"], key) for p in points]


def predicted(points: list[dict], key: str) -> list[float]:
    return [
        p["prediction"][key]
        if p.get("prediction") and p["prediction"].get(key) is not None
        else math.nan
        for p in points
    ]


def mark_saturated(ax: Axes, points: list[dict], ys: list[float]) -> None:
    for p, y in zip(points, ys, strict=True):
        if p["summary"].client_saturated:
            ax.annotate(
                "client\nsaturated", (p["x"], y), fontsize=6, color="red", ha="center", va="bottom"
            )


def spread(points) -> tuple[list[float], list[float]]:
    """Error-bar lengths (below, above) of each point's
    throughput: its slowest and fastest 0.5 s."""
    below, above = [], []
    for p in points:
        s = p["summary"]
        sp = s.throughput_spread
        thr = s.throughput_rps
        below.append(max(thr - sp.min, 0.0) if sp else 0.0)
        above.append(max(sp.max - thr, 0.0) if sp else 0.0)
    return below, above


def plot_throughput(ax: Axes, name: str, pts: list[dict], color: str) -> list:
    """Measured throughput (solid, with its spread) and Little's
    law (dashed) for one series; returns the x values."""
    x = xs(pts)
    thr = [p["summary"].throughput_rps for p in pts]
    ax.errorbar(
        x, thr, yerr=spread(pts), fmt="o-", color=color, capsize=3, label=f"{name} (measured)"
    )
    mark_saturated(ax, pts, thr)
    ax.plot(
        x,
        predicted(pts, "throughput_rps"),
        "--",
        color=color,
        alpha=0.6,
        label=f"{name} (Little's law)",
    )
    return x


def throughput_latency(
    data: dict, fig: Figure, logx: bool = True, xlabel: str = "concurrent users (closed loop)"
) -> None:
    """Two panels: throughput and latency against x, measurement and theory."""
    ax1, ax2 = fig.subplots(1, 2)
    for i, (name, pts) in enumerate(by_series(data["points"]).items()):
        color = COLORS[i % len(COLORS)]
        x = plot_throughput(ax1, name, pts, color)
        ax2.plot(x, latencies(pts, "p50"), "o-", color=color, label=f"{name} p50")
        ax2.plot(x, latencies(pts, "p99"), "^:", color=color, alpha=0.8, label=f"{name} p99")
        ax2.plot(x, predicted(pts, "latency_ms"), "--", color=color, alpha=0.5)
    for ax in (ax1, ax2):
        if logx:
            ax.set_xscale("log", base=2)
        ax.set_xlabel(xlabel)
        ax.grid(alpha=0.3)
    ax1.set_ylabel("throughput (requests/s, log)")
    ax1.set_yscale("log")
    ax1.set_title("throughput (dashed: Little's law)")
    ax2.set_ylabel("latency (ms)")
    ax2.set_yscale("log")
    ax2.set_title("latency p50 / p99 (dashed: theory mean)")
    ax1.legend(fontsize=7)
    ax2.legend(fontsize=7)


def timeline(ax: Axes, records: dict, title: str = "", t0_ns: int | None = None) -> None:
    """One horizontal bar per request, one lane per (worker pid, thread).

    The light bar is the client's view (sent -> answered); the dark bar is the
    time the server's handler actually ran. Bars stacked in a lane ran one after
    another; bars side by side in different lanes - or on top of each other in
    one lane of an event loop - overlapped.
    """
    starts = np.asarray(records["start_ns"], dtype=np.int64)
    if starts.size == 0:
        ax.set_title(f"{title} (no requests)")
        return
    t0 = t0_ns if t0_ns is not None else int(starts.min())
    lanes = sorted({(p, t) for p, t in zip(records["worker_pid"], records["thread"], strict=True)})
    lane_of = {lane: i for i, lane in enumerate(lanes)}
    order = np.argsort(
        np.asarray(records["server_start_ns"]) if any(records["server_start_ns"]) else starts
    )
    in_lane = defaultdict(int)
    for p, t in zip(records["worker_pid"], records["thread"], strict=True):
        in_lane[lane_of[(p, t)]] += 1
    per_lane = defaultdict(int)
    for idx in order:
        lane = lane_of[(records["worker_pid"][idx], records["thread"][idx])]
        k = per_lane[lane]
        per_lane[lane] += 1
        step = 0.85 / max(in_lane[lane], 1)  # each request its own row inside its lane
        y = lane + 0.08 + k * step
        c0, c1 = (records["start_ns"][idx] - t0) / 1e6, (records["end_ns"][idx] - t0) / 1e6
        ax.broken_barh([(c0, c1 - c0)], (y, step * 0.8), color="#b0c4de")
        s0, s1 = records["server_start_ns"][idx], records["server_end_ns"][idx]
        if s0 and s1:
            ax.broken_barh(
                [((s0 - t0) / 1e6, (s1 - s0) / 1e6)], (y + step * 0.2, step * 0.45), color="#1f3b73"
            )
    for lane in range(1, len(lanes)):
        ax.axhline(lane, color="#999999", lw=0.5)
    ax.set_yticks([i + 0.5 for i in range(len(lanes))])
    ax.set_yticklabels([f"pid {p}\nthread {t}" for p, t in lanes], fontsize=6)
    ax.set_ylim(0, len(lanes))
    ax.set_xlabel(
        "time since the load started (ms)" if t0_ns is not None else "time since first request (ms)"
    )
    ax.set_title(title, fontsize=9)
    ax.grid(axis="x", alpha=0.3)


def draw_timelines(data: dict, fig: Figure) -> None:
    pts = data["points"]
    axes = fig.subplots(len(pts), 1, squeeze=False)[:, 0]
    for ax, p in zip(axes, pts, strict=True):
        recs = p["records"]
        took = (
            (max(recs["end_ns"]) - recs.get("t0_ns", min(recs["start_ns"]))) / 1e6
            if recs["start_ns"]
            else 0
        )
        pred = p.get("prediction") or {}
        theory = f" (theory {pred['latency_ms']:.0f} ms)" if pred.get("latency_ms") else ""
        timeline(
            ax, recs, f"{p['series']} - all done in {took:.0f} ms{theory}", t0_ns=recs.get("t0_ns")
        )
    # Above the first panel's own title, inside the layout: a figure legend at the
    # top would share its row with the figure's title and cover it.
    axes[0].legend(
        handles=[
            matplotlib_patch("#b0c4de", "client: sent -> answered"),
            matplotlib_patch("#1f3b73", "server: handler running (X-Start-Ns..X-End-Ns)"),
        ],
        fontsize=7,
        loc="lower center",
        bbox_to_anchor=(0.5, 1.12),
        ncols=2,
        frameon=False,
    )


def matplotlib_patch(color: str, label: str) -> Patch:
    return Patch(color=color, label=label)


def draw_lines(data: dict, fig: Figure, xlabel: str, logx: bool = False) -> None:
    ax = fig.subplots(1, 1)
    for i, (name, pts) in enumerate(by_series(data["points"]).items()):
        plot_throughput(ax, name, pts, COLORS[i % len(COLORS)])
    if logx:
        ax.set_xscale("log", base=2)
    ax.set_xlabel(xlabel)
    ax.set_ylabel("throughput (requests/s)")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7)
