"""Threads without the GIL: the pool route on the GIL build and on a free-threaded build.

One figure, ``freethreaded``: "use threadpools for CPU-bound tasks", measured
on both builds of CPython. The raw ASGI server on every usable core runs
/offload-cpu (20 ms of CPU in a pool thread) with THREADPOOL_SIZE 1, 2 and the
usable cores, for 1 to 8 users:

* GIL build (the lab's own Python): one pool thread computes at a time, so
  throughput stays at 1/S whatever the pool's size - beside today's ways out,
  a process pool (/process-cpu) and hashlib, C that lets go of the GIL
  (/hash-cpu);
* free-threaded build (``make freethreaded``: CPython 3.13t): the pool's
  threads compute on several cores at once, min(users, threads, cores)/S.

Both beside their theory, and a /health probe during the load. burn_cpu burns
a fixed CPU *time*, which hides how fast an interpreter runs Python, so a last
panel runs a fixed amount of *work* (/offload-work) on both builds: the
free-threaded build's single-thread cost, and what it buys with 2 users.

The interpreter pool of Python 3.14 (``InterpreterPoolExecutor``, one
interpreter with its own GIL per thread) is not measured: no 3.14 runs here
outside a chroot, and ``--python`` cannot point into one. The figure says so.
"""

from __future__ import annotations

import hashlib
import json
import math
import statistics
from dataclasses import dataclass

from ..base.cores import usable_cores
from ..base.specs import LoadSpec, ServerSpec
from ..processes import interpreters
from .cpu_offload import measure_cost
from .experiment import Experiment, Job, closed_load, point_doc
from .plotting import COLORS

CPU_MS = 20
WORK_UNITS = 1000  # /offload-work: about 24 ms of pure Python on the lab's 3.11 here
PROBE_RATE = 25  # /health requests per second during the load
GIL, FREE = "GIL build", "free-threaded"
NOT_MEASURED = (
    "interpreter pool (3.14 InterpreterPoolExecutor): not measured - "
    "no Python 3.14 here outside a chroot, and --python cannot point into one"
)


def pool_sizes(quick: bool = False) -> list[int]:
    """THREADPOOL_SIZE 1, 2 and the usable cores (each once); quick: 2 and the cores,
    the pools that can compute on more than one core (the pool of 1 is the full figure's
    control)."""
    return sorted({2, usable_cores()} if quick else {1, 2, usable_cores()})


def users(quick: bool) -> list[int]:
    return [1, 2] if quick else [1, 2, 3, 4, 6, 8]  # quick: one user, and two (the speed-up)


def server(build: str, threadpool: int) -> ServerSpec:
    """The raw ASGI server on every core, on the lab's Python or the free-threaded build."""
    # Where the build goes, even before it is built: a start then fails saying so.
    built = (
        interpreters.freethreaded_python()
        or interpreters.freethreaded_home() / "bin" / "python3.13t"
    )
    python = str(built) if build == FREE else None
    return ServerSpec("asgi", cpus="all", threadpool=threadpool, python=python)


def _job(series, spec, path, n, quick, **tags):
    load = closed_load(path, n, quick)
    probe = LoadSpec(
        path="/health", rate=PROBE_RATE, duration=load.warmup + load.duration, timeout=30
    )
    return Job(series, spec, load, x=n, probe=probe, tags={"threadpool": spec.threadpool, **tags})


@dataclass
class FixedWorkJob(Job):
    """A fixed-work point: the load, plus the server's CPU time per request.

    CPU time, not wall time: on a shared machine a request waits for a core as
    long as others want one, but the CPU it used is what the interpreter cost.
    """

    def key(self) -> str:
        return hashlib.sha1(json.dumps(["fixed-work", super().key()]).encode()).hexdigest()[:16]

    def measure(self, server) -> dict:
        result, cost = measure_cost(server, self.load)
        doc = point_doc(self, result)
        doc["cost"] = cost
        return doc


def jobs_freethreaded(quick):
    cores = usable_cores()
    out = []
    for build in (GIL, FREE):
        for size in pool_sizes(quick):
            spec = server(build, size)
            for n in users(quick):
                out.append(
                    _job(
                        f"{build}, pool of {size}",
                        spec,
                        f"/offload-cpu?ms={CPU_MS}",
                        n,
                        quick,
                        build=build,
                        route="/offload-cpu",
                    )
                )
    for series, route in (
        ("process pool (/process-cpu)", "/process-cpu"),
        ("hashlib in threads (/hash-cpu)", "/hash-cpu"),
    ):
        spec = server(GIL, cores)
        out += [
            _job(f"{GIL}, {series}", spec, f"{route}?ms={CPU_MS}", n, quick, build=GIL, route=route)
            for n in users(quick)
        ]
    for build in (GIL, FREE):
        spec = server(build, cores)
        for n in (1, 2):
            load = closed_load(f"/offload-work?units={WORK_UNITS}", n, quick)
            out.append(
                FixedWorkJob(
                    f"{build}, fixed work",
                    spec,
                    load,
                    x=n,
                    tags={"threadpool": cores, "build": build, "route": "/offload-work"},
                )
            )
    return out


def theory(point, cores) -> float:
    """Little's law for the point (measuring/theory.py): min(users, slots) / S, the slots being
    1 for pure Python under the GIL and min(threads, cores) without it."""
    return point["prediction"]["throughput_rps"]


def series_of(points, build, route=None):
    out: dict[str, list[dict]] = {}
    for p in points:
        if p["tags"]["build"] == build and (route is None or p["tags"]["route"] == route):
            out.setdefault(p["series"], []).append(p)
    return {name: sorted(pts, key=lambda p: p["x"]) for name, pts in out.items()}


def gil_state(points) -> str:
    """The GIL state the servers of these points reported (never assumed)."""
    seen = {p["summary"].server_gil_enabled for p in points}
    return {frozenset({False}): "GIL off", frozenset({True}): "GIL on"}.get(
        frozenset(seen), "GIL state mixed or not recorded"
    )


def versions(points) -> str:
    return ", ".join(sorted({str(p["summary"].server_python) for p in points}))


def draw_freethreaded(data, fig):
    points = data["points"]
    cores = (data.get("machine") or {}).get("usable_cores") or usable_cores()
    (ax_gil, ax_free), (ax_probe, ax_work) = fig.subplots(2, 2)
    top = 0.0
    for ax, build, routes in ((ax_gil, GIL, None), (ax_free, FREE, None)):
        groups = {
            k: v for k, v in series_of(points, build, routes).items() if "fixed work" not in k
        }
        for i, (name, pts) in enumerate(groups.items()):
            color = COLORS[i % len(COLORS)]
            x = [p["x"] for p in pts]
            ax.plot(
                x,
                [p["summary"].throughput_rps for p in pts],
                "o-",
                color=color,
                label=name.split(", ", 1)[1],
            )
            ax.plot(x, [theory(p, cores) for p in pts], "--", color=color, alpha=0.6)
            top = max(
                top, *(p["summary"].throughput_rps for p in pts), *(theory(p, cores) for p in pts)
            )
        every = [p for pts in groups.values() for p in pts]
        ax.set_title(
            f"{build}: Python {versions(every)}, {gil_state(every)} (read from the server)\n"
            f"/offload-cpu?ms={CPU_MS} (dashed: min(users, computing at once) / S)",
            fontsize=8.5,
        )
        ax.set_xlabel("concurrent users (closed loop)")
        ax.set_ylabel("throughput (requests/s)")
        ax.legend(fontsize=6.5, loc="upper left", ncols=2)
        ax.set_xticks(sorted({p["x"] for p in every}))
    for ax in (ax_gil, ax_free):
        ax.set_ylim(0, top * 1.35)
        ax.grid(alpha=0.3)
    fig.text(0.99, 0.024, NOT_MEASURED, ha="right", va="bottom", fontsize=6.5, color="#555555")
    ax_free.annotate(
        f"server on every core ({cores}); the load driver shares one",
        (0.99, 0.02),
        xycoords="axes fraction",
        ha="right",
        va="bottom",
        fontsize=6,
        color="#555555",
    )

    # The loop's responsiveness: /health while the pool computes (pool of 2 on each build).
    for i, build in enumerate((GIL, FREE)):
        pts = [
            p
            for p in series_of(points, build, "/offload-cpu").get(f"{build}, pool of 2", [])
            if p.get("probe")
        ]
        x = [p["x"] for p in pts]
        ax_probe.plot(
            x, [p["probe"].latency_ms.p50 for p in pts], "o-", color=COLORS[i], label=f"{build} p50"
        )
        ax_probe.plot(
            x,
            [p["probe"].latency_ms.p99 for p in pts],
            "^:",
            color=COLORS[i],
            alpha=0.8,
            label=f"{build} p99",
        )
    ax_probe.set_xticks(sorted({p["x"] for p in points if p["tags"]["route"] == "/offload-cpu"}))
    ax_probe.set_yscale("log")
    ax_probe.set_xlabel("concurrent users (closed loop), pool of 2")
    ax_probe.set_ylabel("/health latency (ms, log)")
    ax_probe.set_title(
        f"a /health probe ({PROBE_RATE}/s) during the load: the event loop's wait", fontsize=8.5
    )
    ax_probe.legend(fontsize=6.5)
    ax_probe.grid(alpha=0.3)

    # Fixed work: the single-thread cost, and 2 users.
    labels, values, colors = [], [], []
    for i, build in enumerate((GIL, FREE)):
        for p in series_of(points, build, "/offload-work").get(f"{build}, fixed work", []):
            labels.append(f"{build}\n{p['x']} user{'s' if p['x'] > 1 else ''}")
            values.append(p["summary"].throughput_rps)
            colors.append(COLORS[i])
    bars = ax_work.bar(range(len(values)), values, color=colors)
    for b, v in zip(bars, values, strict=True):
        ax_work.annotate(
            f"{v:.1f}", (b.get_x() + b.get_width() / 2, v), ha="center", va="bottom", fontsize=7
        )
    ax_work.set_xticks(range(len(values)), labels, fontsize=7)
    ax_work.set_ylabel("throughput (requests/s)")
    ms = fixed_work_ms(points)
    cost = (
        (
            f"server CPU per request: {ms[GIL]:.1f} ms on the GIL build, "
            f"{ms[FREE]:.1f} ms free-threaded "
            f"({ms[FREE] / ms[GIL] - 1:+.0%})"
        )
        if ms.get(GIL) and ms.get(FREE)
        else "CPU per request: not measured"
    )
    ax_work.set_title(
        f"a fixed amount of work (/offload-work?units={WORK_UNITS}), pool of {cores}\n{cost}",
        fontsize=8.5,
    )
    ax_work.grid(axis="y", alpha=0.3)


def fixed_work_ms(points) -> dict[str, float]:
    """The server's CPU milliseconds per fixed-work request, per build (1 and 2 users pooled)."""
    out = {}
    for build in (GIL, FREE):
        costs = [
            p["cost"]["us_per_request"] / 1000
            for p in series_of(points, build, "/offload-work").get(f"{build}, fixed work", [])
            if (p.get("cost") or {}).get("us_per_request")
        ]
        if costs:
            out[build] = statistics.median(costs)
    return out


def speedups(points) -> dict[str, float]:
    """2 users over 1, per build: /offload-cpu with a pool of 2 (the notebook's numbers)."""
    out = {}
    for build in (GIL, FREE):
        pts = {
            p["x"]: p["summary"].throughput_rps
            for p in series_of(points, build, "/offload-cpu").get(f"{build}, pool of 2", [])
        }
        out[build] = pts[2] / pts[1] if 1 in pts and 2 in pts else math.nan
    return out


def off_theory(points, cores) -> list[tuple[str, int, float]]:
    """(series, users, measured/theory - 1) for every throughput point with a theory line."""
    return [
        (p["series"], p["x"], p["summary"].throughput_rps / theory(p, cores) - 1)
        for p in points
        if p["tags"]["route"] != "/offload-work"
    ]


def median_probe_ms(points, build) -> float:
    pts = [
        p
        for p in series_of(points, build, "/offload-cpu").get(f"{build}, pool of 2", [])
        if p.get("probe")
    ]
    return statistics.median(p["probe"].latency_ms.p50 for p in pts) if pts else math.nan


FREETHREADED = Experiment(
    "freethreaded",
    f"Threads without the GIL: {CPU_MS} ms of pure Python in a pool thread, "
    "GIL build vs free-threaded build (raw ASGI)",
    "Under the GIL more pool threads add no throughput for pure Python; on the free-threaded "
    "build they compute on every core, min(users, threads, cores)/S, at a single-thread cost "
    "the fixed-work panel shows.",
    jobs_freethreaded,
    draw=draw_freethreaded,
    size=(12, 8.5),
    note=False,  # the theory is drawn per panel (min(users, computing at once) / S)
    needs=interpreters.freethreaded_missing,
)
