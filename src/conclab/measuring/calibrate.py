"""The load driver's own ceiling on this machine (`conclab calibrate`)."""

from __future__ import annotations

from ..base.cores import placement
from ..base.specs import LoadSpec, ServerSpec
from ..processes.launcher import serve
from .driver import run_load

UVICORN = ServerSpec("asgi")


def calibrate(duration: float = 3.0) -> dict[str, float]:
    """`conclab calibrate`: the driver's own ceiling on this machine, per transport.

    /hello costs the server almost nothing, so every client here runs flat out:
    the throughput it reaches is the most it can measure. A real run whose
    throughput comes near that ceiling is measuring the client, not the server.
    """
    with serve(UVICORN) as server:
        print(f"{placement()}; {UVICORN.label} on cores {list(UVICORN.resolved_cpus())}")
        print(
            f"{'transport':<26}{'users':>6}{'req/s':>10}"
            f"{'p50 ms':>9}{'p99 ms':>9}{'client CPU':>12}"
        )
        best = {}
        for transport in ("aiohttp", "httpx"):
            name = (
                "httpx + aiohttp transport" if transport == "aiohttp" else "httpx default transport"
            )
            for n in (10, 100):
                load = LoadSpec(
                    path="/hello",
                    concurrency=n,
                    duration=duration,
                    warmup=min(0.5, duration),
                    transport=transport,
                )
                s = run_load(server.url, load, progress=False, warn=False).summary
                lat = s.latency_ms
                print(
                    f"{name:<26}{n:>6}{s.throughput_rps:>10.0f}{lat.p50:>9.1f}{lat.p99:>9.1f}{s.client_cpu:>11.0%}"
                )
                best[name] = max(best.get(name, 0.0), s.throughput_rps)
    print()
    for name, rps in best.items():
        print(f"ceiling of {name}: about {rps:,.0f} req/s")
    print(
        "Keep real runs well below the ceiling: a client "
        "near 100% CPU measures itself, not the server."
    )
    return best
