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
  GIL, so at most min(workers, cores) run Python at once;
* /process-cpu: every core (each worker has a pool of one process per core,
  each process its own GIL);
* /hash-cpu: pool threads in C code that lets go of the GIL, min(threads, cores);
* /def-io (FastAPI's plain `def`): AnyIO's thread tokens per worker.

An open loop at rate lambda: X = min(lambda, c/S). Above capacity the queue
grows without bound, and so does latency.

"Cores" are the usable cores: the CPUs the server may run on (its affinity)
and the CPU time its cgroup allows (``cpu.max``), whichever is smaller - so the
prediction is true on an 8-core laptop and in a 1-CPU container alike.

What the server adds. S above is the handler's nominal time (``ms``). A real
request also spends time outside it: connecting, being accepted and parsed,
the answer's way back. An :class:`Overhead`, *measured once per server
configuration* before the sweep (one user: o = mean latency - S; a wave of new
connections at once: the serial cost of each extra one), turns S into S + o:

    closed loop          X = min(N, c) / (S + o)
    one wave of N        all N sent at once, one request each:
                         makespan = ceil(N / c) (S + o) + (min(N, c) - 1) k
                         X = N / makespan        (k: cost per extra new connection)

The overhead is never fitted to the point it predicts: a theory that can be
made to match anything checks nothing.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from urllib.parse import parse_qs, urlsplit

from ..base.cores import usable_cores
from ..base.specs import ServerSpec
from ..processes.nginx import FrontSpec

UNBOUNDED = math.inf


@dataclass(frozen=True)
class Overhead:
    """What a server adds to each request beyond the handler's nominal time.

    Measured once per server configuration, by a calibration run, never fitted
    to the point it predicts. ``per_request_s``: mean latency at one user minus
    the nominal service time. ``per_connection_s``: in a wave of requests sent
    at once, each on a new connection, how much later each extra one finishes
    (accepting and setting up connections is serial work). ``source`` says how
    it was measured, for the figure.
    """

    per_request_s: float = 0.0
    per_connection_s: float = 0.0
    source: str = ""

    def to_dict(self) -> dict:
        return {
            "per_request_ms": self.per_request_s * 1000,
            "per_connection_ms": self.per_connection_s * 1000,
            "source": self.source,
        }


NO_OVERHEAD = Overhead()


@dataclass(frozen=True)
class Prediction:
    slots: float
    service_s: float  # the handler's nominal time (S)
    throughput_rps: float
    latency_ms: float  # closed loop: mean; one wave: until the last answer
    bound: str  # what limits throughput: "clients", "slots" or "cores"
    overhead: Overhead = NO_OVERHEAD
    ideal_throughput_rps: float | None = None  # the same law with no overhead (o = 0)

    def to_dict(self) -> dict:
        return {
            "slots": self.slots if math.isfinite(self.slots) else None,
            "service_s": self.service_s,
            "throughput_rps": self.throughput_rps,
            "latency_ms": self.latency_ms,
            "bound": self.bound,
            "overhead": self.overhead.to_dict(),
            "ideal_throughput_rps": self.ideal_throughput_rps
            if self.ideal_throughput_rps is not None
            else self.throughput_rps,
        }


def parse_route(path: str) -> tuple[str, float | None]:
    """'/io?ms=100' -> ('/io', 0.1). Routes without ``ms`` get None (no service time)."""
    parts = urlsplit(path)
    ms = parse_qs(parts.query).get("ms")
    return parts.path, (int(ms[0]) / 1000 if ms else None)


def server_cores(spec) -> int:
    """Cores the server's CPU work can use: its own CPUs, capped by the usable cores."""
    return max(1, min(len(spec.resolved_cpus()), usable_cores()))


def free_threaded(spec) -> bool:
    """True when the spec's interpreter is a free-threaded build (asked of the interpreter)."""
    if getattr(spec, "python", None) is None:
        return False
    from ..processes.interpreters import interpreter

    return interpreter(spec.python).free_threaded


def slots(spec: ServerSpec, route: str, cores: int | None = None) -> tuple[float, str]:
    """How many requests of this route the server can work on at once, and why."""
    if isinstance(spec, FrontSpec):  # nginx in front of several app servers
        per_instance, why = slots(spec.app, route, cores)
        if why == "cores":  # separate instances on one machine still share its cores
            return min(spec.instances * spec.app.workers, cores or server_cores(spec.app)), why
        return per_instance * spec.instances, why
    cores = cores or server_cores(spec)
    cpu_slots = min(spec.workers, cores)
    if spec.interface == "wsgi":
        if route == "/cpu":
            return cpu_slots, "cores"
        per_worker = spec.threads if spec.gunicorn_class == "gthread" else 1
        return spec.workers * per_worker, "slots"
    if route == "/offload-cpu" and free_threaded(
        spec
    ):  # no GIL: the pool's threads compute side by side
        return min(spec.workers * spec.threadpool, cores), "cores"
    if route in ("/cpu", "/offload-cpu"):
        return cpu_slots, "cores"
    if route == "/process-cpu":  # one process per core in each worker's pool
        return cores, "cores"
    if route == "/hash-cpu":  # threads that let go of the GIL while hashing
        return min(spec.workers * spec.threadpool, cores), "cores"
    if route == "/blocking-io":
        return spec.workers, "slots"
    if route in ("/offload-io", "/def-io"):  # the app's pool, or AnyIO's tokens (THREADPOOL_SIZE)
        return spec.workers * spec.threadpool, "slots"
    if route == "/io":
        limit = spec.limit_concurrency
        return (limit if limit else UNBOUNDED), "slots"
    raise ValueError(f"no theory for route {route!r}")


def predict(
    spec: ServerSpec,
    path: str,
    concurrency: int | None = None,
    rate: float | None = None,
    cores: int | None = None,
    requests: int | None = None,
    overhead: Overhead | None = None,
) -> Prediction | None:
    """Little's-law prediction for a closed loop (``concurrency``) or an open loop (``rate``).

    ``requests`` equal to ``concurrency`` is one wave: every user sends one request,
    all at once, each on a new connection. ``overhead`` (measured, see
    :class:`Overhead`) is added to the nominal service time.
    Returns None for routes without a service time (/hello, /health, /state).
    """
    route, service = parse_route(path)
    if service is None or service <= 0:
        return None
    c, why = slots(spec, route, cores)
    o = overhead or NO_OVERHEAD
    s_eff = service + max(o.per_request_s, 0.0)
    if concurrency is not None:
        n = concurrency
        if requests is not None and requests == n:
            k = min(n, c)
            rounds = math.ceil(n / c) if math.isfinite(c) else 1
            makespan = rounds * s_eff + (k - 1) * max(o.per_connection_s, 0.0)
            ideal = n / (rounds * service)
            return Prediction(
                c, service, n / makespan, makespan * 1000, "clients" if n <= c else why, o, ideal
            )
        x = min(n, c) / s_eff
        return Prediction(
            c, service, x, n / x * 1000, "clients" if n <= c else why, o, min(n, c) / service
        )
    if rate is not None:
        capacity = c / s_eff
        x = min(rate, capacity)
        latency = s_eff * 1000 if rate < capacity else math.inf
        return Prediction(
            c, service, x, latency, "clients" if rate < capacity else why, o, min(rate, c / service)
        )
    raise ValueError("give concurrency or rate")
