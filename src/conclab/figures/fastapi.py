"""FastAPI: `def` or `async def`, and AnyIO's 40 thread tokens.

* ``fastapi`` - throughput and p99 against users on 100 ms of waiting, written
  three ways: ``async def`` + ``await`` (/io: no slot limit), plain ``def`` +
  ``time.sleep`` (/def-io: one of AnyIO's tokens each, so a plateau at
  tokens / S - 400 req/s with the default 40, more with the limit raised) and
  ``async def`` + ``time.sleep`` (/blocking-io: the loop itself, 1 / S).
* ``threadpool_cliff`` - a /def-health probe's latency while exactly N slow
  ``def`` requests are in flight: flat while a token is free, a cliff once the
  N slow ones hold them all, and an ``async def`` /health beside it that never
  notices. Raising ``total_tokens`` (THREADPOOL_SIZE) moves the cliff.

FastAPI's rule (fastapi.tiangolo.com/async/): a plain ``def`` path operation
runs in a threadpool that is awaited; Starlette's pool is AnyIO's, "only 40
tokens" by default (starlette.io/threadpool).
"""

from __future__ import annotations

import hashlib
import json
import math
import threading
import time
from dataclasses import dataclass

import httpx
from matplotlib.ticker import FuncFormatter

from ..base.specs import LoadSpec, ServerSpec
from ..measuring.driver import run_load
from ..measuring.theory import parse_route, predict
from .experiment import Experiment, Job, closed_load, point_doc
from .plotting import COLORS, by_series, latencies, ms, plot_throughput, predicted, xs

DEFAULT_TOKENS = 40  # AnyIO's default limiter (anyio.to_thread.current_default_thread_limiter())
RAISED_TOKENS = 50  # total_tokens raised at startup: THREADPOOL_SIZE=50
WAIT_MS = 100  # every request of the `fastapi` figure waits this long
SETTLE_S = 0.5  # threadpool_cliff: how much longer than the warm-up to wait for every slow request
PLAIN = FuncFormatter(lambda v, _: f"{v:g}")  # 64, not 2^6 or 6.4 x 10^1
SOME = FuncFormatter(
    lambda v, _: f"{v:g}" if f"{v:g}"[0] in "235" else ""
)  # minor ticks: 20, 30, 50 ...

# The three ways to write an endpoint that waits, as the figure's series name them.
ASYNC_AWAIT = "async def + await (/io)"
DEF_SLEEP = "def + time.sleep (/def-io), {} tokens"
ASYNC_SLEEP = "async def + time.sleep (/blocking-io)"


def fastapi_spec(tokens: int = DEFAULT_TOKENS) -> ServerSpec:
    """FastAPI on one Uvicorn worker, with AnyIO's total_tokens set to ``tokens``."""
    return ServerSpec("fastapi", threadpool=tokens)


# --------------------------------------------------------------------------- def or async def


def jobs_fastapi(quick: bool) -> list[Job]:
    users = [4, 64] if quick else [1, 4, 16, 40, 64, 128, 256]  # quick: a subset of the full sweep
    plateau = (
        [64] if quick else [4, 16, 64, 128, 256]
    )  # 64 and up: more users than either token count
    # time.sleep on the loop serves one request at a time: N users wait N x 100 ms each
    # (and the run waits for the last of them), so this series stops early.
    blocked = [1, 4] if quick else [1, 4, 16, 64]
    default, raised = fastapi_spec(), fastapi_spec(RAISED_TOKENS)
    wait = f"?ms={WAIT_MS}"
    cases = [
        (ASYNC_AWAIT, default, "/io", users),
        (
            DEF_SLEEP.format(DEFAULT_TOKENS),
            default,
            "/def-io",
            sorted({*users[1:], *plateau}) if quick else users,
        ),
        (DEF_SLEEP.format(RAISED_TOKENS), raised, "/def-io", plateau),
        (ASYNC_SLEEP, default, "/blocking-io", blocked),
    ]
    return [
        Job(series, spec, steady_load(spec, route + wait, n, quick), x=n)
        for series, spec, route, ns in cases
        for n in ns
    ]


def steady_load(spec: ServerSpec, path: str, n: int, quick: bool) -> LoadSpec:
    """The usual closed loop, warmed up until every user has had its first answer.

    N users start at once; when they queue (more users than slots), the first
    answers come fast and the last take the whole queue, so the window must
    start after about one mean latency (Little's law's R) - up to N x 100 ms on
    a blocked loop - or it counts the start-up wave instead of the steady state.
    """
    usual = closed_load(path, n, quick)
    settle_s = 1.5 * predict(spec, path, concurrency=n).latency_ms / 1000
    return closed_load(path, n, quick, warmup=max(usual.warmup, settle_s))


def draw_fastapi(data: dict, fig) -> None:
    ax1, ax2 = fig.subplots(1, 2)
    for i, (name, pts) in enumerate(by_series(data["points"]).items()):
        color = COLORS[i % len(COLORS)]
        x = plot_throughput(ax1, name, pts, color)
        ax2.plot(x, latencies(pts, "p99"), "o-", color=color, label=f"{name} p99")
        ax2.plot(x, predicted(pts, "latency_ms"), "--", color=color, alpha=0.5)
        tokens = pts[-1]["spec"]["threadpool"]
        if name.startswith("def"):  # name the plateau: tokens / S
            ax1.annotate(
                f"{tokens} tokens / {WAIT_MS} ms = {tokens / WAIT_MS * 1000:g} req/s",
                (x[-1], tokens / WAIT_MS * 1000),
                fontsize=7,
                color=color,
                ha="right",
                va="top" if tokens == DEFAULT_TOKENS else "bottom",
            )
    for ax in (ax1, ax2):
        ax.set_xscale("log", base=2)
        ax.set_yscale("log")
        for axis in (ax.xaxis, ax.yaxis):
            axis.set_major_formatter(PLAIN)
        ax.yaxis.set_minor_formatter(SOME)
        ax.set_xlabel("concurrent users (closed loop)")
        ax.grid(alpha=0.3)
    ax1.set_ylabel("throughput (requests/s, log)")
    ax1.set_title(
        f"throughput, {WAIT_MS} ms of waiting per request (dashed: Little's law)", fontsize=10
    )
    ax2.set_ylabel("latency p99 (ms, log)")
    ax2.set_title("latency p99 (dashed: Little's law, mean)", fontsize=10)
    ax1.legend(fontsize=7, loc="lower right")
    ax2.legend(fontsize=7, loc="center right")


# --------------------------------------------------------------------------- the cliff


@dataclass
class CliffJob(Job):
    """Exactly N slow `def` requests in flight (``load``: a closed loop of N users on a
    long /def-io), then probes of ``probe_paths`` at ``probe_rate`` for ``probe_s``."""

    probe_paths: tuple[str, ...] = ("/def-health", "/health")
    probe_rate: float = 10.0
    probe_s: float = 1.0

    def key(self) -> str:
        blob = json.dumps([super().key(), self.probe_paths, self.probe_rate, self.probe_s])
        return hashlib.sha1(blob.encode()).hexdigest()[:16]

    def measure(self, server) -> dict:
        """Start the N slow users; once their warm-up has put every request in flight,
        read the server's own token count (/pool), probe, and read it again."""
        boxes: dict = {}

        def run(name, load):
            boxes[name] = run_load(server.url, load, progress=False, warn=False)

        slow = threading.Thread(target=run, args=("slow", self.load), daemon=True)
        slow.start()
        time.sleep(self.load.warmup)
        # On a busy machine the last connections can lag: wait (a little) until the
        # server itself counts every slow request as holding its token.
        want, give_up = (
            min(self.load.concurrency, self.spec.threadpool),
            time.monotonic() + SETTLE_S,
        )
        while (pool_before := _pool(server.url))["borrowed"] < want and time.monotonic() < give_up:
            time.sleep(0.05)
        slow_s = _slow_s(self.load)
        probes = [
            threading.Thread(
                target=run,
                args=(
                    path,
                    LoadSpec(
                        path=path, rate=self.probe_rate, duration=self.probe_s, timeout=slow_s + 10
                    ),
                ),
                daemon=True,
            )
            for path in self.probe_paths
        ]
        for t in probes:
            t.start()
        for t in probes:
            t.join(self.probe_s + slow_s + 15)
        pool_after = _pool(server.url)
        slow.join(self.load.warmup + self.load.duration + self.load.timeout + 5)
        doc = point_doc(self, boxes["slow"])
        doc["tokens"] = self.spec.threadpool
        doc["pool"] = [
            pool_before,
            pool_after,
        ]  # the limiter's borrowed/total, as the server reports it
        doc["probes"] = {path: boxes[path].summary for path in self.probe_paths if path in boxes}
        return doc


def _pool(url: str) -> dict:
    """AnyIO's limiter as the server sees it: {"borrowed": ..., "total": ...} (an `async def`
    route, so it answers even when every token is taken)."""
    return httpx.get(url + "/pool", timeout=5, trust_env=False).json()


def _slow_s(load: LoadSpec) -> float:
    return parse_route(load.path)[1]


def cliff_points(quick: bool) -> dict[int, list[int]]:
    """Slow requests in flight to measure, per token count."""
    if quick:
        return {DEFAULT_TOKENS: [39, 40], RAISED_TOKENS: [49, 50]}  # each side of each cliff
    # Each side of each cliff, and a few points between and beyond: the latency is
    # flat on either side, so more points there would only repeat it.
    around = [30, 35, 39, 40, 41, 45, 49, 50, 51, 55, 60]
    return {DEFAULT_TOKENS: around, RAISED_TOKENS: around}


def jobs_cliff(quick: bool) -> list[Job]:
    # The slow requests must outlast the probes: each probe that finds no token
    # waits for the next slow one to end, up to slow_ms.
    slow_ms = 300 if quick else 1000
    probe_s = 0.6 if quick else 2.0  # quick: 6 probes a point, each side of the cliff
    out = []
    for tokens, ns in cliff_points(quick).items():
        for n in ns:
            load = LoadSpec(
                path=f"/def-io?ms={slow_ms}",
                concurrency=n,
                warmup=0.5,
                duration=SETTLE_S + probe_s + slow_ms / 1000 + 0.3,
                timeout=30,
            )
            out.append(
                CliffJob(
                    f"{tokens} tokens",
                    fastapi_spec(tokens),
                    load,
                    x=n,
                    probe_s=probe_s,
                    tags={"tokens": tokens},
                )
            )
    return out


def probe_p(point: dict, path: str, key: str) -> float:
    """One latency percentile (``key``: "p50", "p99"
    ...) of the probe of ``path`` in ms, NaN if none."""
    return ms((point.get("probes") or {}).get(path), key)


def draw_cliff(data: dict, fig) -> None:
    ax, pool_ax = fig.subplots(1, 2, width_ratios=[1.6, 1])
    for i, (name, pts) in enumerate(by_series(data["points"]).items()):
        color = COLORS[i % len(COLORS)]
        x = xs(pts)
        tokens = pts[0]["tokens"]
        ax.plot(
            x,
            [probe_p(p, "/def-health", "p50") for p in pts],
            "o-",
            color=color,
            label=f"def /def-health, {name}: p50",
        )
        ax.plot(
            x,
            [probe_p(p, "/def-health", "p99") for p in pts],
            "^:",
            color=color,
            alpha=0.7,
            label=f"def /def-health, {name}: p99",
        )
        ax.plot(
            x,
            [probe_p(p, "/health", "p99") for p in pts],
            "s--",
            color=color,
            alpha=0.45,
            ms=4,
            label=f"async def /health, {name}: p99",
        )
        for a in (ax, pool_ax):
            a.axvline(tokens, color=color, ls="--", lw=1)
        ax.annotate(
            f"total_tokens = {tokens}",
            (tokens, 1),
            xycoords=("data", "axes fraction"),
            fontsize=7,
            color=color,
            ha="right",
            va="top",
            rotation=90,
        )
        borrowed = [p["pool"][0]["borrowed"] if p.get("pool") else math.nan for p in pts]
        pool_ax.plot(x, borrowed, "o-", color=color, label=f"{name}: borrowed (/pool)")
        pool_ax.plot(
            x,
            [min(n, tokens) for n in x],
            "--",
            color=color,
            alpha=0.5,
            label=f"{name}: min(N, tokens)",
        )
    slow_ms = parse_route(data["points"][0]["load"]["path"])[1] * 1000 if data["points"] else 0
    ax.set_yscale("log")
    ax.set_xlabel(f"slow `def` requests in flight, N (closed loop on /def-io?ms={slow_ms:.0f})")
    ax.set_ylabel("probe latency (ms, log)")
    ax.set_title("a health check while N slow def requests run")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7)
    pool_ax.set_xlabel("slow `def` requests in flight, N")
    pool_ax.set_ylabel("tokens borrowed, as the server counts them")
    pool_ax.set_title("AnyIO's limiter during the probe")
    pool_ax.grid(alpha=0.3)
    pool_ax.legend(fontsize=7)


FASTAPI = Experiment(
    "fastapi",
    "FastAPI: def or async def? 100 ms of waiting, three ways",
    "async def + await has no slot limit; a plain def takes one of AnyIO's tokens, "
    "so it plateaus at tokens / S (400 req/s with 40); "
    "time.sleep inside async def blocks the loop: 1 / S.",
    jobs_fastapi,
    draw=draw_fastapi,
)
THREADPOOL_CLIFF = Experiment(
    "threadpool_cliff",
    "The threadpool cliff: a def health check behind N slow def requests",
    "While a token is free a def health check answers at once; when the N slow def requests "
    "hold every token it waits for one of them to end. An async def /health never notices; "
    "raising total_tokens moves the cliff.",
    jobs_cliff,
    draw=draw_cliff,
    note=False,  # no throughput bars; the theory is the token count, drawn as a line
)
