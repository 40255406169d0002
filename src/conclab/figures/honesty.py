"""Measuring honestly: open vs closed loop, and the load driver's own ceiling."""

from __future__ import annotations

import numpy as np
from matplotlib.figure import Figure

from ..base.specs import LoadSpec, ServerSpec
from ..measuring import wrk
from ..measuring.stats import latency_ns
from ..processes.launcher import serve
from .experiment import UVICORN, Experiment, Job, closed_load
from .plotting import COLORS, by_series, mark_saturated, predicted, spread, xs


def jobs_open_closed(quick: bool) -> list[Job]:
    spec = ServerSpec("wsgi")  # one sync worker: capacity 1 / 50 ms = 20 req/s
    d = 2.0 if quick else 8.0
    return [
        Job(
            "closed loop, 4 users",
            spec,
            LoadSpec(path="/io?ms=50", concurrency=4, duration=d, timeout=60),
            keep_records=True,
        ),
        Job(
            "open loop, 15 req/s (below capacity)",
            spec,
            LoadSpec(path="/io?ms=50", rate=15, duration=d, timeout=60),
            keep_records=True,
        ),
        Job(
            "open loop, 25 req/s (above capacity)",
            spec,
            LoadSpec(path="/io?ms=50", rate=25, duration=d, timeout=60),
            keep_records=True,
        ),
    ]


def jobs_client_ceiling(quick: bool) -> list[Job]:
    ns = [100] if quick else [1, 10, 100, 256]
    out = []
    for transport in ("aiohttp", "httpx"):
        label = "httpx + aiohttp transport" if transport == "aiohttp" else "httpx default transport"
        for n in ns:
            out.append(
                Job(
                    f"{label}: /hello",
                    UVICORN,
                    closed_load("/hello", n, quick, transport=transport),
                    x=n,
                    tags={"transport": transport},
                )
            )
            out.append(
                Job(
                    f"{label}: /io?ms=100",
                    UVICORN,
                    closed_load("/io?ms=100", n, quick, transport=transport),
                    x=n,
                    tags={"transport": transport},
                )
            )
    return out


def wrk_ceiling(quick: bool) -> dict:
    """wrk (C) against the same server, when it is installed: the ceiling of a native client."""
    if not wrk.installed():
        return {
            "wrk": None,
            "note": f"wrk not installed ({wrk.INSTALL_HINT}) - no native-client reference",
        }
    out = {}
    with serve(UVICORN) as server:
        # quick: the one user count the quick figure measures, for one second
        for n in [100] if quick else [1, 10, 50, 100, 256]:
            out[str(n)] = wrk.run_wrk(server.url + "/hello", n, 1 if quick else 3).rps
    return {"wrk": out}


def draw_open_closed(data: dict, fig: Figure) -> None:
    ax1, ax2 = fig.subplots(1, 2)
    for i, p in enumerate(data["points"]):
        recs = p["records"]
        t0 = recs["t0_ns"]
        intended = np.asarray(recs["intended_ns"], dtype=float)
        start = np.asarray(recs["start_ns"], dtype=float)
        end = np.asarray(recs["end_ns"], dtype=float)
        ok = np.asarray(recs["status"]) == 200
        color = COLORS[i % len(COLORS)]
        ax1.plot(
            (intended[ok] - t0) / 1e9,
            latency_ns(intended[ok], start[ok], end[ok]) / 1e6,
            ".",
            ms=3,
            color=color,
            label=p["series"],
        )
        lat = np.sort(latency_ns(intended[ok], start[ok], end[ok]) / 1e6)
        if lat.size:
            ax2.plot(
                lat,
                np.arange(1, lat.size + 1) / lat.size,
                color=color,
                label=f"{p['series']} (from intended start)",
            )
        if p["load"]["rate"]:
            service = np.sort((end[ok] - start[ok]) / 1e6)
            ax2.plot(
                service,
                np.arange(1, service.size + 1) / max(service.size, 1),
                ":",
                color=color,
                alpha=0.6,
                label=f"{p['series']} (uncorrected, from send)",
            )
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


def draw_client_ceiling(data: dict, fig: Figure) -> None:
    ax1, ax2 = fig.subplots(1, 2)
    series = by_series(data["points"])
    for i, (name, pts) in enumerate(series.items()):
        color = COLORS[(i // 2) % len(COLORS)]
        ax = ax1 if name.endswith("/hello") else ax2
        x = xs(pts)
        thr = [p["summary"].throughput_rps for p in pts]
        ax.errorbar(
            x, thr, yerr=spread(pts), fmt="o-", color=color, capsize=3, label=name.split(":")[0]
        )
        mark_saturated(ax, pts, thr)
        if ax is ax2 and i < 2:
            ax.plot(
                x,
                predicted(pts, "throughput_rps"),
                "k--",
                alpha=0.5,
                label="server capacity (Little's law)",
            )
    wrk = (data.get("extra") or {}).get("wrk")
    if wrk:
        users = sorted(int(k) for k in wrk)
        ax1.plot(
            users, [wrk[str(k)] for k in users], "s-", color="black", label="wrk (C), for reference"
        )
    ax1.set_title("/hello: the most a client can push")
    ax2.set_title("/io?ms=100: can the client see the server's capacity?")
    for ax in (ax1, ax2):
        ax.set_xscale("log", base=2)
        ax.set_yscale("log")
        ax.set_xlabel("concurrent users")
        ax.set_ylabel("throughput (requests/s, log)")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7)


OPEN_VS_CLOSED = Experiment(
    "open_vs_closed",
    "Open vs closed loop on an overloaded server (capacity 20 req/s)",
    "A closed-loop client slows down with the server and hides its queue; an open loop shows "
    "latency growing without bound (coordinated omission).",
    jobs_open_closed,
    draw=draw_open_closed,
    # One sync worker that waits 50 ms per request, three times: the loads run at once,
    # each against a server of its own, and a queue grows in seconds, not milliseconds.
    shares_servers=False,
    side_by_side=True,
)
CLIENT_CEILING = Experiment(
    "client_ceiling",
    "Measuring the measurer: the load driver's own ceiling",
    "httpx's default transport collapses under concurrency; the aiohttp transport keeps up "
    "- always check the client is not the bottleneck.",
    jobs_client_ceiling,
    draw=draw_client_ceiling,
    extra=wrk_ceiling,
    uses=("wrk",),
)
