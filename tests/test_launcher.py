"""The launcher starts real servers and must always stop them - even when its caller dies.

Processes are only ever signalled by the pids these tests started or were told
about; "gone" means no such process, or a zombie waiting to be reaped by init.
"""

import contextlib
import dataclasses
import json
import queue
import re
import signal
import socket
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path

import httpx
import psutil
import pytest
from procs import descendants, kill_leftovers, snapshot, wait_gone
from runners import each_app_and_runner, other_runners, spec_id

from conclab.base.errors import ServerStartError, SpecError
from conclab.base.specs import ServerSpec
from conclab.measuring.theory import server_cores
from conclab.processes import launcher
from conclab.processes.launcher import free_port, serve

CONCLAB = str(Path(sys.executable).with_name("conclab"))


# --- helpers -----------------------------------------------------------------


def processes_mentioning(text):
    """Running processes whose command line contains ``text`` (a unique path or port)."""
    found = []
    for p in psutil.process_iter(["cmdline", "status"]):
        if p.info["status"] != psutil.STATUS_ZOMBIE and text in " ".join(p.info["cmdline"] or []):
            found.append(p)
    return found


class LineReader:
    """Read a child's stdout line by line, with a timeout on every wait."""

    def __init__(self, stream):
        self.lines = queue.Queue()
        self.seen = []
        self._thread = threading.Thread(target=self._pump, args=(stream,), daemon=True)
        self._thread.start()

    def _pump(self, stream):
        for line in stream:
            self.lines.put(line)
        self.lines.put(None)

    def until(self, predicate, timeout):
        deadline = time.monotonic() + timeout
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise AssertionError(f"timed out; output so far: {''.join(self.seen)!r}")
            try:
                line = self.lines.get(timeout=remaining)
            except queue.Empty:
                continue
            if line is None:
                raise AssertionError(f"output ended; it was: {''.join(self.seen)!r}")
            self.seen.append(line)
            if predicate(line):
                return line


def stop_child(proc):
    """Make sure a child we started is dead, reaped and its pipes closed."""
    if proc.poll() is None:
        proc.kill()
    proc.wait(timeout=10)
    for stream in (proc.stdout, proc.stderr):
        if stream:
            stream.close()


# --- serve(): the happy path ---------------------------------------------------


@pytest.mark.parametrize(
    "spec",
    [
        ServerSpec("wsgi", workers=2),
        ServerSpec("asgi"),
        ServerSpec("asgi", workers=2),
        ServerSpec("fastapi"),
        ServerSpec("fastapi", manager="gunicorn", workers=2),
        *other_runners(workers=2),
    ],
    ids=lambda s: s.label,
)
def test_serve_yields_url_and_pids_and_leaves_no_process(spec):
    with serve(spec) as server:
        assert re.fullmatch(r"http://127\.0\.0\.1:\d+", server.url)
        assert server.url.endswith(f":{server.port}")
        assert isinstance(server.master_pid, int)
        assert len(server.worker_pids) == spec.workers
        r = httpx.get(server.url + "/state", timeout=10, trust_env=False)
        assert r.status_code == 200
        assert r.json()["pid"] in server.worker_pids
        pids = {server.guard_pid, server.master_pid, *server.worker_pids, *server.pids}
        procs = snapshot(pids)
        assert len(procs) == len(pids)  # every reported pid was a live process
    try:
        assert wait_gone(procs, timeout=5) == []
    finally:
        kill_leftovers(procs)
    with pytest.raises(httpx.ConnectError):
        httpx.get(server.url + "/health", timeout=2, trust_env=False)
    # A stopped server has no pids left to report - and asking is not an error
    # (a server that dies while starting is asked exactly this).
    assert (server.master_pid, server.worker_pids) == (None, [])


@pytest.mark.parametrize(
    "spec", [s for s in each_app_and_runner() if s.interface == "asgi"], ids=spec_id
)
def test_a_server_busy_with_a_request_stops_within_its_grace_and_leaves_no_process(spec):
    # Granian does not stop an ASGI app with a request in flight: the KILL after the
    # grace must. The app's process pool (started at lifespan startup) goes too.
    def slow(url):
        with contextlib.suppress(httpx.HTTPError):
            httpx.get(url + "/io?ms=30000", timeout=40, trust_env=False)

    with serve(spec) as server:
        httpx.get(server.url + "/process-cpu?ms=1", timeout=10, trust_env=False).raise_for_status()
        threading.Thread(target=slow, args=(server.url,), daemon=True).start()
        time.sleep(0.3)
        procs = snapshot(server.pids)
        assert pool_processes(server.worker_pids)
        started = time.monotonic()
    try:
        assert time.monotonic() - started < spec.runner.grace + 3
        assert wait_gone(procs, timeout=5) == []
    finally:
        kill_leftovers(procs)


class Boom(Exception):
    pass


def test_server_stops_after_an_exception_in_the_block():
    with pytest.raises(Boom), serve(ServerSpec("wsgi")) as server:
        procs = snapshot(server.pids)
        raise Boom
    try:
        assert wait_gone(procs, timeout=5) == []
    finally:
        kill_leftovers(procs)


# --- failed starts -------------------------------------------------------------


RUNNER_PER_INTERFACE = [spec for spec in each_app_and_runner() if spec.kind != "fastapi"]


@pytest.mark.parametrize("base", RUNNER_PER_INTERFACE, ids=spec_id)
def test_broken_app_raises_start_error_quoting_the_server(tmp_path, base):
    (tmp_path / "broken.py").write_text("def app(:\n    pass\n")
    spec = dataclasses.replace(base, app="broken:app", app_dir=str(tmp_path))
    started = time.monotonic()
    with pytest.raises(ServerStartError) as info:
        with serve(spec, start_timeout=15):
            pytest.fail("a broken app must not start")
    assert time.monotonic() - started < 15
    message = str(info.value)
    assert "exited while starting" in message  # it noticed the exit, no timeout needed
    assert "SyntaxError" in info.value.output  # the server's own words
    assert info.value.output in message and not info.value.port_in_use
    assert wait_gone(processes_mentioning(str(tmp_path)), timeout=5) == []


@pytest.mark.parametrize("base", RUNNER_PER_INTERFACE, ids=spec_id)
def test_taken_port_raises_start_error_quoting_the_server(base):
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        spec = dataclasses.replace(base, port=port)
        started = time.monotonic()
        with pytest.raises(ServerStartError) as info:
            # Gunicorn retries the bind for ~5 s before it gives up.
            with serve(spec, start_timeout=20):
                pytest.fail("the port was taken")
        assert time.monotonic() - started < 20
    err = info.value
    assert "exited while starting" in str(err)
    assert err.port_in_use and f"port {port} is in use" in str(err)
    assert err.output and err.output in str(err) and err.command == tuple(spec.command(port))
    assert wait_gone(processes_mentioning(" ".join(spec.command(port))), timeout=5) == []


FAKE_APP = """
# An app whose server words its failure its own way: on port {port} it says nothing
# of "in use" and exits; on any other port it is the raw ASGI app.
import os, sys
if "{port}" in sys.argv:
    print("kaput: cannot open the listening socket", file=sys.stderr, flush=True)
    os._exit(3)
sys.path.insert(0, {servers!r})
from asgi_minimal import app
"""


def test_a_reworded_server_message_still_triggers_the_port_retry(tmp_path, monkeypatch):
    from conclab.base.paths import SERVERS_DIR

    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        (tmp_path / "fakeapp.py").write_text(FAKE_APP.format(port=port, servers=str(SERVERS_DIR)))
        spec = ServerSpec("asgi", app="fakeapp:app", app_dir=str(tmp_path))
        # Fixed on the taken port: one attempt, and the error knows the port was taken.
        with pytest.raises(ServerStartError) as info:
            with serve(dataclasses.replace(spec, port=port)):
                pytest.fail("the port was taken")
        assert (
            info.value.port_in_use
            and "kaput" in info.value.output
            and "in use" not in info.value.output
        )
        # A free port that is taken by the time the server binds it: the launcher moves on.
        ports = iter([port])
        real_free_port = launcher.free_port
        monkeypatch.setattr(launcher, "free_port", lambda: next(ports, None) or real_free_port())
        with serve(spec) as server:
            assert server.port != port
            assert httpx.get(server.url + "/hello", timeout=10, trust_env=False).text == "hello\n"


# A Gunicorn log as it ends when its master dies of its own HaltServer: the app's error
# first, in the first worker that failed to boot, then 30-odd lines of the master's.
GUNICORN_LOG = (
    "[INFO] Booting worker with pid: 11\n"
    "[ERROR] Exception in worker process\n"
    "Traceback (most recent call last):\n"
    '  File "/venv/gunicorn/arbiter.py", line 752, in spawn_worker\n'
    "    worker.init_process()\n"
    '  File "/lab/app.py", line 3, in <module>\n'
    '    raise RuntimeError("boom")\n'
    "RuntimeError: boom\n"
    "[INFO] Worker exiting (pid: 11)\n"
    "[ERROR] Worker (pid:12) exited with code 3.\n"
    "Traceback (most recent call last):\n"
    + '  File "/venv/gunicorn/arbiter.py", line 683, in reap_workers\n    self.stop()\n' * 16
    + "gunicorn.errors.HaltServer: <HaltServer 'Worker failed to boot.' 3>\n"
)


def test_a_failed_start_quotes_the_apps_error_above_a_long_end_of_the_log():
    output = launcher.start_output(GUNICORN_LOG)
    assert 'File "/lab/app.py", line 3' in output and "RuntimeError: boom" in output
    assert output.endswith("HaltServer 'Worker failed to boot.' 3>")  # the end, as before
    assert "[INFO] Booting worker" not in output  # nothing else from before the end
    short = "\n".join(GUNICORN_LOG.splitlines()[:12])
    assert launcher.start_output(short) == short  # a short log is quoted whole
    no_traceback = "\n".join(f"line {i}" for i in range(40))
    assert launcher.start_output(no_traceback) == "\n".join(f"line {i}" for i in range(15, 40))


def test_a_gunicorn_app_that_raises_on_import_in_4_workers_is_quoted_with_its_error(tmp_path):
    # Timing decides whether Gunicorn's master ends the log with its own long traceback
    # (see start_output); the app's error is quoted either way.
    (tmp_path / "crash.py").write_text('raise RuntimeError("boom")\n')
    spec = ServerSpec("wsgi", workers=4, app="crash:app", app_dir=str(tmp_path))
    with pytest.raises(ServerStartError) as info:
        with serve(spec, start_timeout=15):
            pytest.fail("an app that raises on import must not start")
    assert 'crash.py", line 1' in info.value.output and "RuntimeError: boom" in info.value.output
    # The master's own exit code (3: a worker failed to boot; 1: it died of its own halt),
    # not the KILL its guard ends the group with.
    assert re.search(r"exited while starting \(code [13]\)", info.value.reason), info.value.reason
    assert wait_gone(processes_mentioning(str(tmp_path)), timeout=5) == []


@pytest.mark.parametrize(
    "bad",
    [
        {"kind": "django"},
        {"workers": 0},
        {"workers": 65},
        {"workers": -1},
        {"workers": "2"},
        {"workers": 2.0},
        {"threads": 0},
        {"threadpool": 0},
        {"timeout": 0},
        {"limit_concurrency": 0},
        {"loop": "trio"},
        {"http": "h2"},
        {"worker_class": "gevent"},
        {"kind": "django"},
        {"manager": "nginx"},
        {"manager": "uvicorn", "kind": "wsgi"},
        {"manager": "gunicorn", "kind": "fastapi", "http": "h11"},
        {"manager": "granian", "kind": "asgi", "limit_concurrency": 8},
        {"config": "gunicorn.conf.py", "manager": "uvicorn"},
        {"port": 0},
        {"port": 70000},
        {"port": "8000"},
    ],
    ids=lambda d: "-".join(f"{k}={v!r}" for k, v in d.items()),
)
def test_server_spec_rejects_bad_values(bad):
    with pytest.raises(ValueError, match=next(iter(bad))):
        ServerSpec(**bad)


def test_a_package_the_runner_needs_missing_is_one_line_before_anything_starts(monkeypatch):
    from conclab.base import servers

    app = servers.APPS["asgi"]
    monkeypatch.setitem(
        servers.APPS, "asgi", dataclasses.replace(app, needs=("no_such_package_here",))
    )
    with pytest.raises(SpecError, match="needs no_such_package_here, not installed") as info:
        with serve(ServerSpec("asgi")):
            pytest.fail("must not start")
    assert "\n" not in str(info.value)


def test_serve_rejects_bad_overrides_before_starting_anything():
    with pytest.raises(ValueError, match="workers"):
        with serve(ServerSpec("asgi"), workers=0):
            pytest.fail("must not start")


# --- no server outlives its parent ----------------------------------------------

CHILD = textwrap.dedent(
    """
    import json, sys, time
    from conclab.base.specs import ServerSpec
    from conclab.processes.launcher import serve

    import httpx

    kind, workers, manager = sys.argv[1], int(sys.argv[2]), sys.argv[3] or None
    with serve(ServerSpec(kind, workers=workers, manager=manager)) as server:
        if kind != "wsgi":  # put the app's process pool to work
            httpx.get(server.url + "/process-cpu?ms=1", trust_env=False).raise_for_status()
        print(json.dumps({"pids": server.pids, "workers": server.worker_pids}), flush=True)
        time.sleep(60)
    """
)


def pool_processes(workers, want: int = 1, timeout: float = 10.0):
    """The processes of the app's process pools: children of the workers that
    multiprocessing started (the resource tracker aside), once ``want`` of them are
    there or ``timeout`` has passed. A pool process just forked shows its worker's
    command line until it has exec'd, so it is counted once it has."""
    deadline = time.monotonic() + timeout
    while True:
        found = []
        for p in snapshot(workers):
            with contextlib.suppress(psutil.Error):
                found += [
                    c for c in p.children() if "multiprocessing.spawn" in " ".join(c.cmdline())
                ]
        if len(found) >= want or time.monotonic() > deadline:
            return found
        time.sleep(0.1)


@pytest.mark.faults
@pytest.mark.parametrize(
    "kind,workers,manager",
    [
        ("wsgi", 2, ""),
        ("asgi", 1, ""),
        ("fastapi", 1, ""),
        ("fastapi", 2, "gunicorn"),
        *((spec.kind, 1, spec.manager) for spec in other_runners() if spec.manager != "gunicorn"),
    ],
)
def test_sigkilled_parent_leaves_no_server_behind(tmp_path, kind, workers, manager):
    script = tmp_path / "child.py"
    script.write_text(CHILD)
    child = subprocess.Popen(
        [sys.executable, str(script), kind, str(workers), manager],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    procs = []
    try:
        line = LineReader(child.stdout).until(lambda line: line.startswith("{"), timeout=30)
        pids, worker_pids = json.loads(line)["pids"], json.loads(line)["workers"]
        procs = snapshot(pids)
        assert len(procs) == len(pids) >= 2  # the guard and the server, all running
        if kind != "wsgi":  # one pool process per usable core, in every worker
            cores = server_cores(ServerSpec(kind))
            pool = pool_processes(worker_pids, workers * cores)
            assert (
                len(worker_pids) == workers
                and len(pool) == workers * cores
                and {p.pid for p in pool} <= set(pids)
            )
        child.send_signal(signal.SIGKILL)
        child.wait(timeout=5)
        assert wait_gone(procs, timeout=5) == []
    finally:
        stop_child(child)
        kill_leftovers(procs)


# --- the CLI ---------------------------------------------------------------------


@pytest.mark.faults
def test_cli_serves_until_ctrl_c_then_exits_cleanly():
    port = free_port()
    proc = subprocess.Popen(
        [CONCLAB, "serve", "asgi", "--port", str(port)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    procs = []
    try:
        reader = LineReader(proc.stdout)
        reader.until(lambda line: "Serving until Ctrl-C" in line, timeout=30)
        banner = "".join(reader.seen)
        assert f"http://127.0.0.1:{port}" in banner
        found = re.search(r"pids: guard (\d+), master (\d+), workers \[([\d, ]+)\]", banner)
        assert found, banner
        # For one Uvicorn process the master is the worker: {guard, uvicorn}.
        pids = {int(found[1]), int(found[2]), *map(int, found[3].split(","))}
        procs = snapshot(pids)
        assert len(procs) == len(pids) == 2
        assert (
            httpx.get(f"http://127.0.0.1:{port}/health", timeout=5, trust_env=False).text == "ok\n"
        )

        proc.send_signal(signal.SIGINT)
        assert proc.wait(timeout=15) == 0, proc.stderr.read()
        assert wait_gone(procs, timeout=5) == []
        reader.until(lambda line: "no server process left" in line, timeout=5)
    finally:
        stop_child(proc)
        kill_leftovers(procs)


@pytest.mark.faults
@pytest.mark.parametrize("manager", ["uvicorn", "gunicorn"])
def test_sigkilled_cli_serving_fastapi_leaves_no_process(manager):
    port = free_port()
    proc = subprocess.Popen(
        [CONCLAB, "serve", "fastapi", "--manager", manager, "--workers", "2", "--port", str(port)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    procs = []
    try:
        reader = LineReader(proc.stdout)
        reader.until(lambda line: "Serving until Ctrl-C" in line, timeout=30)
        banner = "".join(reader.seen)
        found = re.search(r"pids: guard (\d+), master (\d+), workers \[([\d, ]+)\]", banner)
        assert found, banner
        guard, workers = int(found[1]), [int(pid) for pid in found[3].split(",")]
        assert len(workers) == 2
        procs = snapshot([guard]) + descendants(guard)
        assert {p.pid for p in procs} >= {guard, int(found[2]), *workers}
        want = 2 * server_cores(ServerSpec("fastapi"))  # each worker's pool
        assert len(pool_processes(workers, want)) == want
        r = httpx.get(f"http://127.0.0.1:{port}/process-cpu?ms=1", timeout=10, trust_env=False)
        assert r.status_code == 200 and int(r.headers["x-worker-pid"]) in workers

        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=10)
        assert wait_gone(procs, timeout=10) == []
    finally:
        stop_child(proc)
        kill_leftovers(procs)


@pytest.mark.parametrize(
    "argv",
    [
        ["serve", "wsgi", "--manager", "uvicorn"],
        ["serve", "fastapi", "--manager", "gunicorn", "--loop", "uvloop"],
    ],
    ids=["wsgi-on-uvicorn", "gunicorn-with-a-loop"],
)
def test_cli_rejects_a_manager_that_cannot_run_the_app_with_one_line(argv):
    result = subprocess.run([CONCLAB, *argv], capture_output=True, text=True, timeout=30)
    assert result.returncode != 0
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "manager" in lines[0], result.stderr


def test_cli_rejects_zero_workers_with_one_line():
    result = subprocess.run(
        [CONCLAB, "serve", "wsgi", "--workers", "0"],
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert result.returncode != 0
    assert "Traceback" not in result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert "workers" in lines[0]
    assert result.stdout == ""
