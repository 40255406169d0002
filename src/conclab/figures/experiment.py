"""Experiments: named sweeps (server specs x routes x load) whose results become one figure.

    conclab charts                 # measure every experiment, write figures/*.png
    conclab charts --only gil      # one
    conclab charts --replot        # redraw from figures/data/*.json, no measuring

Each measured point is cached in ``results/<experiment>/<key>.json``, keyed by its
server spec and load, so an interrupted sweep resumes where it stopped and a
re-run only redraws. The assembled data of each figure is kept in
``figures/data/<name>.json`` (committed with the figure), so ``--replot`` works
on a fresh clone. ``CONCLAB_QUICK=1`` selects quick mode: fewer points, shorter runs.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import shutil
import subprocess
import threading
import warnings
from dataclasses import dataclass, field
from pathlib import Path

from . import results
from .driver import ClientSaturatedWarning, Interrupted, LoadSpec, run_load
from .launcher import ServerSpec, client_cpu, serve
from .theory import predict

ROOT = Path(__file__).resolve().parents[2]
FIGURES = ROOT / "figures"
RESULTS = ROOT / "results"


def results_root() -> Path:
    """Where measured points are cached: $CONCLAB_RESULTS, else results/ in the repo.

    Tests point it at a temporary folder, so they never touch the repo's results/.
    """
    return Path(os.environ.get("CONCLAB_RESULTS") or RESULTS)


TIMELINE_FIELDS = ("intended_ns", "start_ns", "end_ns", "status", "worker_pid", "thread", "server_start_ns", "server_end_ns")


def quick_mode() -> bool:
    """The one switch for quick mode everywhere: CONCLAB_QUICK=1."""
    return os.environ.get("CONCLAB_QUICK", "").strip().lower() not in ("", "0", "false", "no")


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
    name: str
    title: str
    lesson: str
    jobs: callable  # (quick: bool) -> list[Job]
    extra: callable | None = None  # (quick) -> dict of extra data (e.g. wrk numbers)


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


def run_experiment(name: str, out_dir: Path = FIGURES, results_dir: Path | None = None, quick: bool | None = None,
                   replot: bool = False, fresh: bool = False, progress: bool = True) -> Path:
    """Measure (unless ``replot``) and draw one experiment; return the PNG path."""
    from .plotting import draw

    exp = REGISTRY[name]
    out_dir = Path(out_dir)
    data_path = out_dir / "data" / f"{name}.json"
    if replot:
        if not data_path.exists():
            raise FileNotFoundError(f"no saved results for {name!r} at {data_path}: run `make charts ONLY={name}` first")
        data = results.read_json(data_path)
    else:
        data = measure(exp, quick=quick, results_dir=results_dir, fresh=fresh, progress=progress)
        results.write_json(data_path, data)
    png = out_dir / f"{name}.png"
    draw(data, png)
    return png


def run_all(names=None, **kwargs) -> list[Path]:
    names = list(names or REGISTRY)
    unknown = [n for n in names if n not in REGISTRY]
    if unknown:
        raise KeyError(f"unknown experiment(s): {', '.join(unknown)}; known: {', '.join(REGISTRY)}")
    return [run_experiment(n, **kwargs) for n in names]


# --------------------------------------------------------------------------- the experiments

SYNC = ServerSpec("wsgi", workers=4)
GTHREAD = ServerSpec("wsgi", threads=16)
UVICORN = ServerSpec("asgi")


def _closed(path, n, quick, warmup=None, duration=None, timeout=30.0, transport="aiohttp"):
    return LoadSpec(path=path, concurrency=n, warmup=warmup if warmup is not None else (0.3 if quick else 0.5),
                    duration=duration or (1.0 if quick else 2.0), timeout=timeout, transport=transport)


def jobs_wsgi_vs_asgi(quick):
    ns = [4, 32] if quick else [1, 4, 16, 64, 256]
    return [Job(spec.label, spec, _closed("/io?ms=100", n, quick), x=n)
            for spec in (SYNC, GTHREAD, UVICORN) for n in ns]


def jobs_timelines(quick):
    n = 12
    cases = [
        ("gunicorn sync 1 worker: /io", ServerSpec("wsgi"), "/io?ms=100"),
        ("gunicorn gthread 4 threads: /io", ServerSpec("wsgi", threads=4), "/io?ms=100"),
        ("uvicorn: /io (await)", UVICORN, "/io?ms=100"),
        ("uvicorn: /blocking-io (time.sleep)", UVICORN, "/blocking-io?ms=100"),
        ("uvicorn: /offload-io, pool of 4", ServerSpec("asgi", threadpool=4), "/offload-io?ms=100"),
    ]
    return [Job(title, spec, LoadSpec(path=path, concurrency=n, requests=n, timeout=30), keep_records=True)
            for title, spec, path in cases]


def jobs_blocking(quick):
    n = 10
    out = []
    for path in ("/io?ms=50", "/blocking-io?ms=50", "/offload-io?ms=50"):
        load = _closed(path, n, quick, duration=1.0 if quick else 3.0)
        # The /health probe starts with the load and lasts as long, warm-up included,
        # so every probe request meets the loop while the load is running.
        probe = LoadSpec(path="/health", rate=20, duration=load.warmup + load.duration, timeout=30)
        out.append(Job(path.split("?")[0], UVICORN, load, x=n, probe=probe))
    return out


def jobs_threadpool(quick):
    sizes = [2, 16] if quick else [1, 2, 4, 8, 16, 32]
    n = 16 if quick else 32
    out = [Job("gunicorn gthread threads", ServerSpec("wsgi", threads=k), _closed("/io?ms=50", n, quick), x=k) for k in sizes]
    out += [Job("uvicorn offload pool", ServerSpec("asgi", threadpool=k), _closed("/offload-io?ms=50", n, quick), x=k) for k in sizes]
    return out


def jobs_gil(quick):
    ks = [1, 2] if quick else [1, 2, 3, 4]
    out = []
    for k in ks:
        out.append(Job("threads (gthread, 1 worker)", ServerSpec("wsgi", threads=k, worker_class="gthread", cpus="all"),
                       _closed("/cpu?ms=40", 2 * k, quick), x=k))
        out.append(Job("processes (sync workers)", ServerSpec("wsgi", workers=k, cpus="all"),
                       _closed("/cpu?ms=40", 2 * k, quick), x=k))
    return out


def jobs_workers(quick):
    ws = [1, 2] if quick else [1, 2, 3, 4, 5, 8]
    out = []
    for w in ws:
        spec = ServerSpec("wsgi", workers=w, cpus="all")
        out.append(Job("CPU: /cpu?ms=40, 8 users", spec, _closed("/cpu?ms=40", 8, quick), x=w))
        out.append(Job("I/O: /io?ms=50, 8 users", spec, _closed("/io?ms=50", 8, quick), x=w))
    return out


def jobs_memory(quick):
    # Processes are the expensive kind: each worker imports Flask on its own,
    # so we stop at 16 of them (64 would take a minute just to boot).
    procs = [1, 4] if quick else [1, 4, 16]
    threads = [1, 64] if quick else [1, 4, 16, 64, 256]
    coros = [1, 64] if quick else [1, 4, 16, 64, 256, 1000]
    hold = "/io?ms=1500" if quick else "/io?ms=3000"

    def load(n):
        return LoadSpec(path=hold, concurrency=n, requests=n, timeout=30)

    return (
        [Job("processes (sync workers)", ServerSpec("wsgi", workers=n), load(n), x=n, sample_rss=True) for n in procs]
        + [Job("threads (gthread)", ServerSpec("wsgi", threads=n, worker_class="gthread"), load(n), x=n, sample_rss=True)
           for n in threads]
        + [Job("coroutines (uvicorn)", UVICORN, load(n), x=n, sample_rss=True) for n in coros]
    )


def jobs_open_closed(quick):
    spec = ServerSpec("wsgi")  # one sync worker: capacity 1 / 50 ms = 20 req/s
    d = 2.0 if quick else 8.0
    return [
        Job("closed loop, 4 users", spec, LoadSpec(path="/io?ms=50", concurrency=4, duration=d, timeout=60), keep_records=True),
        Job("open loop, 15 req/s (below capacity)", spec, LoadSpec(path="/io?ms=50", rate=15, duration=d, timeout=60), keep_records=True),
        Job("open loop, 25 req/s (above capacity)", spec, LoadSpec(path="/io?ms=50", rate=25, duration=d, timeout=60), keep_records=True),
    ]


def jobs_client_ceiling(quick):
    ns = [100] if quick else [1, 10, 100, 256]
    out = []
    for transport in ("aiohttp", "httpx"):
        label = "httpx + aiohttp transport" if transport == "aiohttp" else "httpx default transport"
        for n in ns:
            out.append(Job(f"{label}: /hello", UVICORN, _closed("/hello", n, quick, transport=transport), x=n, tags={"transport": transport}))
            out.append(Job(f"{label}: /io?ms=100", UVICORN, _closed("/io?ms=100", n, quick, transport=transport), x=n, tags={"transport": transport}))
    return out


def wrk_ceiling(quick):
    """wrk (C) against the same server, when it is installed: the ceiling of a native client."""
    wrk = shutil.which("wrk")
    if not wrk:
        return {"wrk": None, "note": "wrk not installed (apt-get install wrk) - no native-client reference"}
    out = {}
    cpu = client_cpu()
    ns = [10, 100] if quick else [1, 10, 50, 100, 256]
    with serve(UVICORN) as server:
        for n in ns:
            cmd = [wrk, "-t1", f"-c{n}", f"-d{2 if quick else 3}s", server.url + "/hello"]
            if cpu is not None:
                cmd = ["taskset", "-c", str(cpu), *cmd] if shutil.which("taskset") else cmd
            text = subprocess.run(cmd, capture_output=True, text=True, timeout=30).stdout
            for line in text.splitlines():
                if line.startswith("Requests/sec:"):
                    out[str(n)] = float(line.split()[1])
    return {"wrk": out}


REGISTRY: dict[str, Experiment] = {e.name: e for e in [
    Experiment("wsgi_vs_asgi", "WSGI vs ASGI on I/O (/io?ms=100)",
               "A sync worker serves one request at a time, gthread as many as it has threads, "
               "and the event loop all of them: throughput follows min(users, slots)/S.", jobs_wsgi_vs_asgi),
    Experiment("timelines", "Request timelines: 12 requests of 100 ms each",
               "One bar per request, one lane per worker thread: serialised, overlapped in fours, "
               "all at once, blocked, and bounded by a pool.", jobs_timelines),
    Experiment("blocking", "Blocking the event loop: /io vs /blocking-io vs /offload-io",
               "time.sleep inside async def serialises every request and even /health waits; "
               "await or a threadpool keep the loop free.", jobs_blocking),
    Experiment("threadpool", "Threadpool size on I/O (50 ms of waiting per request)",
               "For I/O, throughput grows with the number of threads until the pool covers the users.",
               jobs_threadpool),
    Experiment("gil", "The GIL: CPU work (/cpu?ms=40) in threads vs processes",
               "Threads of one process take turns holding the GIL; processes run on every core - but not beyond.",
               jobs_gil),
    Experiment("workers", "Worker processes: CPU vs I/O (8 users)",
               "Workers scale CPU work up to the core count and I/O work up to the number of users.", jobs_workers),
    Experiment("memory", "Memory per in-flight request",
               "A worker process costs megabytes, a thread tens of kilobytes, a coroutine about ten kilobytes.",
               jobs_memory),
    Experiment("open_vs_closed", "Open vs closed loop on an overloaded server (capacity 20 req/s)",
               "A closed-loop client slows down with the server and hides its queue; an open loop shows "
               "latency growing without bound (coordinated omission).", jobs_open_closed),
    Experiment("client_ceiling", "Measuring the measurer: the load driver's own ceiling",
               "httpx's default transport collapses under concurrency; the aiohttp transport keeps up "
               "- always check the client is not the bottleneck.", jobs_client_ceiling, wrk_ceiling),
]}


def calibrate(duration: float = 3.0):
    """`conclab calibrate`: the driver's own ceiling on this machine, per transport.

    /hello costs the server almost nothing, so every client here runs flat out:
    the throughput it reaches is the most it can measure. A real run whose
    throughput comes near that ceiling is measuring the client, not the server.
    """
    with serve(UVICORN) as server:
        print(f"load driver pinned to core {client_cpu()}; {UVICORN.label} on cores {list(UVICORN.resolved_cpus())}")
        print(f"{'transport':<26}{'users':>6}{'req/s':>10}{'p50 ms':>9}{'p99 ms':>9}{'client CPU':>12}")
        best = {}
        for transport in ("aiohttp", "httpx"):
            name = "httpx + aiohttp transport" if transport == "aiohttp" else "httpx default transport"
            for n in (10, 100):
                load = LoadSpec(path="/hello", concurrency=n, duration=duration, warmup=min(0.5, duration), transport=transport)
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore", ClientSaturatedWarning)
                    s = run_load(server.url, load, progress=False, warn=False).summary
                lat = s["latency_ms"]
                print(f"{name:<26}{n:>6}{s['throughput_rps']:>10.0f}{lat['p50']:>9.1f}{lat['p99']:>9.1f}{s['client_cpu']:>11.0%}")
                best[name] = max(best.get(name, 0.0), s["throughput_rps"])
    print()
    for name, rps in best.items():
        print(f"ceiling of {name}: about {rps:,.0f} req/s")
    print("Keep real runs well below the ceiling: a client near 100% CPU measures itself, not the server.")
    return best
