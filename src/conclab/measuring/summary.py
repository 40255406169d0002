"""The summary of one load run, as a typed record: what every chart, table and grader reads.

:func:`conclab.measuring.stats.summarize` builds a :class:`Summary` from a
run's records; the definitions of its numbers (measured window, throughput,
latency, Little's law) are in that module's docstring. Each field below says
its unit, as Locust's ``StatsEntry`` does for its own.

Saved as JSON (a cached point, ``figures/data/*.json``, ``conclab bench
--json``; :func:`conclab.measuring.results.to_json` writes a Summary as its
``to_dict()``), a summary is a flat object whose keys are the field names;
``to_dict`` writes exactly the keys the lab has always written, and the
optional fields only when they are set, so files written before they existed
and files written now read back the same way:

* a key this version does not know (written by a newer version, or added by
  hand) is kept, unread, in ``extra`` and written back by ``to_dict``: reading
  and saving a file never loses anything;
* a number that was NaN (e.g. percentiles of a run with no answer) is saved
  as ``null``, and reads back as None.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class Percentiles:
    """A distribution of times, in milliseconds (NaN,
    or None once saved, when it had no samples)."""

    p50: float | None  # ms, median
    p90: float | None  # ms
    p99: float | None  # ms
    max: float | None  # ms, the slowest
    mean: float | None  # ms

    @classmethod
    def empty(cls) -> Percentiles:
        return cls(math.nan, math.nan, math.nan, math.nan, math.nan)

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d: Mapping) -> Percentiles:
        return cls(**{f.name: d.get(f.name) for f in dataclasses.fields(cls)})


@dataclass(frozen=True)
class Spread:
    """Throughput in consecutive bins of the measured window: how much a run varied."""

    bin_s: float  # s, the width of each bin
    bins_rps: list[float]  # requests/s in each bin, in order
    min: float  # requests/s, the slowest bin
    max: float  # requests/s, the fastest bin
    std: float  # requests/s, standard deviation over the bins (ddof=1)

    def to_dict(self) -> dict:
        return {
            "bin_s": self.bin_s,
            "bins_rps": list(self.bins_rps),
            "min": self.min,
            "max": self.max,
            "std": self.std,
        }

    @classmethod
    def from_dict(cls, d: Mapping) -> Spread:
        return cls(d["bin_s"], list(d["bins_rps"]), d["min"], d["max"], d["std"])


@dataclass(frozen=True)
class LittlesLaw:
    """Little's law checked on the measurement: the two numbers should agree."""

    L_measured: float  # requests, mean number in flight (integrated over the window)
    X_times_R: float  # requests, throughput x mean latency (0 when nothing completed)

    def to_dict(self) -> dict:
        return {"L_measured": self.L_measured, "X_times_R": self.X_times_R}

    @classmethod
    def from_dict(cls, d: Mapping) -> LittlesLaw:
        return cls(d["L_measured"], d["X_times_R"])


# Fields that are written only when set (None otherwise): filled by whoever knows
# them (the command line, an experiment), absent from data saved before they existed.
OPTIONAL = (
    "server_cpu_us_per_request",
    "runner",
    "server_python",
    "server_gil_enabled",
    "client_placement",
)

# Fields added after the first saved summaries, and what an older file means by their absence.
_ADDED_LATER = {
    "client_wait": None,
    "handler_ms": {},  # no handler stamps read: empty percentiles (all None)
    "outside_ms": {},
    "throughput_spread": None,
}


@dataclass(frozen=True)
class Summary:
    """What one load run measured. Built by :func:`conclab.measuring.stats.summarize`."""

    throughput_rps: float  # requests/s: successes in the measured window (edges weighed in)
    # open loop: the intended start is the schedule's (stats.latency_ns)
    latency_ms: Percentiles  # ms, from the intended start (or the send, if earlier) to the answer
    service_ms: Percentiles  # ms, from the actual send to the answer (open loop, uncorrected)
    handler_ms: Percentiles  # ms, the server's handler (X-Start-Ns to X-End-Ns, the server's clock)
    outside_ms: Percentiles  # ms, latency - handler: connect, accept, queue, transfer, client delay
    throughput_spread: Spread | None  # per 0.5 s bins; None for a wave or a window under two bins
    completed: int  # count: successful answers that ended inside the window
    sent: int  # count: requests sent, warm-up included
    measured: int  # count: requests meant to start inside the window
    errors: dict[str, int]  # count per kind ("timeout", "refused", "http_503", ...), measured
    error_count: int  # count: the sum of ``errors``
    window_s: float  # s, length of the measured window (after the warm-up)
    client_cpu: float  # fraction of one core the driver's thread used (0.5 = half a core)
    client_wait: float | None  # fraction of the run the driver waited for its core (schedstat)
    client_saturated: bool  # the driver, not the server, was the limit: it understates the server
    loop_lag_ms_p99: float  # ms, p99 of how late the driver's loop woke from a 10 ms sleep
    send_lag_ms_p99: float  # ms, p99 of how late requests were sent after their intended start
    mean_in_flight: float  # requests, time-averaged number in flight in the window (Little's L)
    littles_law: LittlesLaw  # L measured beside X x R
    worker_pids: list[int]  # process ids that answered (X-Worker-Pid), sorted
    threads: int  # count of distinct (pid, X-Thread) pairs that answered
    interrupted: bool  # stopped by Ctrl-C: partial numbers
    failed: str | None  # why the run stopped early (the server gone), or None
    dropped_records: int  # count: requests not recorded (over the driver's max_records)
    # Optional: None unless whoever ran the server filled them in.
    server_cpu_us_per_request: float | None = None  # us of server CPU (all processes) per answer
    runner: str | None = None  # the program that served: "gunicorn", "uvicorn", "granian", ...
    server_python: str | None = None  # the server interpreter's version, e.g. "3.13.1"
    server_gil_enabled: bool | None = None  # the GIL, read from the server (False: free-threaded)
    client_placement: str | None = None  # where the driver ran: "pinned to core 1", "unpinned: ..."
    # Keys of a saved summary this version does not know, kept to be written back.
    extra: dict[str, Any] = field(default_factory=dict, repr=False, compare=False)

    def __post_init__(self):
        # its own copy (a plain dict: it pickles)
        object.__setattr__(self, "extra", dict(self.extra))

    def to_dict(self) -> dict:
        """A plain, JSON-ready dict: the keys as saved ever
        since, optional ones when set, then ``extra``."""
        out: dict[str, Any] = {}
        for f in dataclasses.fields(self):
            value = getattr(self, f.name)
            if f.name == "extra" or (f.name in OPTIONAL and value is None):
                continue
            out[f.name] = value.to_dict() if hasattr(value, "to_dict") else value
        out.update(self.extra)
        return out

    @classmethod
    def from_dict(cls, d: Mapping) -> Summary:
        """A summary back from its dict (as saved); unknown keys go to ``extra``."""
        names = {f.name for f in dataclasses.fields(cls)} - {"extra"}
        kw: dict[str, Any] = {**_ADDED_LATER, **{name: d[name] for name in names if name in d}}
        for name in ("latency_ms", "service_ms", "handler_ms", "outside_ms"):
            kw[name] = Percentiles.from_dict(kw[name])
        if kw.get("throughput_spread") is not None:
            kw["throughput_spread"] = Spread.from_dict(kw["throughput_spread"])
        kw["littles_law"] = LittlesLaw.from_dict(kw["littles_law"])
        kw["errors"] = dict(kw["errors"])
        kw["worker_pids"] = list(kw["worker_pids"])
        return cls(**kw, extra={k: v for k, v in d.items() if k not in names})

    def replace(self, **changes) -> Summary:
        """A copy with some fields changed (a Summary never changes once made)."""
        return dataclasses.replace(self, **changes)
