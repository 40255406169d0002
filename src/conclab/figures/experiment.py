"""The experiment machinery: named sweeps (server specs x routes x load) whose results become one figure.

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
import hashlib
import io
import json
import math
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
from ..base.paths import FIGURES_DIR, quick_mode, results_root
from ..base.specs import LoadSpec, ServerSpec
from ..measuring import results
from ..measuring.driver import ClientSaturatedWarning, Interrupted, run_load
from ..measuring.theory import Overhead, parse_route, predict, slots
from ..processes import interpreters
from ..processes.stack import serve
from .plotting import footer

TIMELINE_FIELDS = ("intended_ns", "start_ns", "end_ns", "status", "worker_pid", "thread", "server_start_ns", "server_end_ns")


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
        parts = [self.spec.to_dict(), self.load.to_dict(), self.probe.to_dict() if self.probe else None,
                 self.keep_records, self.sample_rss]
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
    note: bool = True  # print what the theory includes and what the bars mean (plotting.theory_note)
    # () -> None, or one line saying which system program is missing and how to
    # install it (e.g. processes.nginx.nginx_missing); such an experiment is skipped.
    needs: Callable[[], str | None] | None = None

    def missing(self) -> str | None:
        """Why this experiment cannot run on this machine, or None."""
        return self.needs() if self.needs else None


# Servers most experiments share.
SYNC = ServerSpec("wsgi", workers=4)
GTHREAD = ServerSpec("wsgi", threads=16)
UVICORN = ServerSpec("asgi")


def closed_load(path: str, n: int, quick: bool, warmup: float | None = None, duration: float | None = None,
                timeout: float = 30.0, transport: str = "aiohttp") -> LoadSpec:
    """The usual closed-loop point: n users, a short warm-up, then a measured window."""
    return LoadSpec(path=path, concurrency=n, warmup=warmup if warmup is not None else (0.3 if quick else 0.5),
                    duration=duration or (1.0 if quick else 2.0), timeout=timeout, transport=transport)


CALIBRATION_MAX_MS = 100  # the overhead is measured on the same route, waiting at most this long
CALIBRATION_WAVE = 32  # new connections opened at once to measure the cost of each extra one


def is_wave(load: LoadSpec) -> bool:
    """Every user sends exactly one request, all at once: a wave of new connections."""
    return load.concurrency is not None and load.requests is not None and load.requests == load.concurrency


def calibration_path(path: str) -> str | None:
    """The route a point's overhead is measured on: the same, with ms capped (None: no theory)."""
    route, service = parse_route(path)
    if service is None or service <= 0:
        return None
    return f"{route}?ms={min(round(service * 1000), CALIBRATION_MAX_MS)}"


def _quiet_run(url: str, load: LoadSpec):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ClientSaturatedWarning)
        return run_load(url, load, progress=False, warn=False)


def calibrate(server, spec: ServerSpec, path: str, wave: bool = False) -> Overhead:
    """What this server adds to a request of this route, measured once, before the points.

    One user sends a few requests back to back on the same route (waiting at
    most 100 ms: the overhead does not grow with the wait): the per-request
    overhead is their median latency minus the nominal wait, the first request
    (which opens the connection) left out. For a wave, ``CALIBRATION_WAVE`` new
    connections (at most the server's slots) are opened at once, three times:
    each extra one finishes later by the serial cost of accepting and setting
    it up (the median of the three). Medians, so that one stall of a shared
    machine during the calibration does not shift every prediction after it.
    """
    cal = calibration_path(path)
    route, s_cal = parse_route(cal)
    n = max(5, math.ceil(0.5 / s_cal))
    one = _quiet_run(server.url, LoadSpec(path=cal, concurrency=1, requests=n, timeout=30))
    c = one.columns()
    ok = c["error"] == ""
    lat_s = (c["end_ns"] - c["intended_ns"])[ok][1:] / 1e9
    per_request = max(0.0, float(np.median(lat_s)) - s_cal) if lat_s.size else 0.0
    source = f"measured once: 1 user, {n} x {cal}"
    per_connection = 0.0
    k = int(min(CALIBRATION_WAVE, slots(spec, route)[0])) if wave else 1
    if k >= 2:
        spans = [_quiet_run(server.url, LoadSpec(path=cal, concurrency=k, requests=k, timeout=30)).summary["window_s"]
                 for _ in range(3)]
        per_connection = max(0.0, (statistics.median(spans) - (s_cal + per_request)) / (k - 1))
        source += f"; 3 waves of {k} new connections"
    return Overhead(per_request, per_connection, source)


def wait_for_every_worker(server, path: str = "/io?ms=100", timeout: float = 30.0) -> set[int]:
    """Send waves of short waits until every worker process has answered one.

    A sync worker holds its request, so a wave of one request per worker can
    only be answered by that many workers: once every pid has answered, every
    worker has booted (imported the app) and the measurement can start. A worker
    that serves many requests at once gets a bigger wave, so its siblings get some.
    """
    want = set(getattr(server, "worker_pids", None) or [])
    spec = getattr(server, "spec", None)
    one_each = getattr(spec, "kind", None) == "wsgi" and getattr(spec, "gunicorn_class", None) == "sync"
    n = len(want) if one_each else 8 * len(want)
    seen: set[int] = set()
    deadline = time.monotonic() + timeout
    while want and not want <= seen and time.monotonic() < deadline:
        r = _quiet_run(server.url, LoadSpec(path=path, concurrency=n, requests=n, timeout=30))
        seen |= {int(pid) for pid in r.columns()["worker_pid"] if pid}
    if want and not want <= seen:
        warnings.warn(f"{len(want - seen)} of {len(want)} workers never answered within {timeout:g} s", stacklevel=2)
    return seen


def point_doc(job: Job, result, probe_result=None, rss=None, overhead: Overhead | None = None) -> dict:
    s = result.summary
    pred = predict(job.spec, job.load.path, concurrency=job.load.concurrency, rate=job.load.rate,
                   requests=job.load.requests, overhead=overhead)
    doc = {
        "series": job.series, "x": job.x, "tags": job.tags,
        "spec": job.spec.to_dict(), "label": job.spec.label, "load": job.load.to_dict(),
        "summary": s, "prediction": pred.to_dict() if pred else None,
        "status": "interrupted" if result.interrupted else "failed" if result.failed else "complete",
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


def _run_job(job: Job, url: str, server, overhead: Overhead | None = None) -> dict:
    """Measure one job against a running server."""
    if hasattr(job, "measure"):  # a job that measures in its own way (e.g. proxy.SlowClientsJob)
        return job.measure(server)
    probe_box = {}
    rss_box = {}
    stop = threading.Event()

    def probe():
        if job.probe_after and stop.wait(job.probe_after):
            return
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", ClientSaturatedWarning)
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
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", ClientSaturatedWarning)
            result = run_load(url, job.load, progress=False, warn=False)
    finally:
        stop.set()
        for t in helpers:
            t.join(job.load.timeout + job.probe_after + (job.probe.duration or 0) + 5 if job.probe else 10)
    return point_doc(job, result, probe_box.get("r"), rss_box or None, overhead)


def _calibration_key(job: Job):
    if hasattr(job, "measure") or calibration_path(job.load.path) is None:
        return None
    return calibration_path(job.load.path), is_wave(job.load)


def _calibrate_group(server, spec: ServerSpec, group) -> dict:
    """One calibration per route (and shape) the group's points need a theory for."""
    out = {}
    for job in group:
        key = _calibration_key(job)
        if key is None or key in out:
            continue
        try:
            predict(spec, job.load.path, concurrency=1)
        except ValueError:  # no theory for this route
            continue
        out[key] = calibrate(server, spec, job.load.path, wave=key[1])
    return out


def _group_by_server(jobs):
    groups: dict = {}
    for job in jobs:
        groups.setdefault(job.spec, []).append(job)
    return groups


def measure(exp: Experiment, quick: bool | None = None, results_dir: Path | None = None, fresh: bool = False,
            progress: bool = True) -> dict:
    """Run (or resume) an experiment's jobs; return its assembled data."""
    from tqdm.auto import tqdm

    quick = quick_mode() if quick is None else quick
    jobs = exp.jobs(quick)
    cache = Path(results_dir or results_root()) / exp.name
    cache.mkdir(parents=True, exist_ok=True)
    points = {}
    todo = []
    for job in jobs:
        path = cache / f"{job.key()}.json"
        if path.exists() and not fresh:
            with contextlib.suppress(ValueError, OSError):
                doc = results.read_json(path)
                if doc.get("status") == "complete":
                    points[job.key()] = doc
                    continue
        todo.append(job)
    bar = tqdm(total=len(jobs), initial=len(jobs) - len(todo), desc=exp.name, unit="point", disable=not progress)
    try:
        for spec, group in _group_by_server(todo).items():
            with serve(spec) as server:
                overheads = {}
                if isinstance(spec, ServerSpec):
                    bar.set_postfix_str(f"{spec.label}: booting every worker, calibrating", refresh=True)
                    wait_for_every_worker(server)
                    overheads = _calibrate_group(server, spec, group)
                for job in group:
                    bar.set_postfix_str(f"{job.series} x={job.x}", refresh=True)
                    overhead = overheads.get(_calibration_key(job))
                    try:
                        doc = _run_job(job, server.url, server, overhead)
                    except Interrupted as stop:
                        # Keep what was measured, marked; the re-run redoes this point.
                        doc = point_doc(job, stop.result, overhead=overhead)
                        results.write_json(cache / f"{job.key()}.json", doc)
                        raise
                    interpreters.record(doc["summary"], server)  # the server's Python and GIL, as it said
                    results.write_json(cache / f"{job.key()}.json", doc)
                    points[job.key()] = doc
                    bar.update(1)
    finally:
        bar.close()
    data = {
        "name": exp.name, "title": exp.title, "lesson": exp.lesson, "quick": quick,
        "machine": results.machine(), "time": results.now_iso(),
        "client_cpu": client_cpu(),
        "points": [points[j.key()] for j in jobs if j.key() in points],
    }
    if exp.extra:
        data["extra"] = exp.extra(quick)
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
    results.atomic_write(Path(png), buf.getvalue())
    return png


def run_experiment(exp: Experiment, out_dir: Path = FIGURES_DIR, results_dir: Path | None = None,
                   quick: bool | None = None, replot: bool = False, fresh: bool = False,
                   progress: bool = True) -> Path:
    """Measure (unless ``replot``) and draw one experiment; return the PNG path."""
    out_dir = Path(out_dir)
    data_path = out_dir / "data" / f"{exp.name}.json"
    if replot:
        if not data_path.exists():
            raise FileNotFoundError(f"no saved results for {exp.name!r} at {data_path}: run `make charts ONLY={exp.name}` first")
        data = results.read_json(data_path)
    else:
        data = measure(exp, quick=quick, results_dir=results_dir, fresh=fresh, progress=progress)
        results.write_json(data_path, data)
    return save_png(exp, data, out_dir / f"{exp.name}.png")
