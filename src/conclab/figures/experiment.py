"""The experiment machinery: named sweeps (server specs x routes x load), each one a figure.

    conclab charts                 # measure every experiment, write figures/*.png
    conclab charts --only gil      # one
    conclab charts --replot        # redraw from figures/data/*.json, no measuring

Each measured point is cached in ``results/<experiment>/<key>.json``, keyed by its
server spec and load, so an interrupted sweep resumes where it stopped and a
re-run only redraws. The assembled data of each figure is kept in
``figures/data/<name>.json`` (committed with the figure), so ``--replot`` works
on a fresh clone. ``CONCLAB_QUICK=1`` selects quick mode: fewer points, shorter runs.

The experiments themselves live in topic modules (io_wait, cpu_cores, honesty ...),
listed in order by registry.py.

Before its points, every server is made ready and calibrated:

* every worker answers a request first (``wait_for_every_worker``): Gunicorn
  forks its workers at once but each imports the app on its own, so 16 workers
  take about two seconds to be ready after the server answers /health;
* what the server adds to each request is measured once per server and route
  (``calibrate``: one user, and a wave of new connections when a point is a
  wave) and goes into the theory (:class:`conclab.measuring.theory.Overhead`).
  Each point's prediction names where its overhead came from.
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import hashlib
import io
import json
import math
import os
import statistics
import threading
import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from matplotlib.figure import Figure

from ..base.cores import client_cpu
from ..base.files import atomic_write
from ..base.paths import FIGURES_DIR, quick_mode, results_root
from ..base.specs import LoadSpec, ServerSpec
from ..measuring import results
from ..measuring.background import Background
from ..measuring.driver import Interrupted, run_load, watching
from ..measuring.stats import BIN_S, latency_ns, throughput_spread
from ..measuring.summary import Summary
from ..measuring.theory import Overhead, parse_route, predict, slots
from ..processes import interpreters
from ..processes.stack import running
from .plotting import footer

TIMELINE_FIELDS = (
    "intended_ns",
    "start_ns",
    "end_ns",
    "status",
    "worker_pid",
    "thread",
    "server_start_ns",
    "server_end_ns",
)


@dataclass
class Job:
    """One measured point: a server, a load, and what to keep of it."""

    series: str
    spec: ServerSpec
    load: LoadSpec
    x: float | None = None
    keep_records: bool = False
    probe: LoadSpec | None = None  # a second, light load run alongside (e.g. /health)
    probe_after: float = 0.0  # seconds into the load before the probe starts (after the warm-up)
    sample_rss: bool = False
    tags: dict = field(default_factory=dict)

    def key(self) -> str:
        parts = [
            self.spec.to_dict(),
            self.load.to_dict(),
            self.probe.to_dict() if self.probe else None,
            self.keep_records,
            self.sample_rss,
        ]
        if self.probe_after:
            parts.append(self.probe_after)
        blob = json.dumps(parts, sort_keys=True, default=str)
        return hashlib.sha1(blob.encode()).hexdigest()[:16]


@dataclass
class Experiment:
    """One figure: what to measure (``jobs``), how to draw it (``draw``) and its size.

    Adding a figure is adding one Experiment to its topic module and naming it in
    registry.py.
    """

    name: str
    title: str
    lesson: str
    jobs: Callable[[bool], list[Job]]  # (quick) -> the points to measure
    draw: Callable[[dict, Figure], None]  # (data, fig) -> draws the panels into fig
    size: tuple[float, float] = (11, 4.6)  # inches
    extra: Callable[[bool], dict] | None = None  # (quick) -> extra data (e.g. wrk numbers)
    # print what the theory includes and what the bars mean (plotting.theory_note)
    note: bool = True
    # () -> None, or one line saying which system program is missing and how to
    # install it (e.g. processes.nginx.nginx_missing); such an experiment is skipped.
    needs: Callable[[], str | None] | None = None
    # What else it uses where the system has it, each a key of conclab.teaching.doctor's
    # GAPS ("wrk", "pss", "schedstat"): without one the figure is drawn, with less in it.
    uses: tuple[str, ...] = ()
    # False: every server of this experiment is started for it alone (a fresh
    # server's memory is the baseline, or its workers get killed), never taken
    # over from an earlier experiment of the same `conclab charts` run (ServerPool).
    shares_servers: bool = True
    # True: every point runs at the same time, each against a server of its own. For
    # points whose servers mostly wait (slow clients held past a 30 s worker timeout,
    # a loop blocked in time.sleep) and whose lesson is in stalls of tens of
    # milliseconds or more: five such points take the time of one. Needs
    # shares_servers=False.
    side_by_side: bool = False

    def missing(self) -> str | None:
        """Why this experiment cannot run on this machine, or None."""
        return self.needs() if self.needs else None


# Servers most experiments share.
SYNC = ServerSpec("wsgi", workers=4)
GTHREAD = ServerSpec("wsgi", threads=16)
UVICORN = ServerSpec("asgi")


def closed_load(
    path: str,
    n: int,
    quick: bool,
    warmup: float | None = None,
    duration: float | None = None,
    timeout: float = 30.0,
    transport: str = "aiohttp",
) -> LoadSpec:
    """The usual closed-loop point: n users, a short warm-up, then a measured window."""
    return LoadSpec(
        path=path,
        concurrency=n,
        # quick: 0.5 s, whose two halves still give the spread (measuring.stats.MIN_BIN_S)
        warmup=warmup if warmup is not None else (0.15 if quick else 0.5),
        duration=duration or (0.5 if quick else 2.0),
        timeout=timeout,
        transport=transport,
    )


# The overhead is measured on the same route, waiting at most this long (quick: less).
CALIBRATION_MAX_MS = {False: 100, True: 20}
CALIBRATION_WAVE = 32  # new connections opened at once to measure the cost of each extra one
# One user's requests fill about this long (at least 5 of them); quick mode spends less.
CALIBRATION_S = {False: 0.5, True: 0.2}


def is_wave(load: LoadSpec) -> bool:
    """Every user sends exactly one request, all at once: a wave of new connections."""
    return (
        load.concurrency is not None
        and load.requests is not None
        and load.requests == load.concurrency
    )


def calibration_path(path: str, quick: bool = False) -> str | None:
    """The route a point's overhead is measured on: the same, with ms capped (None: no theory)."""
    route, service = parse_route(path)
    if service is None or service <= 0:
        return None
    return f"{route}?ms={min(round(service * 1000), CALIBRATION_MAX_MS[quick])}"


def _quiet_run(url: str, load: LoadSpec):
    return run_load(url, load, progress=False, warn=False)


def calibration_spec(spec: ServerSpec) -> ServerSpec:
    """The server whose overhead a point of ``spec`` shares: the same, with one worker.

    A lone request meets one worker and one thread: how many other workers,
    threads or pool threads wait beside it does not change what the server adds
    to it (the worker class does: 2 threads stand for Gunicorn's gthread worker,
    one for its sync worker). So Gunicorn with 1, 2 or 4 sync workers shares one
    calibration; the interpreter, the cores and the runner still tell servers apart.
    """
    return dataclasses.replace(
        spec, workers=1, threads=min(spec.threads, 2), threadpool=40, limit_concurrency=None
    )


def wave_size(spec: ServerSpec, path: str, wave: bool) -> int:
    """How many new connections a wave calibration opens at once (1: no wave)."""
    return int(min(CALIBRATION_WAVE, slots(spec, parse_route(path)[0])[0])) if wave else 1


def calibrate(
    server, spec: ServerSpec, path: str, wave: bool = False, quick: bool = False
) -> Overhead:
    """What this server adds to a request of this route, measured once, before the points.

    One user sends a few requests back to back on the same route (waiting at
    most 100 ms, quick: 20 ms: the overhead does not grow with the wait) for about
    ``CALIBRATION_S`` seconds: the per-request
    overhead is their median latency minus the nominal wait, the first request
    (which opens the connection) left out. For a wave, ``CALIBRATION_WAVE`` new
    connections (at most the server's slots) are opened at once, three times:
    each extra one finishes later by the serial cost of accepting and setting
    it up (the median of the three). Medians, so that one stall of a shared
    machine during the calibration does not shift every prediction after it.
    """
    cal = calibration_path(path, quick)
    route, s_cal = parse_route(cal)
    n = max(5, math.ceil(CALIBRATION_S[quick] / s_cal))
    one = _quiet_run(server.url, LoadSpec(path=cal, concurrency=1, requests=n, timeout=30))
    c = one.columns()
    ok = c["error"] == ""
    lat_s = latency_ns(c["intended_ns"], c["start_ns"], c["end_ns"])[ok][1:] / 1e9
    per_request = max(0.0, float(np.median(lat_s)) - s_cal) if lat_s.size else 0.0
    source = f"measured once: 1 user, {n} x {cal}"
    per_connection = 0.0
    k = wave_size(spec, path, wave)
    if k >= 2:
        spans = [
            _quiet_run(
                server.url, LoadSpec(path=cal, concurrency=k, requests=k, timeout=30)
            ).summary.window_s
            for _ in range(3)
        ]
        per_connection = max(0.0, (statistics.median(spans) - (s_cal + per_request)) / (k - 1))
        source += f"; 3 waves of {k} new connections"
    return Overhead(per_request, per_connection, source)


def wait_for_every_worker(server, path: str = "/io?ms=100", timeout: float = 30.0) -> set[int]:
    """Send waves of short waits until every worker process has answered one.

    A sync worker holds its request, so a wave of one request per worker can
    only be answered by that many workers: once every pid has answered, every
    worker has booted (imported the app) and the measurement can start. A worker
    that serves many requests at once gets a bigger wave, so its siblings get some.
    A server of one process is ready once it answers /health, which serve() waited for.
    """
    want = set(server.worker_pids)
    if len(want) <= 1:  # one process: it answered the start-up's /health, so it has booted
        return want
    n = len(want) if server.spec.one_at_a_time else 8 * len(want)
    seen: set[int] = set()
    deadline = time.monotonic() + timeout
    while want and not want <= seen and time.monotonic() < deadline:
        r = _quiet_run(server.url, LoadSpec(path=path, concurrency=n, requests=n, timeout=30))
        seen |= {int(pid) for pid in r.columns()["worker_pid"] if pid}
    if want and not want <= seen:
        warnings.warn(
            f"{len(want - seen)} of {len(want)} workers never answered within {timeout:g} s",
            stacklevel=2,
        )
    return seen


def point_doc(
    job: Job, result, probe_result=None, rss=None, overhead: Overhead | None = None
) -> dict:
    s = result.summary
    pred = predict(
        job.spec,
        job.load.path,
        concurrency=job.load.concurrency,
        rate=job.load.rate,
        requests=job.load.requests,
        overhead=overhead,
    )
    doc = {
        "series": job.series,
        "x": job.x,
        "tags": job.tags,
        "spec": job.spec.to_dict(),
        "label": job.spec.label,
        "load": job.load.to_dict(),
        "summary": s,
        "prediction": pred.to_dict() if pred else None,
        "status": "interrupted"
        if result.interrupted
        else "failed"
        if result.failed
        else "complete",
    }
    if job.keep_records:
        cols = result.columns()
        doc["records"] = {name: [int(v) for v in cols[name]] for name in TIMELINE_FIELDS}
        doc["records"]["t0_ns"] = int(result.started_ns)
    if probe_result is not None:
        doc["probe"] = probe_result.summary
    if rss is not None:
        doc["rss_bytes"] = rss
    return doc


def read_point(doc: dict) -> dict:
    """A saved point (JSON) with its summaries (``summary``, ``probe``, ``probes``) typed."""
    doc = dict(doc)
    for key in ("summary", "probe"):
        if isinstance(doc.get(key), dict):
            doc[key] = Summary.from_dict(doc[key])
    if isinstance(doc.get("probes"), dict):
        doc["probes"] = {path: Summary.from_dict(s) for path, s in doc["probes"].items()}
    return doc


def read_data(path: str | Path) -> dict:
    """An experiment's saved data (``figures/data/<name>.json``), its points' summaries typed."""
    data = results.read_json(path)
    data["points"] = [read_point(p) for p in data["points"]]
    return data


STEADY_WINDOWS = 3  # the warm-up ends once this many successive short windows ...
STEADY_TOLERANCE = 0.10  # ... each count within 10% of their mean (bounded by the load's warm-up)
SPREAD_TARGET = 0.03  # a point stops once its throughput's standard error is under 3% ...
MIN_WINDOW_S = 2 * BIN_S  # ... over at least two spread bins (bounded by the load's duration)


class SteadyStop:
    """Spend on a closed-loop point only the time its accuracy needs.

    A watcher of the run (conclab.measuring.driver.watching), every 0.1 s:

    * **warm-up**: the run is steady once ``STEADY_WINDOWS`` successive windows
      (each two mean latencies long, at least 0.1 s) complete the same number of
      requests within ``STEADY_TOLERANCE``; the measured window starts there. The
      load's ``warmup`` is the longest it may take.
    * **measuring**: the point stops once the window holds at least
      ``MIN_WINDOW_S`` and the standard error of its throughput over the 0.5 s
      spread bins is under ``SPREAD_TARGET``, or once the window is the load's
      ``duration`` long, whichever comes first: a noisy point keeps measuring.

    What it decided is kept in the point (``adaptive``).
    """

    def __init__(self, load: LoadSpec):
        self.load = load
        self.steady_ns: int | None = None
        self.decided: dict = {}
        # Read incrementally: the callback shares the GIL with the driver, so it stays short.
        self.seen = 0
        self.ends: list[int] = []  # end of each answered request
        self.latency_ns = 0  # their summed latency

    @staticmethod
    def applies(job: Job) -> bool:
        """Plain closed-loop points for a duration; not points with probes, memory
        samples or own timing, nor points whose every request is drawn over time
        (``keep_records``: the figure shows the whole run)."""
        load = job.load
        return (
            not hasattr(job, "measure")
            and not job.probe
            and not job.sample_rss
            and not job.keep_records
            and load.concurrency is not None
            and load.duration is not None
            and load.requests is None
        )

    def __call__(self, progress) -> None:
        t0 = progress.started_ns
        if progress.finished or not t0 or "stopped_by" in self.decided:
            return
        now = time.monotonic_ns()
        new = progress.records[self.seen :]
        self.seen += len(new)
        for r in new:
            if r[3] == 200 and not r[4]:
                self.ends.append(r[2])
                self.latency_ns += r[2] - r[1]
        if self.steady_ns is None and not self._find_steady(progress, t0, now):
            return
        window_ns = now - self.steady_ns
        if window_ns >= self.load.duration * 1e9:
            self._stop(progress, "duration", window_ns)
            return
        if window_ns < MIN_WINDOW_S * 1e9 or not self.ends:
            return
        ends = np.asarray(self.ends, dtype=np.int64)
        spread = throughput_spread(
            ends, self.steady_ns, now, ramp_ns=self.latency_ns / len(self.ends)
        )
        if spread:
            rates = np.asarray(spread.bins_rps)
            if (
                rates.mean() > 0
                and spread.std / rates.mean() / math.sqrt(rates.size) <= SPREAD_TARGET
            ):
                self._stop(progress, "spread", window_ns)

    def _find_steady(self, progress, t0, now) -> bool:
        warm_end = t0 + int(self.load.warmup * 1e9)
        if self.ends:
            width = max(int(2 * self.latency_ns / len(self.ends)), 100_000_000)
            whole = int((min(now, warm_end + width * STEADY_WINDOWS) - t0) // width)
            counts = np.bincount(
                [(e - t0) // width for e in self.ends if e < t0 + whole * width], minlength=whole
            )
            for k in range(max(whole - STEADY_WINDOWS + 1, 0)):
                c = counts[k : k + STEADY_WINDOWS]
                if c.min() > 0 and c.max() - c.min() <= STEADY_TOLERANCE * c.mean():
                    self.steady_ns = min(t0 + k * width, warm_end)
                    break
        if self.steady_ns is None and now >= warm_end:
            self.steady_ns = warm_end
        if self.steady_ns is None:
            return False
        progress.steady_from(self.steady_ns)
        self.decided["warmup_s"] = round((self.steady_ns - t0) / 1e9, 3)
        return True

    def _stop(self, progress, why: str, window_ns: int) -> None:
        self.decided.update(stopped_by=why, window_s=round(window_ns / 1e9, 3))
        progress.stop()


def _run_job(job: Job, url: str, server, overhead: Overhead | None = None) -> dict:
    """Measure one job against a running server."""
    if hasattr(job, "measure"):  # a job that measures in its own way (e.g. front.SlowClientsJob)
        return job.measure(server)
    probe_box = {}
    rss_box = {}
    stop = threading.Event()

    def probe():
        if job.probe_after and stop.wait(job.probe_after):
            return
        probe_box["r"] = run_load(url, job.probe, progress=False, warn=False)

    def sample():
        # Hold the load for a while and read the server's memory three times in
        # the middle: their median is the point, their range its spread.
        baseline = server.rss_bytes()
        hold_s = int(job.load.path.split("ms=")[1]) / 1000 if "ms=" in job.load.path else 1.0
        samples, waited = [], 0.0
        for at in (0.35, 0.5, 0.65):
            if stop.wait(hold_s * at - waited):
                break
            waited = hold_s * at
            samples.append(server.rss_bytes())
        rss_box["baseline"] = baseline
        if samples:
            rss_box["loaded"] = int(statistics.median(samples))
            rss_box["loaded_samples"] = samples

    helpers = []
    if job.probe:
        helpers.append(threading.Thread(target=probe, daemon=True))
    if job.sample_rss:
        helpers.append(threading.Thread(target=sample, daemon=True))
    for t in helpers:
        t.start()
    steady = SteadyStop(job.load) if SteadyStop.applies(job) else None
    try:
        with watching(steady, every=0.1) if steady else contextlib.nullcontext():
            result = run_load(url, job.load, progress=False, warn=False)
    finally:
        stop.set()
        for t in helpers:
            t.join(
                job.load.timeout + job.probe_after + (job.probe.duration or 0) + 5
                if job.probe
                else 10
            )
    doc = point_doc(job, result, probe_box.get("r"), rss_box or None, overhead)
    if steady:
        doc["adaptive"] = steady.decided
    return doc


PHASES = ("startup", "calibration", "warmup", "measuring", "extra", "drawing")


@dataclass
class Timing:
    """Where one experiment's seconds went, phase by phase and point by point.

    * startup - starting each server, waiting for every worker, and stopping it;
    * calibration - measuring each server's own overhead before its points;
    * warmup / measuring - each point's warm-up and measured window (the rest of
      the point: a job that measures in its own way counts whole as measuring);
    * extra - what an experiment measures besides its points (e.g. wrk's numbers);
    * drawing - rendering and saving the PNG.

    Cached points cost nothing and are only counted (``cached``). ``load_avg``
    keeps the machine's 1-minute load average at the start and the end: seconds
    measured beside other work are inflated, and the tables say so.
    """

    name: str
    quick: bool
    cached: int = 0
    servers: int = 0
    seconds: dict = field(default_factory=lambda: dict.fromkeys(PHASES, 0.0))
    points: list = field(default_factory=list)
    load_start: float = field(default_factory=lambda: round(os.getloadavg()[0], 2))

    @contextlib.contextmanager
    def phase(self, name: str):
        started = time.monotonic()
        try:
            yield
        finally:
            self.seconds[name] += time.monotonic() - started

    def point(self, job: Job, doc: dict, seconds: float, counted: bool = True) -> None:
        """One point's seconds; ``counted=False`` for a point that ran beside others,
        whose wall time the caller adds once for them all."""
        warm = (doc.get("adaptive") or {}).get(
            "warmup_s", 0.0 if hasattr(job, "measure") else job.load.warmup
        )
        warm = min(warm, seconds)
        if counted:
            self.seconds["warmup"] += warm
            self.seconds["measuring"] += seconds - warm
        self.points.append(
            {
                "series": job.series,
                "x": job.x,
                "warmup_s": round(warm, 3),
                "measuring_s": round(seconds - warm, 3),
            }
        )

    def to_dict(self) -> dict:
        seconds = {k: round(v, 2) for k, v in self.seconds.items()}
        return {
            "name": self.name,
            "quick": self.quick,
            "total_s": round(sum(self.seconds.values()), 2),
            "seconds": seconds,
            "servers": self.servers,
            "measured": len(self.points),
            "cached": self.cached,
            "points": self.points,
            "load_avg": {"start": self.load_start, "end": round(os.getloadavg()[0], 2)},
        }


def _calibration_key(job: Job, quick: bool = False):
    if hasattr(job, "measure") or calibration_path(job.load.path) is None:
        return None
    return calibration_path(job.load.path, quick), is_wave(job.load)


# (calibration spec, calibration path, wave size, quick) -> Overhead, for every experiment
# of this process
_CALIBRATIONS: dict = {}


def _calibrate_group(server, spec: ServerSpec, group, quick: bool = False) -> dict:
    """One calibration per route (and shape) the group's points need a theory for.

    A server's overhead is a property of its spec and the machine, not of one
    start: experiments that start the same spec again (wsgi_vs_asgi, timelines
    and client_ceiling all start Uvicorn), and servers that differ only in how
    many workers or threads wait beside a lone request (``calibration_spec``),
    share the first calibration of this process. Its ``source`` still says how
    it was measured.
    """
    out = {}
    for job in group:
        key = _calibration_key(job, quick)
        if key is None or key in out:
            continue
        try:
            predict(spec, job.load.path, concurrency=1)
        except ValueError:  # no theory for this route
            continue
        shared = (calibration_spec(spec), key[0], wave_size(spec, job.load.path, key[1]), quick)
        if shared not in _CALIBRATIONS:
            _CALIBRATIONS[shared] = calibrate(server, spec, job.load.path, key[1], quick)
        out[key] = _CALIBRATIONS[shared]
    return out


class _Stops:
    """Servers stopping in the background while the next one starts.

    Stopping a server takes 0.2 to 0.5 s, mostly Gunicorn's master waiting for its
    workers to exit, and starting the next takes about as long: the two overlap.
    Nothing is measured beside a server still stopping: ``wait()`` comes before
    every calibration, point and extra measurement.
    """

    def __init__(self):
        self.pending: list[Background] = []

    def later(self, stack: contextlib.ExitStack) -> None:
        self.pending.append(Background(stack.close, name="conclab-stop").start())

    def wait(self) -> None:
        while self.pending:
            stopping = self.pending.pop(0)
            stopping.wait()
            stopping.result()


_STOPS = _Stops()


def _group_by_server(jobs):
    groups: dict = {}
    for job in jobs:
        groups.setdefault(job.spec, []).append(job)
    return groups


class ServerPool:
    """Servers kept running from one experiment to the next of a `conclab charts` run.

    Five figures start the same Uvicorn server, four the same one-worker
    Gunicorn: each server is started once, by the first experiment of ``plan``
    that needs it, and stopped after the last one. Experiments with
    ``shares_servers=False`` start their own. Use as a context manager: leaving
    it stops whatever still runs.
    """

    def __init__(self, plan: list[Experiment], quick: bool):
        self.quick = quick
        self.left: dict = {}  # spec -> experiments of the plan still to use it
        for exp in plan:
            for spec in self.specs(exp):
                self.left[spec] = self.left.get(spec, 0) + 1
        self.running: dict = {}  # spec -> (its ExitStack, the server)

    def specs(self, exp: Experiment) -> set:
        return {job.spec for job in exp.jobs(self.quick)} if exp.shares_servers else set()

    def get(self, spec):
        """(server, started now?): the running server of ``spec``, started if need be."""
        if spec in self.running:
            return self.running[spec][1], False
        stack = contextlib.ExitStack()
        self.running[spec] = (stack, stack.enter_context(running(spec)))
        return self.running[spec][1], True

    def finished(self, exp: Experiment) -> None:
        """``exp`` is done: stop the servers no later experiment of the plan needs."""
        for spec in self.specs(exp):
            self.left[spec] = self.left.get(spec, 1) - 1
            if self.left[spec] <= 0 and spec in self.running:
                _STOPS.later(self.running.pop(spec)[0])

    def close(self) -> None:
        while self.running:
            self.running.popitem()[1][0].close()
        _STOPS.wait()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


def _side_by_side(
    jobs: list[Job], clock: Timing, bar, quick: bool = False
) -> list[tuple[Job, dict]]:
    """Start a server for each job, run every job at once, stop the servers: [(job, doc)].

    The points' seconds are their own; the experiment's measuring time is the wall
    time of them all. A Ctrl-C stops the servers, which ends the points in flight
    (none is kept: each is a whole run of its own, to be measured again).
    """
    specs = [job.spec for job in jobs]
    with contextlib.ExitStack() as stack:
        with clock.phase("startup"):
            servers = [stack.enter_context(running(spec)) for spec in specs]
            clock.servers += len(servers)
            for spec, server in zip(specs, servers, strict=True):
                if isinstance(spec, ServerSpec):
                    wait_for_every_worker(server)
            _STOPS.wait()
        with clock.phase("calibration"):  # one server at a time, as for any point
            overheads = [
                _calibrate_group(server, spec, [job], quick).get(_calibration_key(job, quick))
                if isinstance(spec, ServerSpec)
                else None
                for job, spec, server in zip(jobs, specs, servers, strict=True)
            ]
        bar.set_postfix_str(f"{len(jobs)} points side by side", refresh=True)

        done: dict = {}  # job index -> (doc, seconds)

        def run(i, job, server):
            started = time.monotonic()
            doc = _run_job(job, server.url, server, overheads[i])
            doc["summary"] = interpreters.record(doc["summary"], server)
            done[i] = doc, time.monotonic() - started

        started = time.monotonic()
        # Daemon threads: after a Ctrl-C the stopped servers end their runs, and
        # nothing waits for them to go.
        threads = [
            Background(functools.partial(run, i, job, server), name=f"conclab-point-{i}").start()
            for i, (job, server) in enumerate(zip(jobs, servers, strict=True))
        ]
        for thread in threads:
            thread.wait()
            thread.result()
        wall = time.monotonic() - started
        for i, job in enumerate(jobs):
            clock.point(job, *done[i], counted=False)
        clock.seconds["measuring"] += wall
        _STOPS.later(stack.pop_all())  # they stop while the next server starts
    return [(job, done[i][0]) for i, job in enumerate(jobs)]


def measure(
    exp: Experiment,
    quick: bool | None = None,
    results_dir: Path | None = None,
    fresh: bool = False,
    progress: bool = True,
    pool: ServerPool | None = None,
) -> dict:
    """Run (or resume) an experiment's jobs; return its assembled data."""
    from tqdm.auto import tqdm

    quick = quick_mode() if quick is None else quick
    jobs = exp.jobs(quick)
    if fresh:  # measuring afresh (e.g. after a run disturbed by the machine) calibrates afresh too
        _CALIBRATIONS.clear()
    cache = Path(results_dir or results_root()) / exp.name
    cache.mkdir(parents=True, exist_ok=True)
    points = {}
    todo = []
    for job in jobs:
        path = cache / f"{job.key()}.json"
        if path.exists() and not fresh:
            with contextlib.suppress(ValueError, OSError, KeyError, TypeError):
                doc = results.read_json(path)
                if doc.get("status") == "complete":
                    points[job.key()] = read_point(doc)
                    continue
        todo.append(job)
    bar = tqdm(
        total=len(jobs),
        initial=len(jobs) - len(todo),
        desc=exp.name,
        unit="point",
        disable=not progress,
    )
    clock = Timing(exp.name, quick, cached=len(jobs) - len(todo))
    try:
        if exp.side_by_side and todo:
            for job, doc in _side_by_side(todo, clock, bar, quick):
                results.write_json(cache / f"{job.key()}.json", doc)
                points[job.key()] = doc
                bar.update(1)
            todo = []
        for spec, group in _group_by_server(todo).items():
            with contextlib.ExitStack() as stack:
                with clock.phase("startup"):
                    pooled = pool is not None and exp.shares_servers
                    if pooled:
                        server, started = pool.get(spec)
                    else:
                        server, started = stack.enter_context(running(spec)), True
                    clock.servers += started
                    if started and isinstance(spec, ServerSpec):
                        bar.set_postfix_str(
                            f"{spec.label}: booting every worker, calibrating", refresh=True
                        )
                        wait_for_every_worker(server)
                    _STOPS.wait()
                with clock.phase("calibration"):
                    overheads = (
                        _calibrate_group(server, spec, group, quick)
                        if isinstance(spec, ServerSpec)
                        else {}
                    )
                for job in group:
                    bar.set_postfix_str(f"{job.series} x={job.x}", refresh=True)
                    overhead = overheads.get(_calibration_key(job, quick))
                    started = time.monotonic()
                    try:
                        doc = _run_job(job, server.url, server, overhead)
                    except Interrupted as stop:
                        # Keep what was measured, marked; the re-run redoes this point.
                        doc = point_doc(job, stop.result, overhead=overhead)
                        results.write_json(cache / f"{job.key()}.json", doc)
                        raise
                    doc["summary"] = interpreters.record(
                        doc["summary"], server
                    )  # the server's Python and GIL
                    clock.point(job, doc, time.monotonic() - started)
                    results.write_json(cache / f"{job.key()}.json", doc)
                    points[job.key()] = doc
                    bar.update(1)
                if not pooled:  # it stops while the next server starts (_Stops)
                    _STOPS.later(stack.pop_all())
        with clock.phase("startup"):
            if pool is not None:
                pool.finished(exp)
            else:  # nothing else of this run to overlap with
                _STOPS.wait()
    finally:
        bar.close()
    data = {
        "name": exp.name,
        "title": exp.title,
        "lesson": exp.lesson,
        "quick": quick,
        "machine": results.machine(),
        "time": results.now_iso(),
        "client_cpu": client_cpu(),
        "points": [points[j.key()] for j in jobs if j.key() in points],
    }
    if exp.extra:
        with clock.phase("startup"):
            _STOPS.wait()
        with clock.phase("extra"):
            data["extra"] = exp.extra(quick)
    data["timing"] = clock.to_dict()
    return data


def figure(exp: Experiment, data: dict) -> Figure:
    """The experiment's figure for its data: panels, title and the machine footer."""
    fig = Figure(figsize=exp.size, layout="constrained")
    fig.get_layout_engine().set(rect=(0, 0.05, 1, 0.95))  # room for the footer (two lines)
    exp.draw(data, fig)
    fig.suptitle(data["title"], fontsize=11)
    footer(fig, data, note=exp.note)
    return fig


def save_png(exp: Experiment, data: dict, png: Path) -> Path:
    """Draw an experiment's figure and save it (atomically) as a PNG."""
    buf = io.BytesIO()
    figure(exp, data).savefig(buf, format="png", dpi=110)
    atomic_write(Path(png), buf.getvalue())
    return png


TIMING_FILE = "timing.json"


def save_timing(out_dir: Path, timing: dict) -> Path:
    """Keep an experiment's timing in ``<out>/data/timing.json``,
    beside its data, by mode and name."""
    path = Path(out_dir) / "data" / TIMING_FILE
    doc = {}
    if path.exists():
        with contextlib.suppress(ValueError, OSError):
            doc = results.read_json(path)
    doc.setdefault("quick" if timing["quick"] else "full", {})[timing["name"]] = timing
    results.write_json(path, doc)
    return path


def run_experiment(
    exp: Experiment,
    out_dir: Path = FIGURES_DIR,
    results_dir: Path | None = None,
    quick: bool | None = None,
    replot: bool = False,
    fresh: bool = False,
    progress: bool = True,
    pool: ServerPool | None = None,
) -> Path:
    """Measure (unless ``replot``) and draw one experiment; return the PNG path.

    A measured experiment's timing (see :class:`Timing`) goes to ``<out>/data/timing.json``.
    """
    out_dir = Path(out_dir)
    data_path = out_dir / "data" / f"{exp.name}.json"
    if replot:
        if not data_path.exists():
            raise FileNotFoundError(
                f"no saved results for {exp.name!r} at {data_path}: "
                f"run `make charts ONLY={exp.name}` first"
            )
        return save_png(exp, read_data(data_path), out_dir / f"{exp.name}.png")
    data = measure(
        exp, quick=quick, results_dir=results_dir, fresh=fresh, progress=progress, pool=pool
    )
    timing = data.pop("timing")
    results.write_json(data_path, data)
    started = time.monotonic()
    png = save_png(exp, data, out_dir / f"{exp.name}.png")
    timing["seconds"]["drawing"] = round(time.monotonic() - started, 2)
    timing["total_s"] = round(sum(timing["seconds"].values()), 2)
    save_timing(out_dir, timing)
    return png


def timing_table(timings: dict) -> str:
    """A markdown table of seconds per figure and phase, from ``{name: timing}`` (one mode).

    The last row sums the figures; the last column says how many servers were
    started and how many points were measured (and how many came from the cache).
    """
    head = ["figure", "total s", *(f"{p} s" for p in PHASES), "servers", "points (cached)"]
    rows = [head, ["---"] * len(head)]
    total = dict.fromkeys(["total_s", *PHASES], 0.0)
    servers = measured = cached = 0
    for name, t in timings.items():
        rows.append(
            [
                name,
                f"{t['total_s']:.1f}",
                *(f"{t['seconds'].get(p, 0):.1f}" for p in PHASES),
                str(t["servers"]),
                f"{t['measured']} ({t['cached']})",
            ]
        )
        total["total_s"] += t["total_s"]
        for p in PHASES:
            total[p] += t["seconds"].get(p, 0)
        servers, measured, cached = (
            servers + t["servers"],
            measured + t["measured"],
            cached + t["cached"],
        )
    if len(timings) > 1:
        rows.append(
            [
                "**all**",
                f"**{total['total_s']:.1f}**",
                *(f"{total[p]:.1f}" for p in PHASES),
                str(servers),
                f"{measured} ({cached})",
            ]
        )
    return "\n".join("| " + " | ".join(r) + " |" for r in rows)


def read_timing(out_dir: Path = FIGURES_DIR) -> dict:
    """``{"quick": {name: timing}, "full": {...}}`` from
    ``<out>/data/timing.json`` ({} when absent)."""
    path = Path(out_dir) / "data" / TIMING_FILE
    return results.read_json(path) if path.exists() else {}
