"""Cores: the GIL, worker processes, and what each kind of concurrency costs in memory."""

from __future__ import annotations

import math

from matplotlib.figure import Figure

from ..base.cores import usable_cores
from ..base.specs import LoadSpec, ServerSpec
from .experiment import UVICORN, Experiment, Job, closed_load
from .plotting import COLORS, by_series, draw_lines, xs


def jobs_gil(quick: bool) -> list[Job]:
    # Up to twice the usable cores, so the figure shows where processes stop gaining.
    cores = usable_cores()
    ks = [1, 2] if quick else sorted({1, 2, cores, cores + 1, 2 * cores})
    out = []
    for k in ks:
        out.append(
            Job(
                "threads (gthread, 1 worker)",
                ServerSpec("wsgi", threads=k, worker_class="gthread", cpus="all"),
                closed_load("/cpu?ms=40", 2 * k, quick),
                x=k,
            )
        )
        out.append(
            Job(
                "processes (sync workers)",
                ServerSpec("wsgi", workers=k, cpus="all"),
                closed_load("/cpu?ms=40", 2 * k, quick),
                x=k,
            )
        )
    return out


def workers_users() -> int:
    """Users for the workers sweep: 8, or more on a machine with more usable cores."""
    return max(8, 2 * usable_cores() + 1)


def jobs_workers(quick: bool) -> list[Job]:
    cores = usable_cores()
    users = workers_users()
    ws = (
        [1, 2]
        if quick
        else sorted(
            w for w in {1, 2, 3, 4, 5, 8, cores, cores + 1, 2 * cores + 1, users} if w <= 64
        )
    )
    out = []
    for w in ws:
        # CPU work gets every core, the driver's included. Waiting needs no core, so the
        # I/O series keeps off the driver's core: 8 workers there made the driver wait
        # for its core, and each request spent ~7 ms outside the handler instead of ~3.5.
        cpu_spec = ServerSpec("wsgi", workers=w, cpus="all")
        io_spec = ServerSpec("wsgi", workers=w)
        out.append(
            Job(
                f"CPU: /cpu?ms=40, {users} users",
                cpu_spec,
                closed_load("/cpu?ms=40", users, quick),
                x=w,
            )
        )
        out.append(
            Job(
                f"I/O: /io?ms=50, {users} users",
                io_spec,
                closed_load("/io?ms=50", users, quick),
                x=w,
            )
        )
    return out


def jobs_memory(quick: bool) -> list[Job]:
    # Processes are the expensive kind: each worker imports Flask on its own,
    # so we stop at 16 of them (64 would take a minute just to boot).
    procs = [1, 4] if quick else [1, 4, 16]
    threads = [1, 64] if quick else [1, 4, 16, 64, 256]
    coros = [1, 64] if quick else [1, 4, 16, 64, 256, 1000]
    hold = "/io?ms=600" if quick else "/io?ms=3000"

    def load(n: int) -> LoadSpec:
        return LoadSpec(path=hold, concurrency=n, requests=n, timeout=30)

    return (
        [
            Job(
                "processes (sync workers)",
                ServerSpec("wsgi", workers=n),
                load(n),
                x=n,
                sample_rss=True,
            )
            for n in procs
        ]
        + [
            Job(
                "threads (gthread)",
                ServerSpec("wsgi", threads=n, worker_class="gthread"),
                load(n),
                x=n,
                sample_rss=True,
            )
            for n in threads
        ]
        + [Job("coroutines (uvicorn)", UVICORN, load(n), x=n, sample_rss=True) for n in coros]
    )


def draw_memory(data: dict, fig: Figure) -> None:
    ax1, ax2 = fig.subplots(1, 2)
    for i, (name, pts) in enumerate(by_series(data["points"]).items()):
        color = COLORS[i % len(COLORS)]
        pts = [p for p in pts if p.get("rss_bytes") and p["rss_bytes"].get("loaded")]
        if not pts:
            continue
        x = xs(pts)
        total = [p["rss_bytes"]["loaded"] / 2**20 for p in pts]
        samples = [
            [v / 2**20 for v in p["rss_bytes"].get("loaded_samples") or [p["rss_bytes"]["loaded"]]]
            for p in pts
        ]
        yerr = [
            [t - min(s) for t, s in zip(total, samples, strict=True)],
            [max(s) - t for t, s in zip(total, samples, strict=True)],
        ]
        ax1.errorbar(x, total, yerr=yerr, fmt="o-", color=color, capsize=3, label=name)
        if len(pts) >= 2:
            slope = (total[-1] - total[0]) / (x[-1] - x[0]) if x[-1] != x[0] else math.nan
            ax2.bar(i, slope * 1024, color=color, label=name)
            ax2.annotate(
                f"{slope * 1024:.0f} KiB", (i, slope * 1024), ha="center", va="bottom", fontsize=8
            )
    ax1.set_xscale("log", base=2)
    ax1.set_xlabel("requests held in flight at once")
    kind = data.get("machine", {}).get("memory", "PSS")  # RSS where the system has no PSS (macOS)
    ax1.set_ylabel(f"server memory, all processes ({kind}, MiB)")
    ax1.set_title(
        f"memory ({kind}) while holding N slow requests\n(bars: lowest and highest of 3 readings)",
        fontsize=9,
    )
    ax1.legend(fontsize=7)
    ax1.grid(alpha=0.3)
    ax2.set_yscale("log")
    ax2.set_ylabel("extra memory per in-flight request (KiB, log)")
    ax2.set_xticks([])
    ax2.set_title("cost of one more concurrent request")
    ax2.legend(fontsize=7)


GIL = Experiment(
    "gil",
    "The GIL: CPU work (/cpu?ms=40) in threads vs processes",
    "Threads of one process take turns holding the "
    "GIL; processes run on every core - but not beyond.",
    jobs_gil,
    draw=lambda d, f: draw_lines(d, f, "threads or processes (2 users each)"),
)
WORKERS = Experiment(
    "workers",
    f"Worker processes: CPU vs I/O ({workers_users()} users)",
    "Workers scale CPU work up to the core count and I/O work up to the number of users.",
    jobs_workers,
    draw=lambda d, f: draw_lines(d, f, "worker processes (Gunicorn sync)"),
)
MEMORY = Experiment(
    "memory",
    "Memory per in-flight request",
    "A forked worker process costs megabytes, a thread tens of kilobytes, and an in-flight Uvicorn "
    "request (connection, transport, parser, task and coroutine) about ten kilobytes.",
    jobs_memory,
    draw=draw_memory,
    uses=("pss",),
    note=False,  # no throughput drawn: its own subtitle says what the bars are
    shares_servers=False,  # each server's memory before the load is the baseline: a fresh one
)
