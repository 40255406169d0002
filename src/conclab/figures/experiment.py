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
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import json
import threading
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from matplotlib.figure import Figure

from ..base.cores import client_cpu
from ..base.paths import FIGURES_DIR, quick_mode, results_root
from ..base.specs import LoadSpec, ServerSpec
from ..measuring import results
from ..measuring.driver import ClientSaturatedWarning, Interrupted, run_load
from ..measuring.theory import predict
from ..processes.launcher import serve
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
    sample_rss: bool = False
    tags: dict = field(default_factory=dict)

    def key(self) -> str:
        blob = json.dumps([self.spec.to_dict(), self.load.to_dict(), self.probe.to_dict() if self.probe else None,
                           self.keep_records, self.sample_rss], sort_keys=True, default=str)
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


# Servers most experiments share.
SYNC = ServerSpec("wsgi", workers=4)
GTHREAD = ServerSpec("wsgi", threads=16)
UVICORN = ServerSpec("asgi")


def closed_load(path: str, n: int, quick: bool, warmup: float | None = None, duration: float | None = None,
                timeout: float = 30.0, transport: str = "aiohttp") -> LoadSpec:
    """The usual closed-loop point: n users, a short warm-up, then a measured window."""
    return LoadSpec(path=path, concurrency=n, warmup=warmup if warmup is not None else (0.3 if quick else 0.5),
                    duration=duration or (1.0 if quick else 2.0), timeout=timeout, transport=transport)


def point_doc(job: Job, result, probe_result=None, rss=None) -> dict:
    s = result.summary
    pred = predict(job.spec, job.load.path, concurrency=job.load.concurrency, rate=job.load.rate)
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


def _run_job(job: Job, url: str, server) -> dict:
    """Measure one job against a running server."""
    probe_box = {}
    rss_box = {}
    stop = threading.Event()

    def probe():
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", ClientSaturatedWarning)
            probe_box["r"] = run_load(url, job.probe, progress=False, warn=False)

    def sample():
        # Hold the load for a while, then read the server's memory in the middle.
        baseline = server.rss_bytes()
        hold_s = int(job.load.path.split("ms=")[1]) / 1000 if "ms=" in job.load.path else 1.0
        if not stop.wait(hold_s / 2):
            rss_box["loaded"] = server.rss_bytes()
        rss_box["baseline"] = baseline

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
            t.join(job.load.timeout + (job.probe.duration or 0) + 5 if job.probe else 10)
    return point_doc(job, result, probe_box.get("r"), rss_box or None)


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
                for job in group:
                    bar.set_postfix_str(f"{job.series} x={job.x}", refresh=True)
                    try:
                        doc = _run_job(job, server.url, server)
                    except Interrupted as stop:
                        # Keep what was measured, marked; the re-run redoes this point.
                        doc = point_doc(job, stop.result)
                        results.write_json(cache / f"{job.key()}.json", doc)
                        raise
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
    fig.get_layout_engine().set(rect=(0, 0.025, 1, 0.975))  # room for the footer
    exp.draw(data, fig)
    fig.suptitle(data["title"], fontsize=11)
    footer(fig, data)
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
