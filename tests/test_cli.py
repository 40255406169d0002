"""`conclab bench`, run as a student would: a real command, a real server, real signals.

Processes are only ever signalled by the pids these tests started or found as
children of them; "gone" means no such process, or a zombie waiting for init.
"""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import psutil
import pytest
from procs import kill_leftovers, wait_gone

from conclab.base.specs import ServerSpec
from conclab.measuring.results import read_records
from conclab.measuring.theory import predict
from conclab.processes.launcher import free_port

CONCLAB = str(Path(sys.executable).with_name("conclab"))
ENV = dict(os.environ, PYTHONUNBUFFERED="1")


def conclab(*args, timeout=60):
    return subprocess.run(
        [CONCLAB, *args], capture_output=True, text=True, timeout=timeout, env=ENV
    )


# --- a normal run ----------------------------------------------------------------


def test_bench_prints_a_json_summary_on_stdout():
    done = conclab(
        "bench",
        "--server",
        "wsgi",
        "--path",
        "/io?ms=50",
        "--concurrency",
        "4",
        "--duration",
        "2",
        "--json",
        "-",
    )
    assert done.returncode == 0, done.stderr
    doc = json.loads(done.stdout)  # stdout is the JSON and nothing else
    for key in (
        "throughput_rps",
        "latency_ms",
        "completed",
        "errors",
        "client_cpu",
        "client_saturated",
        "load",
        "server",
    ):
        assert key in doc, key
    assert set(doc["latency_ms"]) >= {"p50", "p90", "p99", "max", "mean"}
    assert doc["load"]["concurrency"] == 4
    assert doc["load"]["path"] == "/io?ms=50"
    assert doc["server"]["spec"]["kind"] == "wsgi"
    assert doc["status"] == "complete"
    assert doc["errors"] == {}
    assert doc["completed"] > 0
    # One sync worker, 50 ms per request: ~20 rps, however many users.
    expected = predict(ServerSpec("wsgi"), "/io?ms=50", concurrency=4)
    assert doc["throughput_rps"] == pytest.approx(expected.throughput_rps, rel=0.15)
    # The human summary went to stderr, out of the JSON's way.
    assert "throughput" in done.stderr


def test_bench_reports_the_servers_cpu_time_per_request():
    # /cpu?ms=5 burns 5 ms of its thread's CPU time, so the server's cost per
    # request is 5,000 us plus its own HTTP work (a few hundred us).
    done = conclab(
        "bench",
        "--server",
        "asgi",
        "--path",
        "/cpu?ms=5",
        "--concurrency",
        "1",
        "--duration",
        "1",
        "--json",
        "-",
    )
    assert done.returncode == 0, done.stderr
    assert 5000 <= json.loads(done.stdout)["server_cpu_us_per_request"] < 7000
    assert "server CPU" in done.stderr


def test_bench_on_granian_names_the_runner_that_served():
    done = conclab(
        "bench",
        "--server",
        "asgi",
        "--manager",
        "granian",
        "--path",
        "/hello",
        "--requests",
        "200",
        "--concurrency",
        "4",
        "--json",
        "-",
        "--no-progress",
    )
    assert done.returncode == 0, done.stderr
    doc = json.loads(done.stdout)
    assert doc["server"]["runner"] == "granian" and doc["server"]["spec"]["manager"] == "granian"
    assert doc["server"]["command"][1:3] == ["-m", "granian"]
    assert doc["completed"] == 200 and doc["errors"] == {}
    assert "granian asgi 1w on http://127.0.0.1:" in done.stderr


def test_the_server_choices_and_help_come_from_the_tables():
    from conclab.base.servers import APPS, MANAGERS

    help_text = conclab("bench", "--help").stdout
    for word in [*APPS, *MANAGERS]:
        assert word in help_text, word


# --- bad input: one clear line, no traceback --------------------------------------


def one_line_error(done):
    assert done.returncode != 0
    assert "Traceback" not in done.stderr
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1, done.stderr
    assert lines[0].startswith("conclab: error:")
    return lines[0]


BASE = ["bench", "--path", "/hello", "--duration", "1"]


@pytest.mark.parametrize(
    "args,reason",
    [
        pytest.param(
            ["--server", "asgi", "--concurrency", "-4"],
            "positive integer",
            id="negative-concurrency",
        ),
        pytest.param(
            ["--server", "asgi", "--concurrency", "0"], "positive integer", id="zero-concurrency"
        ),
        pytest.param(
            ["--server", "asgi", "--concurrency", "4", "--rate", "10"],
            "exactly one of concurrency",
            id="both-concurrency-and-rate",
        ),
        pytest.param(["--server", "asgi", "--rate", "nan"], "positive number", id="nan-rate"),
        pytest.param(
            ["--url", "http://10.0.0.1:8000", "--concurrency", "1"], "loopback", id="remote-url"
        ),
        pytest.param(
            ["--url", "http://example.com", "--concurrency", "1"],
            "example.com",
            id="remote-hostname",
        ),
        pytest.param(["--concurrency", "1"], "--server", id="no-target"),
        pytest.param(
            ["--server", "asgi", "--url", "http://127.0.0.1:1", "--concurrency", "1"],
            "--server",
            id="two-targets",
        ),
        pytest.param(
            ["--server", "asgi", "--concurrency", "99999"], "concurrency", id="over-the-cap"
        ),
    ],
)
def test_bad_input_is_one_clear_line(args, reason):
    line = one_line_error(conclab(*BASE, *args))
    assert reason in line


def test_a_path_without_a_slash_is_one_clear_line():
    line = one_line_error(
        conclab(
            "bench", "--server", "asgi", "--path", "hello", "--concurrency", "1", "--duration", "1"
        )
    )
    assert "path" in line


def test_an_unreachable_server_is_one_clear_line():
    port = free_port()  # nobody listens here
    line = one_line_error(conclab(*BASE, "--url", f"http://127.0.0.1:{port}", "--concurrency", "1"))
    assert "cannot reach" in line
    assert str(port) in line


# --- Ctrl-C keeps what was measured -------------------------------------------------


def wait_for_line(path, text, proc, timeout):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if path.exists() and text in path.read_text():
            return
        if proc.poll() is not None:
            raise AssertionError(f"conclab exited early ({proc.returncode}): {path.read_text()}")
        time.sleep(0.05)
    raise AssertionError(f"no {text!r} in {path} after {timeout} s")


@pytest.mark.faults
def test_ctrl_c_keeps_the_partial_run_and_stops_the_server(tmp_path):
    out_json, out_csv = tmp_path / "out.json", tmp_path / "out.csv"
    stdout, stderr = tmp_path / "stdout", tmp_path / "stderr"
    with open(stdout, "w") as so, open(stderr, "w") as se:
        proc = subprocess.Popen(
            [
                CONCLAB,
                "bench",
                "--server",
                "asgi",
                "--path",
                "/io?ms=50",
                "--concurrency",
                "10",
                "--duration",
                "30",
                "--json",
                str(out_json),
                "--records",
                str(out_csv),
            ],
            stdout=so,
            stderr=se,
            env=ENV,
        )
    children = []
    try:
        wait_for_line(stdout, " on http://127.0.0.1:", proc, timeout=30)  # the server is up
        children = psutil.Process(proc.pid).children(recursive=True)
        assert any("uvicorn" in " ".join(p.cmdline()) for p in children)
        time.sleep(2.5)  # let it measure for a while
        proc.send_signal(signal.SIGINT)
        code = proc.wait(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        leftovers = wait_gone(children, timeout=10)
        kill_leftovers(children)

    assert code == 130, stderr.read_text()
    assert leftovers == [], [p.pid for p in leftovers]
    assert "Traceback" not in stderr.read_text()
    doc = json.loads(out_json.read_text())
    assert doc["status"] == "interrupted"
    assert doc["interrupted"] is True
    assert doc["completed"] > 0
    assert doc["errors"] == {}
    assert doc["window_s"] < 30  # the summary covers the time actually measured
    rows = read_records(out_csv)
    assert len(rows) == doc["sent"] > 0
    assert [p.name for p in tmp_path.iterdir() if p.name.endswith(".tmp")] == []


def test_calibrate_reports_each_transports_ceiling_and_the_aiohttp_one_is_higher():
    result = conclab("calibrate", "--duration", "0.5", timeout=120)
    assert result.returncode == 0, result.stderr
    ceilings = {}
    for line in result.stdout.splitlines():
        if line.startswith("ceiling of "):
            name, rps = line[len("ceiling of ") :].split(": about ")
            ceilings[name] = float(rps.split()[0].replace(",", ""))
    assert set(ceilings) == {"httpx + aiohttp transport", "httpx default transport"}
    # /hello at 100 users: the default transport's pool collapses (httpx issue 3215).
    assert ceilings["httpx + aiohttp transport"] > 2 * ceilings["httpx default transport"]
