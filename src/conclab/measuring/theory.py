"""What each configuration *should* do, from Little's law.

A closed loop of N users with no think time, against a server that can serve c
requests at once, each taking S seconds:

    throughput  X = min(N, c) / S          (c slots, each finishing 1/S per second)
    latency     R = N / X                  (Little's law: N = X * R)

So below c users latency stays at S and throughput grows with N; above c,
throughput is flat at c/S and every extra user only adds queueing time.

The slots c, per route:

* sync Gunicorn worker: 1 per worker (one thread, one request);
* gthread: threads per worker;
* /io on the event loop: unbounded (awaiting costs no thread);
* /blocking-io: 1 per worker (the loop itself is blocked);
* /offload-io: the threadpool size per worker;
* CPU work (/cpu, /offload-cpu): whole cores - threads of one process share the
  GIL, so at most min(workers, cores) run Python at once.

An open loop at rate lambda: X = min(lambda, c/S). Above capacity the queue
grows without bound, and so does latency.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from urllib.parse import parse_qs, urlsplit

from ..base.specs import ServerSpec

UNBOUNDED = math.inf


@dataclass(frozen=True)
class Prediction:
    slots: float
    service_s: float
    throughput_rps: float
    latency_ms: float
    bound: str  # what limits throughput: "clients", "slots" or "cores"

    def to_dict(self):
        return {"slots": self.slots if math.isfinite(self.slots) else None, "service_s": self.service_s,
                "throughput_rps": self.throughput_rps, "latency_ms": self.latency_ms, "bound": self.bound}


def parse_route(path: str) -> tuple[str, float | None]:
    """'/io?ms=100' -> ('/io', 0.1). Routes without ``ms`` get None (no service time)."""
    parts = urlsplit(path)
    ms = parse_qs(parts.query).get("ms")
    return parts.path, (int(ms[0]) / 1000 if ms else None)


def slots(spec: ServerSpec, route: str, cores: int | None = None) -> tuple[float, str]:
    """How many requests of this route the server can work on at once, and why."""
    cores = cores or len(spec.resolved_cpus())
    cpu_slots = min(spec.workers, cores)
    if spec.kind == "wsgi":
        if route == "/cpu":
            return cpu_slots, "cores"
        per_worker = spec.threads if spec.gunicorn_class == "gthread" else 1
        return spec.workers * per_worker, "slots"
    if route in ("/cpu", "/offload-cpu"):
        return cpu_slots, "cores"
    if route == "/blocking-io":
        return spec.workers, "slots"
    if route == "/offload-io":
        return spec.workers * spec.threadpool, "slots"
    if route == "/io":
        limit = spec.limit_concurrency
        return (limit if limit else UNBOUNDED), "slots"
    raise ValueError(f"no theory for route {route!r}")


def predict(spec: ServerSpec, path: str, concurrency: int | None = None, rate: float | None = None,
            cores: int | None = None) -> Prediction | None:
    """Little's-law prediction for a closed loop (``concurrency``) or an open loop (``rate``).

    Returns None for routes without a service time (/hello, /health, /state).
    """
    route, service = parse_route(path)
    if service is None or service <= 0:
        return None
    c, why = slots(spec, route, cores)
    capacity = c / service
    if concurrency is not None:
        n = concurrency
        x = min(n, c) / service
        return Prediction(c, service, x, n / x * 1000, "clients" if n <= c else why)
    if rate is not None:
        x = min(rate, capacity)
        latency = service * 1000 if rate < capacity else math.inf
        return Prediction(c, service, x, latency, "clients" if rate < capacity else why)
    raise ValueError("give concurrency or rate")


def curve(spec: ServerSpec, path: str, concurrencies, cores: int | None = None):
    """Predicted (throughput, latency) for each concurrency, for plotting beside measurements."""
    preds = [predict(spec, path, concurrency=n, cores=cores) for n in concurrencies]
    return [p.throughput_rps if p else math.nan for p in preds], [p.latency_ms if p else math.nan for p in preds]
