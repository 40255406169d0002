"""Faults and load: the lab keeps working and keeps its data when things go wrong.

A classroom is hostile: workers die, servers die, students press Ctrl-C in the
middle of a sweep, handlers block past Gunicorn's timeout, two notebooks run at
once, and a thousand connections sit on one event loop for a minute. Each test
below causes one of these for real and checks what the lab does about it.

Processes are only ever signalled by the pids these tests started or read from
``serve()``. The machine is small and shared: assertions are on counts, kinds and
ratios, and every wait is bounded.
"""

import _thread
import json
import os
import queue
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import httpx
import psutil
import pytest
from procs import descendants, snapshot, wait_gone
from runners import other_runners, spec_id

from conclab.base.errors import ServerStartError
from conclab.base.specs import LoadSpec, ServerSpec
from conclab.figures.experiment import (
    Experiment,
    Job,
    figure,
    measure,
    point_doc,
    read_point,
    save_png,
)
from conclab.figures.registry import REGISTRY
from conclab.measuring import stats
from conclab.measuring.driver import run_load
from conclab.measuring.results import (
    machine,
    now_iso,
    read_json,
    read_records,
    save_run,
    write_json,
)
from conclab.processes import launcher
from conclab.processes.launcher import serve

pytestmark = pytest.mark.faults

CONCLAB = str(Path(sys.executable).with_name("conclab"))
CONNECTION_ERRORS = {"refused", "disconnected", "reset"}


# --- helpers -----------------------------------------------------------------


def wait_for(predicate, timeout, what):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.05)
    raise AssertionError(f"timed out after {timeout:g} s waiting for {what}")


def at(seconds, action, *args):
    """Run action(*args) in `seconds`; the returned dict gets the monotonic_ns it ran at."""
    box = {}

    def run():
        time.sleep(seconds)
        box["ns"] = time.monotonic_ns()
        action(*args)

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    box["thread"] = thread
    return box


def one_line_error(stderr):
    assert "Traceback" not in stderr, stderr
    lines = [line for line in stderr.strip().splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("conclab: error: "), stderr
    return lines[0]


class Cli:
    """`conclab ...` in its own session (so a SIGINT to its group is a terminal's
    Ctrl-C), with stdout read line by line in the background."""

    def __init__(self, *args, env=None):
        self.proc = subprocess.Popen(
            [CONCLAB, *map(str, args)],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=dict(os.environ, PYTHONUNBUFFERED="1", **(env or {})),
            start_new_session=True,
        )
        self.lines = queue.Queue()
        self.out, self.err = [], []
        self.readers = [
            threading.Thread(target=self._read, daemon=True),
            threading.Thread(target=lambda: self.err.extend(self.proc.stderr), daemon=True),
        ]
        for reader in self.readers:
            reader.start()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGKILL)
        self.proc.wait(10)
        for reader in self.readers:
            reader.join(10)
        self.proc.stdout.close()
        self.proc.stderr.close()

    def _read(self):
        for line in self.proc.stdout:
            self.out.append(line)
            self.lines.put(line)
        self.lines.put(None)

    def wait_line(self, needle, timeout=60.0):
        deadline = time.monotonic() + timeout
        while True:
            line = self.lines.get(timeout=max(0.01, deadline - time.monotonic()))
            assert line is not None, (
                f"conclab exited before printing {needle!r}: {''.join(self.err)}"
            )
            if needle in line:
                return line

    def processes(self):
        """Every process below conclab right now: the guard and the server."""
        return snapshot(p.pid for p in descendants(self.proc.pid))

    def finish(self, timeout=60.0):
        """Wait for the exit: (exit code, stdout, stderr)."""
        self.proc.wait(timeout=timeout)
        for reader in self.readers:
            reader.join(10)
        return self.proc.returncode, "".join(self.out), "".join(self.err)


# --- 1. a Gunicorn worker killed mid-run ----------------------------------------------


def test_a_killed_gunicorn_worker_is_restarted_and_its_requests_are_counted_as_errors(tmp_path):
    spec = ServerSpec("wsgi", workers=2, threads=4)
    with serve(spec) as server:
        victim, survivor = server.worker_pids
        kill = at(1.0, os.kill, victim, signal.SIGKILL)
        result = run_load(
            server.url, path="/io?ms=100", concurrency=16, duration=5, progress=False, warn=False
        )
        kill["thread"].join()
        workers_after = wait_for(
            lambda: (w := server.worker_pids) and len(w) == 2 and victim not in w and w,
            10,
            "Gunicorn to replace the killed worker",
        )
        log = server.log()

    assert f"Worker (pid:{victim}) was sent SIGKILL" in log
    assert survivor in workers_after
    (replacement,) = set(workers_after) - {survivor}
    assert f"Booting worker with pid: {replacement}" in log

    s = result.summary
    assert result.failed is None and not result.interrupted  # the run went on to its end
    assert s.error_count >= 1 and set(s.errors) <= CONNECTION_ERRORS, s.errors
    failed = [r for r in result.records if r[4]]
    assert len(failed) == s.error_count  # one record per failed request, none hidden by a retry
    assert all(r[2] >= kill["ns"] for r in failed)  # they failed when the worker died, not before
    assert s.completed > 10 * s.error_count

    # The error count reaches the terminal summary, the saved run and the figure.
    assert f"errors      {s.error_count}" in stats.format_summary(s)
    doc = save_run(result, json_path=tmp_path / "run.json", records_path=tmp_path / "run.csv")
    assert read_json(tmp_path / "run.json")["errors"] == s.errors and doc["status"] == "complete"
    assert len(read_records(tmp_path / "run.csv")) == s.sent
    job = Job(spec.label, spec, result.load, x=16)
    data = {
        "name": "wsgi_vs_asgi",
        "title": "a worker killed mid-run",
        "lesson": "",
        "quick": True,
        "machine": machine(),
        "time": now_iso(),
        "client_cpu": None,
        "points": [point_doc(job, result)],
    }
    texts = [t.get_text() for t in figure(REGISTRY["wsgi_vs_asgi"], data).texts]
    assert any(f"{s.error_count} failed requests in 1 of 1 runs" in t for t in texts), texts
    assert save_png(REGISTRY["wsgi_vs_asgi"], data, tmp_path / "fig.png").stat().st_size > 0


# --- 2. the whole server killed mid-run --------------------------------------------------


@pytest.mark.parametrize(
    "spec,load",
    [
        pytest.param(
            ServerSpec("wsgi", workers=2),
            {"path": "/io?ms=100", "concurrency": 8},
            id="gunicorn-closed-loop",
        ),
        pytest.param(
            ServerSpec("asgi"), {"path": "/io?ms=100", "rate": 50}, id="uvicorn-open-loop"
        ),
        pytest.param(
            ServerSpec("asgi"),
            {"path": "/io?ms=500", "concurrency": 200},
            id="uvicorn-200-in-flight",
        ),
        *(
            pytest.param(spec, {"path": "/io?ms=100", "rate": 50}, id=f"{spec_id(spec)}-open-loop")
            for spec in other_runners()
        ),  # every other runner of conclab.base.servers
    ],
)
def test_a_server_killed_mid_run_stops_the_driver_early_with_a_reason(spec, load):
    with serve(spec) as server:
        procs = snapshot(server.pids)
        at(1.0, os.killpg, server.pgid, signal.SIGKILL)
        started = time.monotonic()
        result = run_load(server.url, duration=60, timeout=10, progress=False, warn=False, **load)
        took = time.monotonic() - started
    assert took < 1.0 + 10 + 10  # asked for 60 s; stopped within the request timeout of the death
    assert result.failed and result.failed.startswith("the server ")
    s = result.summary
    assert s.failed == result.failed
    assert s.completed > 0  # what was measured before is kept
    assert s.errors and set(s.errors) <= CONNECTION_ERRORS, s.errors
    assert not wait_gone(procs)


def test_bench_whose_server_dies_saves_what_it_measured_and_fails_in_one_line(tmp_path):
    out_json, out_csv = tmp_path / "run.json", tmp_path / "run.csv"
    with Cli(
        "bench",
        "--server",
        "wsgi",
        "--workers",
        "2",
        "--path",
        "/io?ms=100",
        "--concurrency",
        "8",
        "--duration",
        "60",
        "--json",
        out_json,
        "--records",
        out_csv,
        "--no-progress",
    ) as cli:
        cli.wait_line(" on http://127.0.0.1:")
        procs = cli.processes()
        (guard,) = [p for p in procs if p.ppid() == cli.proc.pid]
        time.sleep(1.0)
        os.killpg(guard.pid, signal.SIGKILL)  # the guard leads the server's own process group
        code, stdout, stderr = cli.finish(timeout=40)
    assert code == 1
    assert one_line_error(stderr).startswith("conclab: error: the server ")
    assert "run FAILED" in stdout
    doc = read_json(out_json)
    assert doc["status"] == "failed" and doc["failed"].startswith("the server ")
    assert doc["completed"] > 0
    assert len(read_records(out_csv)) == doc["sent"]
    assert not wait_gone(procs)


# --- 3. Ctrl-C -------------------------------------------------------------------------


def point_files(folder):
    return {
        p.name: (p.stat().st_mtime_ns, read_point(read_json(p)))
        for p in sorted(folder.glob("*.json"))
    }


def test_ctrl_c_during_a_charts_sweep_keeps_finished_points_and_a_rerun_measures_only_the_rest(
    tmp_path,
):
    results_dir, figures = tmp_path / "results", tmp_path / "figures"
    args = ("charts", "--only", "blocking", "--out", figures, "--results", results_dir)
    points = results_dir / "blocking"
    with Cli(*args, env={"CONCLAB_QUICK": "1"}) as cli:
        wait_for(
            lambda: list(points.glob("*.json")) or cli.proc.poll() is not None,
            90,
            "the first point",
        )
        time.sleep(0.7)  # into the next point's run, most likely: its partial result is saved too
        assert cli.proc.poll() is None, "the sweep ended before it could be interrupted"
        procs = cli.processes()
        assert procs, "no server was running"
        os.killpg(cli.proc.pid, signal.SIGINT)  # Ctrl-C: SIGINT to the terminal's foreground group
        code, _, stderr = cli.finish(timeout=60)
    assert code == 130
    assert "Traceback" not in stderr and "interrupted" in stderr
    assert not wait_gone(procs)  # the server went with it

    before = point_files(points)  # every file is whole, readable JSON
    assert not list(points.glob(".*.tmp"))
    assert {doc["status"] for _, doc in before.values()} <= {"complete", "interrupted"}
    for _, doc in before.values():
        assert doc["status"] == "complete" or doc["summary"].interrupted
    done = {name for name, (_, doc) in before.items() if doc["status"] == "complete"}
    assert done

    again = subprocess.run(
        [CONCLAB, *map(str, args)],
        capture_output=True,
        text=True,
        timeout=180,
        env=dict(os.environ, CONCLAB_QUICK="1"),
    )
    assert again.returncode == 0, again.stderr[-2000:]
    after = point_files(points)
    assert len(after) == len(REGISTRY["blocking"].jobs(True))
    assert all(doc["status"] == "complete" for _, doc in after.values())
    for name in done:  # finished points were reused, not measured again
        assert after[name] == before[name]
    assert (figures / "blocking.png").exists() and read_json(figures / "data" / "blocking.json")[
        "points"
    ]


def test_ctrl_c_during_bench_saves_a_partial_run_marked_interrupted(tmp_path):
    out_json, out_csv = tmp_path / "run.json", tmp_path / "run.csv"
    args = (
        "bench",
        "--server",
        "asgi",
        "--path",
        "/io?ms=50",
        "--concurrency",
        "8",
        "--json",
        out_json,
        "--records",
        out_csv,
        "--no-progress",
    )
    with Cli(*args, "--duration", "60") as cli:
        cli.wait_line(" on http://127.0.0.1:")
        procs = cli.processes()
        time.sleep(1.5)
        os.killpg(cli.proc.pid, signal.SIGINT)
        code, stdout, stderr = cli.finish(timeout=40)
    assert code == 130 and "Traceback" not in stderr
    assert "INTERRUPTED" in stdout
    doc = read_json(out_json)
    assert doc["status"] == "interrupted" and doc["interrupted"] is True
    assert doc["completed"] > 0
    assert len(read_records(out_csv)) == doc["sent"]
    assert not wait_gone(procs)

    # A bench run is one point: running it again redoes it, replacing the partial files.
    again = subprocess.run(
        [CONCLAB, *map(str, args), "--duration", "1"], capture_output=True, text=True, timeout=60
    )
    assert again.returncode == 0, again.stderr[-2000:]
    assert read_json(out_json)["status"] == "complete"


def test_ctrl_c_while_a_server_starts_leaves_no_server_and_the_caller_lives_on():
    """A notebook kernel survives Ctrl-C: the half-started server must not."""
    me = psutil.Process()
    before = {p.pid for p in me.children()}
    armed = threading.Event()
    armed.set()
    seen = {}

    def interrupt_once_the_server_process_exists():
        deadline = time.monotonic() + 20
        while armed.is_set() and time.monotonic() < deadline:
            for guard in me.children():
                if guard.pid not in before and guard.children():
                    seen["procs"] = [guard, *guard.children(recursive=True)]
                    if armed.is_set():
                        _thread.interrupt_main()
                    return
            time.sleep(0.01)

    watcher = threading.Thread(target=interrupt_once_the_server_process_exists, daemon=True)
    watcher.start()
    entered = False
    try:
        with pytest.raises(KeyboardInterrupt):
            with serve(ServerSpec("wsgi", workers=2)):
                entered = True
                time.sleep(10)
    finally:
        armed.clear()
        watcher.join(25)
    assert seen, "the server process never appeared"
    assert not entered, (
        "the interrupt came after the server was up: the startup path was not exercised"
    )
    assert not wait_gone(seen["procs"])


# --- 4. a handler slower than Gunicorn's --timeout --------------------------------------


def test_a_handler_past_gunicorns_timeout_gets_its_worker_replaced_and_the_driver_reports_it():
    with serve(ServerSpec("wsgi", timeout=2)) as server:
        (worker,) = server.worker_pids
        result = run_load(
            server.url,
            path="/io?ms=4000",
            concurrency=1,
            requests=1,
            timeout=30,
            progress=False,
            warn=False,
        )
        wait_for(
            lambda: server.worker_pids and worker not in server.worker_pids, 10, "a new worker"
        )
        assert httpx.get(server.url + "/hello", timeout=10, trust_env=False).status_code == 200
        log = server.log()
    assert f"WORKER TIMEOUT (pid:{worker})" in log
    s = result.summary
    assert result.failed is None
    # Gunicorn 27 answers 500 itself as the worker dies; older ones just close the socket.
    assert s.error_count == 1 and set(s.errors) <= {"http_500", "disconnected", "reset"}, s.errors
    assert result.records[0][6] == 0  # no X-Worker-Pid: the app never finished the request


# --- 6. two labs at once ------------------------------------------------------------------


def answers_for_itself(server):
    r = httpx.get(server.url + "/health", timeout=10, trust_env=False)
    return r.status_code == 200 and int(r.headers["x-worker-pid"]) in server.pids


def test_servers_started_at_the_same_time_get_their_own_ports():
    specs = [
        ServerSpec("asgi"),
        ServerSpec("asgi"),
        ServerSpec("wsgi"),
        ServerSpec("wsgi", threads=2),
    ]
    barrier = threading.Barrier(len(specs))
    release = threading.Event()
    found, errors = [], []

    def one(spec):
        try:
            barrier.wait(timeout=30)
            with serve(spec) as server:
                found.append((server.port, answers_for_itself(server), server.log()))
                release.wait(60)
        except Exception as err:  # noqa: BLE001 - reported below
            errors.append(err)

    threads = [threading.Thread(target=one, args=(spec,)) for spec in specs]
    for t in threads:
        t.start()
    wait_for(lambda: len(found) + len(errors) == len(specs), 60, "all servers")
    release.set()
    for t in threads:
        t.join(30)
    assert not errors
    assert len({port for port, _, _ in found}) == len(specs)
    assert all(ok for _, ok, _ in found)
    assert not any(
        "Control socket" in log for _, _, log in found
    )  # no shared ~/.gunicorn/gunicorn.ctl


def test_a_port_another_server_holds_is_never_handed_back(monkeypatch):
    with serve(ServerSpec("asgi")) as other:
        with pytest.raises(ServerStartError, match="already in use") as info:
            with serve(ServerSpec("asgi", port=other.port)):
                pass
        assert info.value.port_in_use
        # Two labs picked the same free port at once: the loser must move on, not
        # take the winner's /health answer as its own.
        ports = iter([other.port])
        real_free_port = launcher.free_port
        monkeypatch.setattr(launcher, "free_port", lambda: next(ports, None) or real_free_port())
        with serve(ServerSpec("asgi")) as mine:
            assert mine.port != other.port
            assert answers_for_itself(mine) and answers_for_itself(other)


def test_two_sweeps_at_once_keep_their_own_results(tmp_path):
    exp = Experiment(
        "tiny",
        "tiny",
        "",
        lambda quick: [
            Job("state", ServerSpec("asgi"), LoadSpec(path="/state", concurrency=2, requests=30))
        ],
        draw=lambda data, fig: None,
    )
    out, errors = {}, []

    def sweep(name):
        try:
            out[name] = measure(exp, quick=True, results_dir=tmp_path / name, progress=False)
        except Exception as err:  # noqa: BLE001 - reported below
            errors.append(err)

    threads = [threading.Thread(target=sweep, args=(name,)) for name in ("a", "b")]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert not errors
    files = {name: list((tmp_path / name / "tiny").glob("*.json")) for name in ("a", "b")}
    assert [len(f) for f in files.values()] == [1, 1]
    pids = {name: read_point(read_json(f[0]))["summary"].worker_pids for name, f in files.items()}
    assert pids["a"] != pids["b"]  # each sweep measured its own server
    assert all(read_point(read_json(f[0]))["summary"].completed == 30 for f in files.values())


WRITER = """
import sys
from conclab.measuring.results import write_json
path, me = sys.argv[1], sys.argv[2]
for i in range(150):
    write_json(path, {"writer": me, "i": i, "pad": me * 200_000})
"""


def test_concurrent_writes_of_one_results_file_never_tear_it(tmp_path):
    path = tmp_path / "point.json"
    write_json(path, {"writer": "0", "i": -1, "pad": "0" * 200_000})
    writers = [subprocess.Popen([sys.executable, "-c", WRITER, str(path), me]) for me in "ab"]
    reads = 0
    try:
        while any(w.poll() is None for w in writers):
            doc = json.loads(path.read_text())  # a torn file would not parse
            assert doc["pad"] == doc["writer"] * 200_000
            reads += 1
    finally:
        for w in writers:
            w.wait(60)
    assert [w.returncode for w in writers] == [0, 0]
    assert reads > 0
    assert json.loads(path.read_text())["i"] == 149
    assert [p.name for p in tmp_path.iterdir()] == ["point.json"]  # no temporary left behind


# --- 7. load held -------------------------------------------------------------------------


def test_records_past_max_records_are_counted_not_kept():
    with serve(ServerSpec("asgi")) as server:
        result = run_load(
            server.url,
            path="/hello",
            concurrency=20,
            requests=3000,
            max_records=500,
            progress=False,
            warn=False,
        )
    assert len(result.records) == 500
    assert result.dropped_records == 2500 and result.summary.dropped_records == 2500


@pytest.mark.slow
@pytest.mark.stage  # a minute of soak: a long CI stage (make test-stages), not make test
def test_uvicorn_holds_1000_slow_connections_for_a_minute_and_the_driver_stays_bounded(
    record_property, capsys
):
    me = psutil.Process()
    with serve(ServerSpec("asgi")) as server:
        (worker,) = server.worker_pids
        rss0 = me.memory_info().rss
        samples, server_rss = [rss0], []
        done = threading.Event()

        def sample():
            while not done.wait(0.5):
                samples.append(me.memory_info().rss)
                if len(samples) == 60:  # ~30 s in: the server at full load
                    server_rss.append(server.rss_bytes())

        sampler = threading.Thread(target=sample, daemon=True)
        sampler.start()
        try:
            result = run_load(
                server.url,
                path="/io?ms=1000",
                concurrency=1000,
                duration=60,
                timeout=30,
                progress=False,
                warn=False,
            )
        finally:
            done.set()
            sampler.join(5)
    s = result.summary
    c = result.columns()
    growth_mb = (max(samples) - rss0) / 2**20
    overlap = stats.max_overlap(c["server_start_ns"], c["server_end_ns"])
    report = {
        "requests": s.sent,
        "throughput_rps": round(s.throughput_rps, 1),
        "driver_rss_start_mb": round(rss0 / 2**20, 1),
        "driver_rss_peak_mb": round(max(samples) / 2**20, 1),
        "driver_rss_growth_mb": round(growth_mb, 1),
        "server_pss_under_load_mb": round(server_rss[0] / 2**20, 1) if server_rss else None,
        "max_in_flight_on_server": overlap,
        "client_cpu": round(s.client_cpu, 2),
    }
    for key, value in report.items():
        record_property(key, value)
    with capsys.disabled():
        print(f"\n1,000 connections x 60 s: {report}")

    assert result.failed is None and s.errors == {}
    assert result.dropped_records == 0 and len(result.records) == s.sent
    assert (c["status"] == 200).all() and (
        c["worker_pid"] == worker
    ).all()  # the server answered every one
    assert s.sent >= 40_000  # ~1,000 users x 60 s / 1 s each, less a noisy machine's share
    assert overlap >= 900  # the one event loop really held ~1,000 requests at once
    assert growth_mb < 200
