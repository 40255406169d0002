"""CPU work in a web server: on the loop, in a thread or a process pool - and what a request costs.

Two figures:

* ``cpu_offload`` - "use threadpools for CPU-bound tasks", measured. 40 ms CPU
  requests four ways on the raw ASGI server: on the loop (/cpu), pure Python in
  the thread pool (/offload-cpu), hashlib (C that lets go of the GIL) in the
  thread pool (/hash-cpu), and a process pool (/process-cpu). Throughput beside
  Little's law, and how long a /health probe waits meanwhile. One more series
  runs the pure-Python pool with a 1 ms GIL switch interval instead of 5 ms.
* ``cost_per_request`` - the server's own CPU time per request, from its
  processes' CPU counters read before and after an open-loop run at rates every
  stack can carry, so the load driver's ceiling never enters the number.
"""

from __future__ import annotations

import hashlib
import json
import math
from dataclasses import dataclass

import numpy as np

from ..base.cores import usable_cores
from ..base.specs import LoadSpec, ServerSpec
from ..measuring import wrk
from ..measuring.cost import ServerCpu, answered
from ..measuring.driver import LoadResult, run_load
from ..processes.launcher import Server, serve
from .experiment import Experiment, Job, closed_load, point_doc
from .plotting import COLORS, by_series, plot_throughput, xs

# ----------------------------------------------------------------------- cpu_offload

CPU_MS = 40
# Every core for the server: the process pool starts one process per usable core,
# and /hash-cpu threads compute on several at once. The load driver's thread
# shares one of them; at 25-50 req/s of 40 ms requests it needs little CPU.
ALL_CORES = ServerSpec("asgi", cpus="all")
SWITCH_1MS = ServerSpec("asgi", cpus="all", env=(("SWITCH_INTERVAL_MS", "1"),))
DEFAULT_SWITCH_MS = 5.0  # sys.getswitchinterval() of CPython, unless a program changes it

# (series, route, server)
WAYS = [
    ("on the loop (/cpu)", "/cpu", ALL_CORES),
    ("pure Python in threads (/offload-cpu)", "/offload-cpu", ALL_CORES),
    ("hashlib in threads (/hash-cpu)", "/hash-cpu", ALL_CORES),
    ("process pool (/process-cpu)", "/process-cpu", ALL_CORES),
    ("pure Python in threads, switch interval 1 ms", "/offload-cpu", SWITCH_1MS),
]
PROBE_RATE = 25  # /health requests per second during the load


def offload_users(quick: bool) -> list[int]:
    return [1, 4] if quick else [1, 2, 3, 4]  # quick: one core's worth, and every core busy


def jobs_cpu_offload(quick):
    out = []
    for series, route, spec in WAYS:
        for n in offload_users(quick):
            load = closed_load(f"{route}?ms={CPU_MS}", n, quick)
            # The probe spans the whole run, warm-up included, like the blocking figure's.
            probe = LoadSpec(
                path="/health", rate=PROBE_RATE, duration=load.warmup + load.duration, timeout=30
            )
            out.append(Job(series, spec, load, x=n, probe=probe, tags={"route": route}))
    return out


def draw_cpu_offload(data, fig):
    ax1, ax2 = fig.subplots(1, 2)
    for i, (name, pts) in enumerate(by_series(data["points"]).items()):
        color = COLORS[i % len(COLORS)]
        plot_throughput(ax1, name, pts, color)
        probed = [p for p in pts if p.get("probe")]
        x = xs(probed)
        ax2.plot(
            x, [p["probe"].latency_ms.p50 for p in probed], "o-", color=color, label=f"{name} p50"
        )
        ax2.plot(x, [p["probe"].latency_ms.p99 for p in probed], "^:", color=color, alpha=0.8)
    ax1.set_xlabel("concurrent users (closed loop), 40 ms of CPU each")
    ax1.set_ylabel("throughput (requests/s)")
    ax1.set_ylim(0, ax1.get_ylim()[1] * 1.5)  # room for the legend above the lines
    ax1.set_title("throughput (dashed: Little's law, 1/S or min(users, cores)/S)", fontsize=9)
    ax1.legend(fontsize=5.5, ncols=2, loc="upper left")
    right = max(p["x"] for p in data["points"])
    ax2.axhline(DEFAULT_SWITCH_MS, color="#555555", lw=0.8, ls="--")
    ax2.annotate(
        "GIL switch interval, 5 ms (default)",
        (right, DEFAULT_SWITCH_MS),
        fontsize=6,
        color="#555555",
        va="top",
        ha="right",
    )
    ax2.axhline(1.0, color="#999999", lw=0.8, ls="--")
    ax2.annotate("1 ms", (right, 1.0), fontsize=6, color="#999999", va="bottom", ha="right")
    ax2.set_yscale("log")
    ax2.set_xlabel("concurrent users (closed loop)")
    ax2.set_ylabel("/health latency (ms, log)")
    ax2.set_title(
        f"a /health probe ({PROBE_RATE}/s) during the load: p50 (o, solid), p99 (^, dotted)",
        fontsize=9,
    )
    ax2.legend(fontsize=6)
    for ax in (ax1, ax2):
        ax.set_xticks(sorted({p["x"] for p in data["points"]}))
        ax.grid(alpha=0.3)
    cores = (data.get("machine") or {}).get("usable_cores") or usable_cores()
    ax1.annotate(
        f"server on every core ({cores}); the load driver shares one",
        (0.02, 0.02),
        xycoords="axes fraction",
        fontsize=7,
        va="bottom",
        color="#555555",
    )


CPU_OFFLOAD = Experiment(
    "cpu_offload",
    "Should CPU work go to a thread pool? 40 ms requests four ways (raw ASGI)",
    "A pool thread frees the loop only between GIL hand-overs (every few ms) and adds no "
    "throughput for pure Python; C code that releases the GIL and a process pool use every core.",
    jobs_cpu_offload,
    draw=draw_cpu_offload,
    size=(12, 5),
)

# ----------------------------------------------------------------- cost_per_request

STACKS = [
    ("gunicorn sync", ServerSpec("wsgi")),
    ("gunicorn gthread (4 threads)", ServerSpec("wsgi", threads=4)),
    ("uvicorn asyncio+h11", ServerSpec("asgi", loop="asyncio", http="h11")),
    ("uvicorn asyncio+httptools", ServerSpec("asgi", loop="asyncio", http="httptools")),
    ("uvicorn uvloop+httptools", ServerSpec("asgi", loop="uvloop", http="httptools")),
    ("FastAPI (uvicorn uvloop+httptools)", ServerSpec("fastapi", loop="uvloop", http="httptools")),
]
FAST = STACKS[4][1]
RATES = (200, 1000)  # req/s: well below every stack's capacity on one core (Gunicorn sync: ~2,000)


def cost_rates(quick: bool) -> tuple[float, ...]:
    """The rates measured: quick mode keeps the higher one (more requests per CPU tick)."""
    return RATES[-1:] if quick else RATES


def cost_routes(quick: bool) -> list[str]:
    return ["/hello"] if quick else ["/hello", "/state"]


def cost_load(path: str, rate: float, quick: bool, repeat: int = 0) -> LoadSpec:
    """An open-loop run at ``rate``; ``repeat`` (as the seed) makes each repeat its own point."""
    return LoadSpec(
        path=path,
        rate=rate,
        # 1 s: the server's CPU time is read in nanoseconds, so a window of 200 to
        # 1,000 requests measures it; what moves a repeat is the shared machine, and
        # the figure shows that as the whiskers of three repeats (full mode).
        duration=1.0,
        warmup=0.2 if quick else 0.3,
        timeout=10,
        seed=repeat,
    )


def measure_cost(server: Server, load: LoadSpec) -> tuple[LoadResult, dict]:
    """Run ``load`` and read the server's CPU time before and after: microseconds per request.

    Every request the server answered counts, warm-up included - the CPU
    counters run through the warm-up too.
    """
    with ServerCpu(server) as cpu:
        result = run_load(server.url, load, progress=False, warn=False)
    n = answered(result)
    us = cpu.us_per_request(n)
    return result, {
        "server_cpu_s": cpu.seconds,
        "requests": n,
        "us_per_request": us if us is not None else math.nan,
    }


@dataclass
class CostJob(Job):
    """A point of cost_per_request: the load, plus the server's CPU time per request."""

    def key(self) -> str:
        return hashlib.sha1(json.dumps(["cost", super().key()]).encode()).hexdigest()[:16]

    def measure(self, server) -> dict:
        result, cost = measure_cost(server, self.load)
        doc = point_doc(self, result)
        doc["cost"] = cost
        return doc


# Quick mode keeps the steps of the lesson: Gunicorn sync, then h11 -> httptools -> uvloop.
QUICK_STACKS = (
    "gunicorn sync",
    "uvicorn asyncio+h11",
    "uvicorn asyncio+httptools",
    "uvicorn uvloop+httptools",
)


def jobs_cost(quick):
    repeats = 1 if quick else 3
    return [
        CostJob(
            f"{route} at {rate} req/s",
            spec,
            cost_load(route, rate, quick, r),
            x=i,
            tags={"stack": name, "repeat": r},
        )
        for i, (name, spec) in enumerate(STACKS)
        if not quick or name in QUICK_STACKS
        for route in cost_routes(quick)
        for rate in cost_rates(quick)
        for r in range(repeats)
    ]


def wrk_cost(quick):
    """wrk (C) drives uvloop+httptools as hard as it
    can: its maximum, and the CPU per request there."""
    if not wrk.installed():
        return {"wrk": None, "note": f"wrk not installed ({wrk.INSTALL_HINT}): no measured maximum"}
    # wrk runs on the driver's core, the server on the others.
    with serve(FAST) as server:
        run_load(
            server.url, path="/hello", concurrency=10, duration=0.5, progress=False, warn=False
        )  # warm up
        try:
            with ServerCpu(server) as cpu:
                done = wrk.run_wrk(server.url + "/hello", 50, 1 if quick else 5)
        except wrk.WrkError as err:
            return {"wrk": None, "note": str(err)}
    return {
        "wrk": {
            "rps": done.rps,
            "requests": done.requests,
            "seconds": done.seconds,
            "server_cpu_s": cpu.seconds,
            "us_per_request": cpu.us_per_request(done.requests),
            "server_busy": cpu.seconds / done.seconds,
            "connections": 50,
            "server_cores": len(FAST.resolved_cpus()),
        }
    }


def cost_table(points) -> dict:
    """{stack: {series: [us per request of each repeat]}} from cost_per_request's points."""
    out: dict = {}
    for p in points:
        us = (p.get("cost") or {}).get("us_per_request")
        if us is not None and math.isfinite(us):
            out.setdefault(p["tags"]["stack"], {}).setdefault(p["series"], []).append(us)
    return out


def draw_cost(data, fig):
    ax1, ax2 = fig.subplots(1, 2, width_ratios=[2.2, 1])
    table = cost_table(data["points"])
    stacks = [name for name, _ in STACKS if name in table]
    series = list(dict.fromkeys(p["series"] for p in data["points"]))
    width = 0.8 / max(len(series), 1)
    for j, name in enumerate(series):
        values = [table[s].get(name, []) for s in stacks]
        mid = [float(np.median(v)) if v else math.nan for v in values]
        low = [m - min(v) if v else 0 for m, v in zip(mid, values, strict=True)]
        high = [max(v) - m if v else 0 for m, v in zip(mid, values, strict=True)]
        x = np.arange(len(stacks)) + (j - (len(series) - 1) / 2) * width
        # One colour per route, darker at the low rate.
        ax1.bar(
            x,
            mid,
            width,
            yerr=[low, high],
            capsize=2,
            color=COLORS[0 if "/hello" in name else 2],
            label=name,
            alpha=1.0 if name.endswith(f" {RATES[0]} req/s") else 0.5,
        )
        for xi, m, h in zip(x, mid, high, strict=True):
            if math.isfinite(m):
                ax1.annotate(f"{m:.0f}", (xi, m + h), ha="center", va="bottom", fontsize=5.5)
    ax1.set_xticks(
        np.arange(len(stacks)),
        [s.replace(" (", "\n(").replace("uvicorn ", "uvicorn\n") for s in stacks],
        fontsize=7,
    )
    ax1.set_ylabel("server CPU time per request (microseconds)")
    ax1.set_title(
        "what each request costs the server (bars: median, whiskers: min..max of repeats)",
        fontsize=9,
    )
    ax1.legend(fontsize=7)
    ax1.grid(axis="y", alpha=0.3)

    # The capacity the cost implies for uvloop+httptools, beside what wrk measured.
    fast = table.get(STACKS[4][0], {})
    labels, values = [], []
    for name in series:
        if name.startswith("/hello") and fast.get(name):
            labels.append(f"cost at\n{name.split(' at ')[1]}")
            values.append(1e6 / float(np.median(fast[name])))
    wrk = (data.get("extra") or {}).get("wrk")
    if wrk:
        labels += ["cost\nunder wrk", "wrk's\nmeasured max"]
        values += [1e6 / wrk["us_per_request"], wrk["rps"]]
    bars = ax2.bar(
        range(len(values)),
        values,
        color=["#1f77b4"] * (len(values) - (1 if wrk else 0)) + (["black"] if wrk else []),
    )
    for b, v in zip(bars, values, strict=True):
        ax2.annotate(
            f"{v:,.0f}", (b.get_x() + b.get_width() / 2, v), ha="center", va="bottom", fontsize=7
        )
    ax2.set_xticks(range(len(values)), labels, fontsize=7)
    ax2.set_ylabel("requests/s on one core (blue: implied by the cost)")
    note = (
        f"under wrk the server was busy {wrk['server_busy']:.0%} of a core"
        if wrk
        else "wrk not installed"
    )
    ax2.set_title(f"uvloop+httptools, /hello: 1e6 / (us per request)\n({note})", fontsize=9)
    ax2.grid(axis="y", alpha=0.3)


COST_PER_REQUEST = Experiment(
    "cost_per_request",
    "What a request costs the server: CPU time per request, open loop below capacity",
    "httptools parses HTTP in C and uvloop runs the loop on libuv: each cuts the server's "
    "CPU per request; the cost falls as load rises, because each loop turn handles more events.",
    jobs_cost,
    draw=draw_cost,
    size=(12, 5),
    extra=wrk_cost,
    uses=("wrk", "schedstat"),
    note=False,  # its whiskers are the repeats' min..max, said in the panel
)
