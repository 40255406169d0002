"""Figures from experiment data: one function per experiment, plus the timeline chart.

Every figure has a title, labelled axes with units, a legend, the Little's law
prediction beside the measurement where one applies (dashed), and a footer
naming the machine - a number without its machine and client means little.

Figures are built with matplotlib's object API (no pyplot state), so the same
code draws into a PNG from `make charts` and inline in a notebook.
"""

from __future__ import annotations

import math
from collections import defaultdict
from pathlib import Path

import numpy as np
from matplotlib.figure import Figure

COLORS = ["#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#ff7f0e", "#8c564b"]


def footer(fig, data):
    m = data.get("machine", {})
    when = (data.get("time") or "")[:10]
    quick = " - QUICK MODE (few points, short runs)" if data.get("quick") else ""
    client = data.get("client_cpu")
    where = f"driver pinned to core {client}, servers on the others" if client is not None else "driver and server share cores"
    fig.text(0.01, 0.002, f"{m.get('cores', '?')} cores, Python {m.get('python', '?')}, {when}; {where}{quick}",
             fontsize=7, color="#555555", ha="left", va="bottom")
    # Failed requests are left out of throughput and latency: say so on the figure.
    points = data.get("points", [])
    failed = [p for p in points if (p.get("summary") or {}).get("error_count")]
    if failed:
        n = sum(p["summary"]["error_count"] for p in failed)
        fig.text(0.99, 0.002, f"{n} failed requests in {len(failed)} of {len(points)} runs (not counted above)",
                 fontsize=7, color="#d62728", ha="right", va="bottom")


def by_series(points):
    out = defaultdict(list)
    for p in points:
        out[p["series"]].append(p)
    for series in out.values():
        series.sort(key=lambda p: (p["x"] is None, p["x"]))
    return out


def _xs(points):
    return [p["x"] for p in points]


def _lat(points, key):
    return [p["summary"]["latency_ms"][key] if p["summary"]["latency_ms"][key] is not None else math.nan for p in points]


def _pred(points, key):
    return [p["prediction"][key] if p.get("prediction") and p["prediction"].get(key) is not None else math.nan for p in points]


def _mark_saturated(ax, points, ys):
    for p, y in zip(points, ys, strict=True):
        if p["summary"].get("client_saturated"):
            ax.annotate("client\nsaturated", (p["x"], y), fontsize=6, color="red", ha="center", va="bottom")


def plot_throughput(ax, name, pts, color):
    """Measured throughput (solid) and Little's law (dashed) for one series; returns the x values."""
    x = _xs(pts)
    thr = [p["summary"]["throughput_rps"] for p in pts]
    ax.plot(x, thr, "o-", color=color, label=f"{name} (measured)")
    _mark_saturated(ax, pts, thr)
    ax.plot(x, _pred(pts, "throughput_rps"), "--", color=color, alpha=0.6, label=f"{name} (Little's law)")
    return x


def throughput_latency(data, fig, logx=True, xlabel="concurrent users (closed loop)"):
    """Two panels: throughput and latency against x, measurement and theory."""
    ax1, ax2 = fig.subplots(1, 2)
    for i, (name, pts) in enumerate(by_series(data["points"]).items()):
        color = COLORS[i % len(COLORS)]
        x = plot_throughput(ax1, name, pts, color)
        ax2.plot(x, _lat(pts, "p50"), "o-", color=color, label=f"{name} p50")
        ax2.plot(x, _lat(pts, "p99"), "^:", color=color, alpha=0.8, label=f"{name} p99")
        ax2.plot(x, _pred(pts, "latency_ms"), "--", color=color, alpha=0.5)
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


def timeline(ax, records, title="", t0_ns=None):
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
    order = np.argsort(np.asarray(records["server_start_ns"]) if any(records["server_start_ns"]) else starts)
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
            ax.broken_barh([((s0 - t0) / 1e6, (s1 - s0) / 1e6)], (y + step * 0.2, step * 0.45), color="#1f3b73")
    for lane in range(1, len(lanes)):
        ax.axhline(lane, color="#999999", lw=0.5)
    ax.set_yticks([i + 0.5 for i in range(len(lanes))])
    ax.set_yticklabels([f"pid {p}\nthread {t}" for p, t in lanes], fontsize=6)
    ax.set_ylim(0, len(lanes))
    ax.set_xlabel("time since first request (ms)")
    ax.set_title(title, fontsize=9)
    ax.grid(axis="x", alpha=0.3)


def draw_timelines(data, fig):
    pts = data["points"]
    axes = fig.subplots(len(pts), 1, squeeze=False)[:, 0]
    for ax, p in zip(axes, pts, strict=True):
        recs = p["records"]
        took = (max(recs["end_ns"]) - min(recs["start_ns"])) / 1e6 if recs["start_ns"] else 0
        timeline(ax, recs, f"{p['series']} - all done in {took:.0f} ms")
    fig.legend(handles=[
        matplotlib_patch("#b0c4de", "client: sent -> answered"),
        matplotlib_patch("#1f3b73", "server: handler running (X-Start-Ns..X-End-Ns)"),
    ], fontsize=7, loc="outside upper right", ncols=2)


def matplotlib_patch(color, label):
    from matplotlib.patches import Patch

    return Patch(color=color, label=label)


def draw_blocking(data, fig):
    ax1, ax2 = fig.subplots(1, 2)
    pts = data["points"]
    names = [p["series"] for p in pts]
    thr = [p["summary"]["throughput_rps"] for p in pts]
    pred = [p["prediction"]["throughput_rps"] if p.get("prediction") else math.nan for p in pts]
    x = np.arange(len(pts))
    ax1.bar(x - 0.2, thr, 0.4, label="measured", color=COLORS[0])
    ax1.bar(x + 0.2, pred, 0.4, label="Little's law", color=COLORS[0], alpha=0.35)
    ax1.set_xticks(x, names)
    ax1.set_ylabel("throughput (requests/s)")
    ax1.set_title("10 users, 50 ms of waiting each")
    ax1.legend(fontsize=7)
    probe_p50 = [p["probe"]["latency_ms"]["p50"] if p.get("probe") else math.nan for p in pts]
    probe_p99 = [p["probe"]["latency_ms"]["p99"] if p.get("probe") else math.nan for p in pts]
    ax2.bar(x - 0.2, probe_p50, 0.4, label="p50", color=COLORS[1])
    ax2.bar(x + 0.2, probe_p99, 0.4, label="p99", color=COLORS[1], alpha=0.45)
    ax2.set_xticks(x, names)
    ax2.set_yscale("log")
    ax2.set_ylabel("/health latency (ms, log)")
    ax2.set_title("a /health probe (20/s) during the load")
    ax2.legend(fontsize=7)
    for ax in (ax1, ax2):
        ax.grid(axis="y", alpha=0.3)


def draw_lines(data, fig, xlabel, logx=False):
    ax = fig.subplots(1, 1)
    for i, (name, pts) in enumerate(by_series(data["points"]).items()):
        plot_throughput(ax, name, pts, COLORS[i % len(COLORS)])
    if logx:
        ax.set_xscale("log", base=2)
    ax.set_xlabel(xlabel)
    ax.set_ylabel("throughput (requests/s)")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7)


def draw_memory(data, fig):
    ax1, ax2 = fig.subplots(1, 2)
    for i, (name, pts) in enumerate(by_series(data["points"]).items()):
        color = COLORS[i % len(COLORS)]
        pts = [p for p in pts if p.get("rss_bytes") and p["rss_bytes"].get("loaded")]
        if not pts:
            continue
        x = _xs(pts)
        total = [p["rss_bytes"]["loaded"] / 2**20 for p in pts]
        ax1.plot(x, total, "o-", color=color, label=name)
        if len(pts) >= 2:
            slope = (total[-1] - total[0]) / (x[-1] - x[0]) if x[-1] != x[0] else math.nan
            ax2.bar(i, slope * 1024, color=color, label=name)
            ax2.annotate(f"{slope * 1024:.0f} KiB", (i, slope * 1024), ha="center", va="bottom", fontsize=8)
    ax1.set_xscale("log", base=2)
    ax1.set_xlabel("requests held in flight at once")
    ax1.set_ylabel("server resident memory, all processes (MiB)")
    ax1.set_title("RSS while holding N slow requests")
    ax1.legend(fontsize=7)
    ax1.grid(alpha=0.3)
    ax2.set_yscale("log")
    ax2.set_ylabel("extra memory per in-flight request (KiB, log)")
    ax2.set_xticks([])
    ax2.set_title("cost of one more concurrent request")
    ax2.legend(fontsize=7)


def draw_open_closed(data, fig):
    ax1, ax2 = fig.subplots(1, 2)
    for i, p in enumerate(data["points"]):
        recs = p["records"]
        t0 = recs["t0_ns"]
        intended = np.asarray(recs["intended_ns"], dtype=float)
        start = np.asarray(recs["start_ns"], dtype=float)
        end = np.asarray(recs["end_ns"], dtype=float)
        ok = np.asarray(recs["status"]) == 200
        color = COLORS[i % len(COLORS)]
        ax1.plot((intended[ok] - t0) / 1e9, (end[ok] - intended[ok]) / 1e6, ".", ms=3, color=color, label=p["series"])
        lat = np.sort((end[ok] - intended[ok]) / 1e6)
        if lat.size:
            ax2.plot(lat, np.arange(1, lat.size + 1) / lat.size, color=color, label=f"{p['series']} (from intended start)")
        if p["load"]["rate"]:
            service = np.sort((end[ok] - start[ok]) / 1e6)
            ax2.plot(service, np.arange(1, service.size + 1) / max(service.size, 1), ":", color=color, alpha=0.6,
                     label=f"{p['series']} (uncorrected, from send)")
    ax1.set_xlabel("time into the run (s)")
    ax1.set_ylabel("latency (ms)")
    ax1.set_yscale("log")
    ax1.set_title("latency of each request over the run")
    ax1.legend(fontsize=7)
    ax2.set_xscale("log")
    ax2.set_xlabel("latency (ms, log)")
    ax2.set_ylabel("fraction of requests")
    ax2.set_title("latency distribution (CDF)")
    ax2.legend(fontsize=6)
    for ax in (ax1, ax2):
        ax.grid(alpha=0.3)


def draw_client_ceiling(data, fig):
    ax1, ax2 = fig.subplots(1, 2)
    series = by_series(data["points"])
    for i, (name, pts) in enumerate(series.items()):
        color = COLORS[(i // 2) % len(COLORS)]
        ax = ax1 if name.endswith("/hello") else ax2
        x = _xs(pts)
        thr = [p["summary"]["throughput_rps"] for p in pts]
        ax.plot(x, thr, "o-", color=color, label=name.split(":")[0])
        _mark_saturated(ax, pts, thr)
        if ax is ax2 and i < 2:
            ax.plot(x, _pred(pts, "throughput_rps"), "k--", alpha=0.5, label="server capacity (Little's law)")
    wrk = (data.get("extra") or {}).get("wrk")
    if wrk:
        xs = sorted(int(k) for k in wrk)
        ax1.plot(xs, [wrk[str(k)] for k in xs], "s-", color="black", label="wrk (C), for reference")
    ax1.set_title("/hello: the most a client can push")
    ax2.set_title("/io?ms=100: can the client see the server's capacity?")
    for ax in (ax1, ax2):
        ax.set_xscale("log", base=2)
        ax.set_yscale("log")
        ax.set_xlabel("concurrent users")
        ax.set_ylabel("throughput (requests/s, log)")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7)


DRAW = {
    "wsgi_vs_asgi": lambda d, f: throughput_latency(d, f),
    "timelines": draw_timelines,
    "blocking": draw_blocking,
    "threadpool": lambda d, f: draw_lines(d, f, "threads in the pool (gthread threads / offload pool size)", logx=True),
    "gil": lambda d, f: draw_lines(d, f, "threads or processes (2 users each)"),
    "workers": lambda d, f: draw_lines(d, f, "worker processes (Gunicorn sync)"),
    "memory": draw_memory,
    "open_vs_closed": draw_open_closed,
    "client_ceiling": draw_client_ceiling,
}

SIZES = {"timelines": (10, 11), "default": (11, 4.6)}


def figure(data) -> Figure:
    fig = Figure(figsize=SIZES.get(data["name"], SIZES["default"]), layout="constrained")
    fig.get_layout_engine().set(rect=(0, 0.025, 1, 0.975))  # room for the footer
    DRAW[data["name"]](data, fig)
    fig.suptitle(data["title"], fontsize=11)
    footer(fig, data)
    return fig


def draw(data, png: Path):
    """Draw an experiment's figure and save it (atomically) as a PNG."""
    import io

    from .results import atomic_write

    fig = figure(data)
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=110)
    atomic_write(Path(png), buf.getvalue())
    return png
