"""Experiments: every figure is produced in quick mode, I/O points agree with
Little's law, cached points are reused, and figures redraw from saved data."""

import json
import math
import re
import statistics

import psutil
import pytest

from conclab.base.paths import FIGURES_DIR, quick_mode, results_root
from conclab.cli import main as conclab_main
from conclab.figures.experiment import measure, read_data
from conclab.figures.registry import REGISTRY
from conclab.figures.registry import run as run_experiment

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


@pytest.fixture(scope="module")
def figures_dir(tmp_path_factory):
    return tmp_path_factory.mktemp("figures")


@pytest.fixture(scope="module")
def server_pool(request):
    """One server per spec for the quick figures below, as `conclab charts` keeps them:
    planned over the figures this session runs, so the last one stops each server."""
    from conclab.figures.experiment import ServerPool

    names = [
        item.callspec.params["name"]
        for item in request.session.items
        if item.originalname == "test_experiment_produces_a_nonempty_png_in_quick_mode"
    ]
    with ServerPool([REGISTRY[n] for n in names if not REGISTRY[n].missing()], quick=True) as pool:
        yield pool


def test_tests_run_in_quick_mode():
    assert quick_mode(), "tests must run with CONCLAB_QUICK=1"


@pytest.mark.parametrize("name", list(REGISTRY))
def test_experiment_produces_a_nonempty_png_in_quick_mode(name, figures_dir, server_pool):
    if why := REGISTRY[name].missing():  # e.g. nginx not installed (under CI this raises instead)
        pytest.skip(why)
    png = run_experiment(name, out_dir=figures_dir, progress=False, pool=server_pool)
    assert png.read_bytes()[:8] == PNG_MAGIC
    assert png.stat().st_size > 10_000
    data = read_data(figures_dir / "data" / f"{name}.json")
    assert data["quick"] is True
    assert data["points"], "no measured points"
    assert all(p["status"] == "complete" for p in data["points"])
    assert data["machine"]["cores"] >= 1


def _points(figures_dir, name):
    path = figures_dir / "data" / f"{name}.json"
    if not path.exists():
        run_experiment(name, out_dir=figures_dir, progress=False)
    return read_data(path)["points"]


def _theory_misses(points):
    """Points (not flagged as client-bound) more than
    25% off Little's law, and how many were checked."""
    misses, checked = [], 0
    for p in points:
        pred = p["prediction"]
        if not pred or p["summary"].client_saturated:
            continue
        checked += 1
        measured, expected = p["summary"].throughput_rps, pred["throughput_rps"]
        if measured != pytest.approx(expected, rel=0.25):
            misses.append(
                f"{p['series']} x={p['x']}: measured {measured:.0f} "
                f"req/s, Little's law says {expected:.0f} "
                f"(mean latency {p['summary'].latency_ms.mean:.0f} ms)"
            )
    return misses, checked


@pytest.mark.parametrize("name", ["wsgi_vs_asgi", "threadpool", "blocking"])
def test_io_experiments_agree_with_littles_law(name, figures_dir, tmp_path):
    """Every I/O point lands within 25% of the theory curve.

    The machine is shared: another program taking a core for a few hundred ms
    of a 1 s quick-mode window costs a point 30%. So an experiment that misses
    is measured again from scratch, 3 runs in all; a real error misses every time.
    """
    misses, checked = _theory_misses(_points(figures_dir, name))
    runs = [misses]
    for _ in range(2):
        if not misses:
            break
        run_experiment(
            name, out_dir=tmp_path, results_dir=tmp_path / "results", fresh=True, progress=False
        )
        misses, checked = _theory_misses(read_data(tmp_path / "data" / f"{name}.json")["points"])
        runs.append(misses)
    assert not misses, "every run missed the theory:\n" + "\n".join(
        f"run {i + 1}: {m}" for i, m in enumerate(runs)
    )
    assert checked >= 2


def test_timelines_show_serialised_vs_overlapped_requests(figures_dir):
    from conclab.measuring.stats import max_overlap

    overlap = {}
    for p in _points(figures_dir, "timelines"):
        r = p["records"]
        overlap[p["series"]] = max_overlap(r["server_start_ns"], r["server_end_ns"])
    assert overlap["gunicorn sync 1 worker: /io"] == 1
    assert overlap["gunicorn gthread 4 threads: /io"] == 4
    assert overlap["uvicorn: /io (await)"] == 12
    assert overlap["uvicorn: /blocking-io (time.sleep)"] == 1
    assert overlap["uvicorn: /offload-io, pool of 4"] == 4


def test_memory_experiment_finds_processes_cost_more_than_coroutines(figures_dir):
    per_request = {}
    for series in ("processes (sync workers)", "coroutines (uvicorn)"):
        pts = sorted(
            (p for p in _points(figures_dir, "memory") if p["series"] == series),
            key=lambda p: p["x"],
        )
        lo, hi = pts[0], pts[-1]
        per_request[series] = (hi["rss_bytes"]["loaded"] - lo["rss_bytes"]["loaded"]) / (
            hi["x"] - lo["x"]
        )
    assert per_request["processes (sync workers)"] > 20 * max(
        per_request["coroutines (uvicorn)"], 1
    )


def _server_children():
    return [
        p
        for p in psutil.Process().children(recursive=True)
        if "conclab.processes.guard" in " ".join(p.cmdline())
    ]


def test_rerun_reuses_cached_points_without_measuring(figures_dir):
    name = "blocking"
    _points(figures_dir, name)
    cache = results_root() / name
    before = {f.name: f.stat().st_mtime_ns for f in cache.glob("*.json")}
    assert before
    run_experiment(name, out_dir=figures_dir, progress=False)
    after = {f.name: f.stat().st_mtime_ns for f in cache.glob("*.json")}
    assert after == before, "cached points were measured again"


def test_a_probe_with_no_answer_in_its_window_is_drawn_without_its_bar(tmp_path):
    """A saved percentile of no samples is None (JSON has no NaN): the figure still draws."""
    from conclab.figures.experiment import figure

    data = json.loads((FIGURES_DIR / "data" / "blocking.json").read_text())
    probed = next(p for p in data["points"] if p.get("probe"))
    probed["probe"]["latency_ms"] = dict.fromkeys(probed["probe"]["latency_ms"])
    (tmp_path / "blocking.json").write_text(json.dumps(data))
    assert figure(REGISTRY["blocking"], read_data(tmp_path / "blocking.json")).axes


def test_replot_redraws_from_saved_data_offline(figures_dir, tmp_path):
    name = "open_vs_closed"
    _points(figures_dir, name)
    out = tmp_path / "figs"
    (out / "data").mkdir(parents=True)
    (out / "data" / f"{name}.json").write_bytes(
        (figures_dir / "data" / f"{name}.json").read_bytes()
    )
    # An empty results cache proves nothing is measured: a measurement would need it.
    png = run_experiment(
        name, out_dir=out, results_dir=tmp_path / "empty", replot=True, progress=False
    )
    assert png.read_bytes()[:8] == PNG_MAGIC
    assert not (tmp_path / "empty").exists()
    assert not _server_children()


def test_replot_without_saved_data_is_a_clear_error(tmp_path, capsys):
    code = conclab_main(["charts", "--replot", "--only", "gil", "--out", str(tmp_path)])
    err = capsys.readouterr().err
    assert code == 2
    assert "no saved results" in err and "Traceback" not in err


def test_unknown_experiment_is_a_clear_error(capsys):
    code = conclab_main(["charts", "--only", "nope"])
    err = capsys.readouterr().err
    assert code == 2 and "unknown experiment nope" in err


def test_committed_reference_figures_exist_for_every_experiment():
    for name in REGISTRY:
        png = FIGURES_DIR / f"{name}.png"
        data = FIGURES_DIR / "data" / f"{name}.json"
        assert png.exists() and png.stat().st_size > 10_000, (
            f"figures/{name}.png missing: run make charts"
        )
        assert data.exists(), f"figures/data/{name}.json missing: run make charts"
        saved = json.loads(data.read_text())
        assert saved["points"], f"figures/data/{name}.json has no points"
        assert saved["quick"] is False, (
            f"figures/{name}.png was drawn in quick mode: re-run make charts"
        )


# --- every worker booted, the overhead measured once, the spread kept ----------------


def test_every_worker_answers_before_a_point_is_measured():
    # Gunicorn forks its workers at once, but each imports the app by itself:
    # /health answers long before the last worker can. A wave sent then would
    # wait for workers still booting (the first memory figure's 16-worker point).
    from conclab.base.specs import LoadSpec, ServerSpec
    from conclab.figures.experiment import wait_for_every_worker
    from conclab.measuring.driver import run_load
    from conclab.processes.launcher import serve

    with serve(ServerSpec("wsgi", workers=4)) as server:
        assert wait_for_every_worker(server) == set(server.worker_pids)
        r = run_load(
            server.url,
            LoadSpec(path="/io?ms=300", concurrency=4, requests=4, timeout=30),
            progress=False,
            warn=False,
        )
        c = r.columns()
        assert (
            len(set(c["worker_pid"])) == 4
        )  # one request per worker, none queued behind a booting one
        assert (c["server_start_ns"].max() - c["server_start_ns"].min()) / 1e6 < 150


def test_calibration_measures_the_servers_own_overhead_on_a_short_wait():
    from conclab.figures.experiment import UVICORN, calibrate, calibration_path
    from conclab.processes.launcher import serve

    assert (
        calibration_path("/io?ms=3000") == "/io?ms=100"
    )  # the overhead does not grow with the wait
    assert calibration_path("/io?ms=50") == "/io?ms=50"
    assert calibration_path("/hello") is None
    with serve(UVICORN) as server:
        o = calibrate(server, UVICORN, "/io?ms=3000", wave=True)
    assert 0 <= o.per_request_s < 0.05
    assert 0 <= o.per_connection_s < 0.01
    assert "1 user" in o.source and "waves of 32" in o.source


def test_every_prediction_says_where_its_overhead_came_from(figures_dir):
    for p in _points(figures_dir, "wsgi_vs_asgi"):
        overhead = p["prediction"]["overhead"]
        assert overhead["source"].startswith("measured once")
        assert p["prediction"]["throughput_rps"] <= p["prediction"]["ideal_throughput_rps"] + 1e-9


def test_every_timed_point_keeps_its_spread(figures_dir):
    for p in _points(figures_dir, "threadpool"):
        spread = p["summary"].throughput_spread
        assert len(spread.bins_rps) >= 2
        # The bins bracket the whole window's throughput (up to how each weighs in its edges).
        assert spread.min <= p["summary"].throughput_rps * 1.03
        assert spread.max >= p["summary"].throughput_rps * 0.97


def test_memory_baseline_is_taken_after_every_worker_booted(figures_dir):
    # With every worker booted first, holding one request per worker adds little
    # next to what a worker costs.
    procs = sorted(
        (p for p in _points(figures_dir, "memory") if p["series"] == "processes (sync workers)"),
        key=lambda p: p["x"],
    )
    per_worker = (procs[-1]["rss_bytes"]["loaded"] - procs[0]["rss_bytes"]["loaded"]) / (
        procs[-1]["x"] - procs[0]["x"]
    )
    for p in procs:
        grew = p["rss_bytes"]["loaded"] - p["rss_bytes"]["baseline"]
        assert grew < 0.5 * per_worker, f"{p['x']} workers grew {grew / 2**20:.1f} MiB while loaded"
        assert len(p["rss_bytes"]["loaded_samples"]) == 3


def test_every_committed_point_agrees_with_its_theory_within_ten_percent():
    """The reference data: each point the driver measured accurately (not client-saturated)
    is within 10% of its Little's-law line, or the figure would teach a wrong number."""
    from conclab.figures.experiment import TIMING_FILE

    misses = []
    for path in sorted((FIGURES_DIR / "data").glob("*.json")):
        if path.name == TIMING_FILE:  # seconds per figure and phase, no points
            continue
        if "points" not in json.loads(path.read_text()):
            continue  # a table measured by a script (slow_limits, lab 02's configs), no theory
        data = read_data(path)
        for p in data["points"]:
            predicted = (p.get("prediction") or {}).get("throughput_rps")
            if not predicted or p["summary"].client_saturated:
                continue
            off = p["summary"].throughput_rps / predicted - 1
            if abs(off) > 0.10:
                misses.append(f"{path.stem}: {p['series']} x={p['x']}: {off:+.1%}")
    assert not misses, misses


# --- quick mode is a real reduced sweep: the same lesson, from fewer and shorter points ----------

THROUGHPUT_TOLERANCE = 0.25  # a 1 s quick window on a shared machine (see the Little's-law test)
# CPU per request as a ratio to Gunicorn sync's: one quick repeat of ~1,000 requests vs the
# median of three
COST_TOLERANCE = 0.3
# bytes per in-flight request, the difference of two RSS readings: the same order of magnitude
MEMORY_FACTOR = 3


def _match_key(p) -> tuple:
    load = p["load"]
    return p["series"], p["x"], load["path"], load["concurrency"], load["rate"]


def key_numbers(name: str, data: dict) -> dict:
    """{what: (value, tolerance)} a figure teaches; tolerance None means the value must be equal.

    Throughput of every point (keyed by series, x and load shape; client-saturated
    points left out), and what else a figure's lesson rests on: where the
    threadpool cliff falls, which servers slow clients stall, memory per
    in-flight request, CPU per request.
    """
    out = {}
    for p in data["points"]:
        s = p["summary"]
        if name == "threadpool_cliff":
            probe = (p.get("probes") or {}).get("/def-health")
            p50 = probe.latency_ms.p50 if probe else None
            if p50 is not None:  # a def health check waits for a slow request to end, or not
                out[f"{p['series']} x={p['x']}: /def-health waits"] = (p50 > 100, None)
        elif name == "slow_clients":
            out[f"{p['series']}: the probe stalls"] = (s.latency_ms.p99 > 1000, None)
        elif name in ("cost_per_request", "client_ceiling"):
            continue
        elif name != "memory" and not s.client_saturated and s.throughput_rps:
            out[f"{_match_key(p)}: req/s"] = (s.throughput_rps, THROUGHPUT_TOLERANCE)
    if name == "cost_per_request":
        from conclab.figures.cpu_offload import STACKS, cost_table

        # Each stack's CPU per request relative to Gunicorn sync's at the same route and rate:
        # the lesson (httptools and uvloop cut it), whatever the machine's speed that day.
        table = {
            stack: {label: statistics.median(v) for label, v in series.items()}
            for stack, series in cost_table(data["points"]).items()
        }
        first = STACKS[0][0]
        rate = {label: float(re.search(r"at ([\d.]+) req/s", label)[1]) for label in table[first]}
        top = max(rate.values())
        for stack, series in table.items():
            for label, us in series.items():
                if stack == first or not table[first].get(label):
                    continue
                if rate[label] == top:  # an idle loop's fixed costs are spread thinnest here
                    out[f"{stack}, {label}: CPU per request / {first}'s"] = (
                        us / table[first][label],
                        COST_TOLERANCE,
                    )
                elif (
                    "uvicorn" in stack
                ):  # at every rate, an event loop costs less than a sync worker
                    out[f"{stack}, {label}: cheaper than {first}"] = (
                        us < table[first][label],
                        None,
                    )
    if name == "memory":
        for series in {p["series"] for p in data["points"]}:
            pts = {
                p["x"]: p["rss_bytes"]["loaded"] for p in data["points"] if p["series"] == series
            }
            lo = min(pts)
            for hi in (x for x in pts if x > lo):
                per_request = max((pts[hi] - pts[lo]) / (hi - lo), 1.0)
                out[f"{series}: log10 bytes per request, {lo}..{hi}"] = (
                    math.log10(per_request),
                    ("abs", math.log10(MEMORY_FACTOR)),
                )
    if name == "client_ceiling":
        # The lesson: on the same waits, httpx's default transport falls far behind the aiohttp one.
        io = {
            (p["tags"]["transport"], p["x"]): p["summary"].throughput_rps
            for p in data["points"]
            if "/io" in p["load"]["path"]
        }
        for (transport, x), rps in io.items():
            if transport == "aiohttp" and ("httpx", x) in io:
                out[f"/io, {x} users: aiohttp carries twice httpx's default"] = (
                    rps > 2 * io[("httpx", x)],
                    None,
                )
    return out


def quick_vs_full_misses(name, points, full) -> list[str]:
    """The key numbers of ``points`` (quick) that disagree with the committed ``full`` ones."""
    quick = key_numbers(name, {"points": points})
    shared = sorted(set(quick) & set(full))
    assert shared, f"{name}: no quick point matches a full one (quick: {sorted(quick)[:3]} ...)"
    misses = []
    for what in shared:
        (q, tolerance), (f, _) = quick[what], full[what]
        if tolerance is None:
            ok, said = q == f, ""
        elif isinstance(tolerance, tuple):  # ("abs", tolerance) on a logarithm
            ok, said = q == pytest.approx(f, abs=tolerance[1]), f" (tolerance {tolerance[1]:.2f})"
        else:
            ok, said = q == pytest.approx(f, rel=tolerance), f" (tolerance {tolerance:.0%})"
        if not ok:
            misses.append(f"{what}: quick {q:.4g}, full {f:.4g}{said}")
    return misses


@pytest.mark.parametrize("name", list(REGISTRY))
def test_quick_figure_teaches_what_the_committed_full_one_does(name, figures_dir, tmp_path):
    """Each quick figure's key numbers agree with the committed full figure's, within a tolerance.

    Quick points are a subset of the full sweep (fewer users, threads or workers,
    shorter windows), so each can be compared with the full point of the same
    series and load. Run in the same temporary folder as the quick figures above.
    A quick window is short, and one stall of the shared machine can move a point of
    it: a figure that misses is measured once more, afresh, and fails if that misses too.
    """
    if why := REGISTRY[name].missing():
        pytest.skip(why)
    full = key_numbers(name, read_data(FIGURES_DIR / "data" / f"{name}.json"))
    misses = quick_vs_full_misses(name, _points(figures_dir, name), full)
    if misses:
        again = measure(
            REGISTRY[name], quick=True, results_dir=tmp_path, fresh=True, progress=False
        )["points"]
        retried = quick_vs_full_misses(name, again, full)
        assert not retried, (
            f"{name}: the quick figure disagrees with the committed one, twice:\n"
            + "\n".join(["first run:", *misses, "measured again:", *retried])
        )


# --- spending only what accuracy needs ----------------------------------------------------------


def test_a_steady_point_ends_its_warm_up_and_its_window_early():
    import time

    from conclab.base.specs import LoadSpec
    from conclab.figures.experiment import UVICORN, Job, _run_job
    from conclab.processes.launcher import serve

    # 10 ms requests: a 0.1 s window holds about nine of each user's, so whether a user's
    # last one falls just inside or just outside moves a window's count little.
    load = LoadSpec(path="/io?ms=10", concurrency=8, warmup=1.5, duration=6, timeout=10)
    with serve(UVICORN) as server:
        # Steady means three 0.1 s windows within 10% of each other: another program
        # taking the core for a moment can keep a run from it. Such a run is measured
        # once more; a warm-up that never ends early misses both times.
        for _ in range(3):
            started = time.monotonic()
            doc = _run_job(Job("steady", UVICORN, load), server.url, server)
            took = time.monotonic() - started
            if doc["adaptive"]["warmup_s"] < 1.0:
                break
    adaptive = doc["adaptive"]
    assert adaptive["warmup_s"] < 1.0  # steady well before the longest warm-up
    assert adaptive["stopped_by"] == "spread" and adaptive["window_s"] < 4
    assert took < 5  # not the 7.5 s the load allows
    assert doc["summary"].window_s >= 1.0  # two spread bins at least
    assert doc["summary"].throughput_rps == pytest.approx(8 / 0.01, rel=0.25)


def test_experiments_of_one_run_share_a_server_and_stop_it_after_the_last(tmp_path):
    import dataclasses

    from conclab.figures.experiment import (
        UVICORN,
        Job,
        ServerPool,
        closed_load,
        read_timing,
        run_experiment,
    )

    def exp(name):
        return dataclasses.replace(
            REGISTRY["wsgi_vs_asgi"],
            name=name,
            jobs=lambda quick: [Job(name, UVICORN, closed_load("/io?ms=20", 4, quick), x=4)],
        )

    first, second = exp("first"), exp("second")
    with ServerPool([first, second], quick=True) as pool:
        run_experiment(
            first, out_dir=tmp_path, results_dir=tmp_path / "r", pool=pool, progress=False
        )
        ((_, server),) = pool.running.values()
        pids = set(server.worker_pids)
        run_experiment(
            second, out_dir=tmp_path, results_dir=tmp_path / "r", pool=pool, progress=False
        )
        assert not pool.running  # stopped after the last experiment that needs it
    assert not any(psutil.pid_exists(pid) for pid in pids)
    timing = read_timing(tmp_path)["quick"]
    assert (timing["first"]["servers"], timing["second"]["servers"]) == (1, 0)
    for t in timing.values():  # where the time went, phase by phase, adds up
        assert t["total_s"] == pytest.approx(sum(t["seconds"].values()), abs=0.05)
        assert t["seconds"]["measuring"] > 0 and t["measured"] == 1
        assert set(t["load_avg"]) == {
            "start",
            "end",
        }  # how busy the machine was, for docs/timing.md


def test_side_by_side_points_run_at_once_each_on_its_own_server_and_stop_them(tmp_path):
    import dataclasses

    from conclab.base.specs import LoadSpec, ServerSpec
    from conclab.figures.experiment import UVICORN, Job, read_timing, run_experiment

    load = LoadSpec(path="/io?ms=50", concurrency=2, duration=1.5, warmup=0.0)
    specs = [UVICORN, ServerSpec("fastapi")]
    exp = dataclasses.replace(
        REGISTRY["wsgi_vs_asgi"],
        name="side",
        jobs=lambda quick: [
            Job(f"s{i}", spec, load, x=i, keep_records=True) for i, spec in enumerate(specs)
        ],
        shares_servers=False,
        side_by_side=True,
    )
    run_experiment(exp, out_dir=tmp_path, results_dir=tmp_path / "r", progress=False)
    data = read_data(tmp_path / "data" / "side.json")
    assert [p["status"] for p in data["points"]] == ["complete", "complete"]
    windows = [(min(p["records"]["start_ns"]), max(p["records"]["end_ns"])) for p in data["points"]]
    assert max(w[0] for w in windows) < min(w[1] for w in windows)  # they overlapped
    # Each answered on its own server: two different server processes.
    pids = [set(p["records"]["worker_pid"]) for p in data["points"]]
    assert pids[0] and pids[1] and not pids[0] & pids[1]
    assert not any(psutil.pid_exists(pid) for pid in pids[0] | pids[1])  # both stopped
    timing = read_timing(tmp_path)["quick"]["side"]
    per_point = sum(p["warmup_s"] + p["measuring_s"] for p in timing["points"])
    assert timing["servers"] == 2
    # The figure's measuring time is the wall time of both, not their sum.
    assert timing["seconds"]["measuring"] < 0.75 * per_point
    assert timing["total_s"] == pytest.approx(sum(timing["seconds"].values()), abs=0.05)


def test_charts_timing_prints_the_saved_seconds_per_figure_and_phase(tmp_path, capsys):
    from conclab.figures.experiment import PHASES, save_timing

    assert conclab_main(["charts", "--timing", "--out", str(tmp_path)]) == 2
    assert "no timing saved" in capsys.readouterr().err
    seconds = dict.fromkeys(PHASES, 1.0)
    for name in ("gil", "workers"):
        save_timing(
            tmp_path,
            {
                "name": name,
                "quick": True,
                "total_s": 6.0,
                "seconds": seconds,
                "servers": 2,
                "measured": 4,
                "cached": 1,
                "points": [],
            },
        )
    assert conclab_main(["charts", "--timing", "--out", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert "| gil | 6.0 | 1.0 |" in out and "| workers |" in out
    assert "| **all** | **12.0** |" in out and "| 4 | 8 (2) |" in out
    assert "full" not in out  # no full run saved
