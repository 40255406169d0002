"""Waiting (I/O): WSGI vs ASGI, request timelines, blocking the loop, threadpool size."""

from __future__ import annotations

import math

import numpy as np
from matplotlib.figure import Figure

from ..base.specs import LoadSpec, ServerSpec
from .experiment import GTHREAD, SYNC, UVICORN, Experiment, Job, closed_load
from .plotting import COLORS, draw_lines, draw_timelines, ms, spread, throughput_latency


def jobs_wsgi_vs_asgi(quick: bool) -> list[Job]:
    # Quick mode is a subset of the full sweep (shorter runs too), so a quick
    # figure can be checked point by point against the committed full one.
    ns = [4, 64] if quick else [1, 4, 16, 64, 256]
    return [
        Job(spec.label, spec, closed_load("/io?ms=100", n, quick), x=n)
        for spec in (SYNC, GTHREAD, UVICORN)
        for n in ns
    ]


def jobs_timelines(quick: bool) -> list[Job]:
    n = 12
    cases = [
        ("gunicorn sync 1 worker: /io", ServerSpec("wsgi"), "/io?ms=100"),
        ("gunicorn gthread 4 threads: /io", ServerSpec("wsgi", threads=4), "/io?ms=100"),
        ("uvicorn: /io (await)", UVICORN, "/io?ms=100"),
        ("uvicorn: /blocking-io (time.sleep)", UVICORN, "/blocking-io?ms=100"),
        ("uvicorn: /offload-io, pool of 4", ServerSpec("asgi", threadpool=4), "/offload-io?ms=100"),
    ]
    return [
        Job(
            title,
            spec,
            LoadSpec(path=path, concurrency=n, requests=n, timeout=30),
            keep_records=True,
        )
        for title, spec, path in cases
    ]


BLOCKING_USERS = 10
BLOCKING_MS = 50
KEPT_ALIVE = "/blocking-io, probe kept alive"
# A blocked uvloop accepts one new connection per turn of the loop, and a turn
# runs one handler per connected user: the 10 users are all connected only
# after about 50 + 100 + ... ms. Measured: latency climbs from ~330 ms to the
# steady 500 ms over the first 2 s. The window starts after that ramp.
BLOCKED_WARMUP = 2.5


def jobs_blocking(quick: bool) -> list[Job]:
    n = BLOCKING_USERS
    out = []
    for path in (
        f"/io?ms={BLOCKING_MS}",
        f"/blocking-io?ms={BLOCKING_MS}",
        f"/offload-io?ms={BLOCKING_MS}",
    ):
        blocked = path.startswith("/blocking-io")
        load = closed_load(
            path,
            n,
            quick,
            warmup=BLOCKED_WARMUP if blocked else None,
            # quick: 1 s, not the usual 0.5 s - a kept-alive probe waits one turn of the
            # blocked loop (~0.5 s) per request, and its window must hold one of them
            duration=1.0 if quick else 3.0,
        )
        # The /health probe runs during the measured window, after the warm-up, so
        # every probe request meets the loop under the full load. At 20/s a probe
        # finds the earlier ones still waiting, so it opens a new connection.
        probe = LoadSpec(path="/health", rate=20, duration=load.duration, timeout=30)
        out.append(
            Job(path.split("?")[0], UVICORN, load, x=n, probe=probe, probe_after=load.warmup)
        )
        if blocked:
            # The same load, probed by one user on one kept-alive connection: it
            # connects with the load (its first answer waits for the accept, in
            # the warm-up), then has no new connection to wait for, only the loop.
            alive = LoadSpec(
                path="/health",
                concurrency=1,
                warmup=load.warmup,
                duration=load.duration,
                timeout=30,
            )
            out.append(Job(KEPT_ALIVE, UVICORN, load, x=n, probe=alive))
    return out


def jobs_threadpool(quick: bool) -> list[Job]:
    sizes = [2, 16] if quick else [1, 2, 4, 8, 16, 32]
    n = 32  # quick mode: fewer pool sizes, the same users (a subset of the full sweep)
    out = [
        Job(
            "gunicorn gthread threads",
            ServerSpec("wsgi", threads=k),
            closed_load("/io?ms=50", n, quick),
            x=k,
        )
        for k in sizes
    ]
    out += [
        Job(
            "uvicorn offload pool",
            ServerSpec("asgi", threadpool=k),
            closed_load("/offload-io?ms=50", n, quick),
            x=k,
        )
        for k in sizes
    ]
    return out


def draw_blocking(data: dict, fig: Figure) -> None:
    ax1, ax2 = fig.subplots(1, 2)
    pts = data["points"]
    names = [p["series"] for p in pts]
    thr = [p["summary"].throughput_rps for p in pts]
    pred = [p["prediction"]["throughput_rps"] if p.get("prediction") else math.nan for p in pts]
    x = np.arange(len(pts))
    lo, hi = spread(pts)
    ax1.bar(x - 0.2, thr, 0.4, yerr=[lo, hi], capsize=3, label="measured", color=COLORS[0])
    ax1.bar(x + 0.2, pred, 0.4, label="Little's law", color=COLORS[0], alpha=0.35)
    names = [name.replace(", ", ",\n") for name in names]
    ax1.set_xticks(x, names, fontsize=7)
    ax1.set_ylabel("throughput (requests/s)")
    ax1.set_title(f"{BLOCKING_USERS} users, {BLOCKING_MS} ms of waiting each")
    ax1.legend(fontsize=7)
    # A probe with no answer in its window has no percentile (None once saved): no bar.
    probe_p50 = [ms(p.get("probe"), "p50") for p in pts]
    probe_p99 = [ms(p.get("probe"), "p99") for p in pts]
    ax2.bar(x - 0.2, probe_p50, 0.4, label="p50", color=COLORS[1])
    ax2.bar(x + 0.2, probe_p99, 0.4, label="p99", color=COLORS[1], alpha=0.45)
    # Prediction for a probe on an open connection: it waits at most one turn of
    # the blocked loop, in which every user's handler runs once.
    turn = BLOCKING_USERS * BLOCKING_MS
    ax2.axhline(
        turn,
        color="black",
        ls="--",
        lw=0.8,
        alpha=0.6,
        label=f"one turn of the blocked loop: {BLOCKING_USERS} x {BLOCKING_MS} ms",
    )
    ax2.set_xticks(x, names, fontsize=7)
    ax2.set_yscale("log")
    ax2.set_ylabel("/health latency (ms, log)")
    ax2.set_title(
        "/health during the load: 20/s, new connections\n"
        "(uvloop accepts one per turn), or one kept-alive user",
        fontsize=9,
    )
    ax2.legend(fontsize=7)
    for ax in (ax1, ax2):
        ax.grid(axis="y", alpha=0.3)


WSGI_VS_ASGI = Experiment(
    "wsgi_vs_asgi",
    "WSGI vs ASGI on I/O (/io?ms=100)",
    "A sync worker serves one request at a time, gthread as many as it has threads, "
    "and the event loop all of them: throughput follows min(users, slots)/S.",
    jobs_wsgi_vs_asgi,
    draw=throughput_latency,
)
TIMELINES = Experiment(
    "timelines",
    "Request timelines: 12 requests of 100 ms each",
    "One bar per request, one lane per worker thread: serialised, overlapped in fours, "
    "all at once, blocked, and bounded by a pool.",
    jobs_timelines,
    draw=draw_timelines,
    size=(10, 11),
)
BLOCKING = Experiment(
    "blocking",
    "Blocking the event loop: /io vs /blocking-io vs /offload-io",
    "time.sleep inside async def serialises every request and even /health waits; "
    "await or a threadpool keep the loop free.",
    jobs_blocking,
    draw=draw_blocking,
    # Its servers wait (in time.sleep, or on the loop's timers), and its lesson is in
    # turns of 50 ms and more: the four points run at once, each on a Uvicorn of its own.
    shares_servers=False,
    side_by_side=True,
)
THREADPOOL = Experiment(
    "threadpool",
    "Threadpool size on I/O (50 ms of waiting per request)",
    "For I/O, throughput grows with the number of threads until the pool covers the users.",
    jobs_threadpool,
    draw=lambda d, f: draw_lines(
        d, f, "threads in the pool (gthread threads / offload pool size)", logx=True
    ),
)
