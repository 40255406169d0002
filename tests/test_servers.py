"""The three lab servers, measured for real: Gunicorn + Flask, Uvicorn + raw ASGI
and FastAPI (on Uvicorn, and under Gunicorn managing Uvicorn workers), and the
other runners of conclab.base.servers (Granian ...) on the shared routes.

Concurrency is read from the servers' own X-Start-Ns/X-End-Ns stamps (one
system-wide monotonic clock), never from the client's wall time.
"""

import contextlib
import json
import os
import signal
import subprocess
import threading
import time
from collections import defaultdict
from concurrent.futures import ThreadPoolExecutor

import httpx
import psutil
import pytest
from procs import kill_leftovers, wait_gone
from runners import each_app_and_runner, spec_id

from conclab.base import system
from conclab.base.cores import usable_cores
from conclab.base.servers import APPS, SHARED_ROUTES
from conclab.base.specs import ServerSpec
from conclab.measuring.stats import max_overlap
from conclab.processes.launcher import free_port, serve

MS_REASON = "ms must be an integer 0..60000"
TIMEOUT = 30.0  # per request; every wait in this module is bounded by it


# --- helpers -----------------------------------------------------------------


def stamps(response):
    """(pid, thread, start_ns, end_ns) from the four headers every response carries."""
    return tuple(
        int(response.headers[name])
        for name in ("X-Worker-Pid", "X-Thread", "X-Start-Ns", "X-End-Ns")
    )


def fire_together(url, paths):
    """Send one GET per path, all at once, and return the responses in order.

    Each request has its own thread and its own sync httpx client. The clients
    connect first (a /health request), then wait at a barrier, so the requests
    leave within a few milliseconds of each other.
    """
    barrier = threading.Barrier(len(paths), timeout=TIMEOUT)

    def one(path):
        with httpx.Client(base_url=url, timeout=TIMEOUT, trust_env=False) as client:
            client.get("/health").raise_for_status()
            barrier.wait()
            return client.get(path)

    with ThreadPoolExecutor(len(paths)) as pool:
        responses = list(pool.map(one, paths))
    for r in responses:
        assert r.status_code == 200, (r.request.url, r.status_code, r.text)
    return responses


def server_times(responses):
    """(starts, ends): when each handler ran, from the X-Start-Ns/X-End-Ns headers."""
    spans = [stamps(r)[2:] for r in responses]
    return [s for s, _ in spans], [e for _, e in spans]


SERVERS = (
    each_app_and_runner()
)  # every app on its default runner, every other runner once per interface


@pytest.fixture(scope="module")
def started():
    """Servers started on first use and kept for the module, one per spec."""
    with contextlib.ExitStack() as stack:
        running = {}

        def get(spec):
            if spec not in running:
                running[spec] = stack.enter_context(serve(spec))
            return running[spec]

        yield get


@pytest.fixture
def wsgi_server(started):
    """Flask on one sync Gunicorn worker."""
    return started(ServerSpec("wsgi"))


@pytest.fixture
def asgi_server(started):
    """The raw ASGI app on one Uvicorn process."""
    return started(ServerSpec("asgi"))


@pytest.fixture
def fastapi_server(started):
    """FastAPI on one Uvicorn process."""
    return started(ServerSpec("fastapi"))


@pytest.fixture(params=SERVERS, ids=spec_id)
def server(request, started):
    """Each app, and each runner: the shared routes must answer alike."""
    return started(request.param)


@pytest.fixture(params=[spec for spec in SERVERS if spec.interface == "asgi"], ids=spec_id)
def async_server(request, started):
    """The ASGI apps (raw and FastAPI) on each ASGI runner: the routes that need an event loop."""
    return started(request.param)


# --- routes ------------------------------------------------------------------


def test_health_and_hello_answer_200(server):
    with httpx.Client(base_url=server.url, timeout=TIMEOUT, trust_env=False) as client:
        assert client.get("/health").text == "ok\n"
        assert client.get("/hello").text == "hello\n"


@pytest.mark.parametrize(
    "path", ["/health", "/hello", "/io?ms=0", "/cpu?ms=0", "/state", "/io?ms=abc", "/nope"]
)
def test_every_response_carries_pid_thread_and_timestamps(server, path):
    before = time.monotonic_ns()
    r = httpx.get(server.url + path, timeout=TIMEOUT, trust_env=False)
    after = time.monotonic_ns()
    pid, thread, start, end = stamps(r)  # int() of each: fails loudly if missing
    assert pid in server.worker_pids
    assert thread > 0
    # One system-wide clock: the server's stamps fall inside the client's request.
    assert before <= start <= end <= after


def test_io_sleeps_at_least_the_requested_time(server):
    r = httpx.get(server.url + "/io", params={"ms": 50}, timeout=TIMEOUT, trust_env=False)
    assert r.status_code == 200
    assert r.text == "slept 50 ms\n"
    _, _, start, end = stamps(r)
    # uvloop's timers run on libuv's clock, which counts whole milliseconds
    # (rounded down): a timer can fire up to 1 ms before a nanosecond clock says
    # it is due (seen here: 49.86 ms). time.sleep is never early.
    assert end - start >= 49e6


def test_cpu_burns_at_least_the_requested_time(server):
    # 50 ms of thread CPU time cannot take less than 50 ms of wall time.
    r = httpx.get(server.url + "/cpu", params={"ms": 50}, timeout=TIMEOUT, trust_env=False)
    assert r.status_code == 200
    assert "50 ms" in r.text
    _, _, start, end = stamps(r)
    assert end - start >= 50e6


def test_state_reports_own_pid_and_a_count(server):
    r = httpx.get(server.url + "/state", timeout=TIMEOUT, trust_env=False)
    assert r.status_code == 200
    assert r.headers["content-type"].startswith("application/json")
    body = r.json()
    assert body["pid"] == stamps(r)[0]
    assert isinstance(body["count"], int) and body["count"] >= 1


def test_an_app_has_exactly_the_routes_its_table_entry_lists(server):
    # conclab.base.servers.APPS: the shared routes, plus each app's own; another app's are 404.
    own = set(SHARED_ROUTES) | set(server.spec.app_entry.routes)
    others = {route for app in APPS.values() for route in app.routes} - own
    assert others or server.spec.kind == "fastapi"  # FastAPI has every route
    with httpx.Client(base_url=server.url, timeout=TIMEOUT, trust_env=False) as client:
        for route in sorted(own):
            assert client.get(route, params={"ms": 1}).status_code == 200, route
        for route in sorted(others):
            assert client.get(route, params={"ms": 1}).status_code == 404, route


def test_every_server_reports_its_own_python_and_gil_state(server):
    import platform
    import sys

    r = httpx.get(server.url + "/interpreter", timeout=TIMEOUT, trust_env=False)
    assert r.status_code == 200 and r.headers["content-type"].startswith("application/json")
    report = r.json()
    assert report["pid"] == stamps(r)[0]
    assert report["python"] == platform.python_version() and report["executable"] == sys.executable
    assert report["free_threaded_build"] is False and report["gil_enabled"] is True
    assert server.interpreter == {
        **report,
        "pid": server.interpreter["pid"],
    }  # read by the launcher at start


def test_fixed_work_runs_in_a_pool_thread_and_checks_its_units(asgi_server):
    r = httpx.get(
        asgi_server.url + "/offload-work", params={"units": 50}, timeout=TIMEOUT, trust_env=False
    )
    assert r.status_code == 200 and "50 units" in r.text
    pid, thread, _, _ = stamps(r)
    assert thread != pid
    bad = httpx.get(
        asgi_server.url + "/offload-work", params={"units": "x"}, timeout=TIMEOUT, trust_env=False
    )
    assert bad.status_code == 400 and bad.text == "units must be an integer 0..60000\n"


@pytest.mark.parametrize("path", ["/nope", "/health/extra", "/HELLO", "/"])
def test_unknown_path_is_404(server, path):
    r = httpx.get(server.url + path, timeout=TIMEOUT, trust_env=False)
    assert r.status_code == 404
    stamps(r)


def test_blocking_io_runs_on_the_loop_thread(async_server):
    r = httpx.get(async_server.url + "/blocking-io?ms=30", timeout=TIMEOUT, trust_env=False)
    assert r.status_code == 200
    assert "30 ms" in r.text
    pid, thread, start, end = stamps(r)
    assert thread == pid  # the main thread's native id is the pid
    assert end - start >= 30e6


@pytest.mark.parametrize("route", ["/offload-io", "/offload-cpu", "/hash-cpu"])
def test_offload_routes_run_in_a_pool_thread(async_server, route):
    r = httpx.get(async_server.url + route, params={"ms": 30}, timeout=TIMEOUT, trust_env=False)
    assert r.status_code == 200
    assert "pool thread" in r.text
    pid, thread, start, end = stamps(r)
    assert thread != pid  # X-Thread names the pool thread that did the work
    assert end - start >= 30e6


def test_def_endpoint_runs_in_a_pool_thread(fastapi_server):
    # FastAPI sends a plain `def` to AnyIO's threads: the headers name that thread.
    for path in ["/def-io?ms=30", "/def-health"]:
        r = httpx.get(fastapi_server.url + path, timeout=TIMEOUT, trust_env=False)
        assert r.status_code == 200, r.text
        pid, thread, start, end = stamps(r)
        assert thread != pid
        assert end >= start


def test_process_cpu_runs_in_a_child_process_of_the_worker(async_server):
    r = httpx.get(
        async_server.url + "/process-cpu", params={"ms": 30}, timeout=TIMEOUT, trust_env=False
    )
    assert r.status_code == 200 and "pool process" in r.text
    pid, thread, start, end = stamps(r)
    assert pid in async_server.worker_pids
    # In a pool process the main thread's id is the process's pid: a child of the worker.
    assert thread in {p.pid for p in psutil.Process(pid).children()}
    assert end - start >= 30e6


BAD_MS = [
    pytest.param([], "ms is required", id="missing"),
    pytest.param([("ms", "1"), ("ms", "2")], "ms must be given once", id="repeated"),
    *(
        pytest.param([("ms", value)], MS_REASON, id=name)
        for name, value in [
            ("abc", "abc"),
            ("negative", "-1"),
            ("huge", "999999"),
            ("just-over", "60001"),
            ("empty", ""),
            ("float", "1.5"),
            ("underscore", "1_000"),
            ("plus", "+5"),
            ("space", " 5"),
            ("arabic-digits", "\u0661\u0662"),
            ("fullwidth-digits", "\uff11\uff12"),
        ]
    ),
]


@pytest.mark.parametrize("route", ["/io", "/cpu"])
@pytest.mark.parametrize("params,reason", BAD_MS)
def test_bad_ms_is_a_400_with_a_one_line_reason(server, route, params, reason):
    r = httpx.get(server.url + route, params=params, timeout=TIMEOUT, trust_env=False)
    assert r.status_code == 400, r.text
    assert r.text == reason + "\n"
    stamps(r)


@pytest.mark.parametrize(
    "route", ["/blocking-io", "/offload-io", "/offload-cpu", "/hash-cpu", "/process-cpu"]
)
@pytest.mark.parametrize("params,reason", BAD_MS[:4])
def test_bad_ms_is_a_400_on_async_only_routes(async_server, route, params, reason):
    r = httpx.get(async_server.url + route, params=params, timeout=TIMEOUT, trust_env=False)
    assert r.status_code == 400, r.text
    assert r.text == reason + "\n"


# --- concurrency: WSGI -------------------------------------------------------


def test_sync_worker_serialises_requests(wsgi_server):
    responses = fire_together(wsgi_server.url, ["/io?ms=200"] * 8)
    assert {stamps(r)[:2] for r in responses} == {stamps(responses[0])[:2]}  # one pid, one thread
    starts, ends = server_times(responses)
    assert max_overlap(starts, ends) == 1
    assert max(ends) - min(starts) >= 8 * 200e6


@pytest.fixture(scope="module")
def gthread4_server():
    with serve(ServerSpec("wsgi", threads=4)) as server:
        yield server


def test_gthread_worker_overlaps_as_many_requests_as_it_has_threads(gthread4_server):
    responses = fire_together(gthread4_server.url, ["/io?ms=300"] * 10)
    assert len({stamps(r)[0] for r in responses}) == 1
    assert len({stamps(r)[1] for r in responses}) == 4
    assert max_overlap(*server_times(responses)) == 4


# --- concurrency: ASGI -------------------------------------------------------


def test_await_overlaps_every_request_on_one_thread(async_server):
    responses = fire_together(async_server.url, ["/io?ms=300"] * 50)
    assert len({stamps(r)[:2] for r in responses}) == 1  # one pid, one thread
    assert max_overlap(*server_times(responses)) == 50


def test_blocking_io_in_async_def_serialises_the_whole_loop(async_server):
    responses = fire_together(async_server.url, ["/blocking-io?ms=100"] * 6)
    assert len({stamps(r)[:2] for r in responses}) == 1
    starts, ends = server_times(responses)
    assert max_overlap(starts, ends) == 1
    assert max(ends) - min(starts) >= 6 * 100e6


def test_blocking_io_delays_even_health(async_server):
    # /health has nothing to wait for, yet it is served only after the sleep.
    paths = ["/blocking-io?ms=400", "/health"]
    barrier = threading.Barrier(2, timeout=TIMEOUT)

    def one(path):
        with httpx.Client(base_url=async_server.url, timeout=TIMEOUT, trust_env=False) as client:
            client.get("/hello")
            barrier.wait()
            if path == "/health":
                time.sleep(0.1)  # let the blocking request get in first
            return client.get(path)

    with ThreadPoolExecutor(2) as pool:
        blocking, health = pool.map(one, paths)
    assert stamps(health)[2] >= stamps(blocking)[3]


def test_cpu_work_on_the_loop_serialises(async_server):
    responses = fire_together(async_server.url, ["/cpu?ms=50"] * 4)
    assert max_overlap(*server_times(responses)) == 1


@pytest.fixture(scope="module", params=["asgi", "fastapi"])
def pool4_server(request):
    with serve(ServerSpec(request.param, threadpool=4)) as server:
        yield server


def test_offload_io_overlaps_up_to_the_threadpool_size(pool4_server):
    # FastAPI's plain `def` endpoints share the same 4 tokens as run_in_threadpool.
    routes = ["/offload-io", "/def-io"] if pool4_server.spec.kind == "fastapi" else ["/offload-io"]
    for route in routes:
        responses = fire_together(pool4_server.url, [f"{route}?ms=300"] * 10)
        pid = stamps(responses[0])[0]
        threads = {stamps(r)[1] for r in responses}
        assert {stamps(r)[0] for r in responses} == {pid}
        assert len(threads) == 4 and pid not in threads, route
        assert max_overlap(*server_times(responses)) == 4, route


# --- FastAPI: AnyIO's thread tokens --------------------------------------------


def pool_tokens(url):
    r = httpx.get(url + "/pool", timeout=TIMEOUT, trust_env=False)
    assert r.status_code == 200
    return r.json()


def test_pool_reports_the_default_forty_tokens(fastapi_server):
    assert pool_tokens(fastapi_server.url) == {"borrowed": 0, "total": 40}


@pytest.fixture(scope="module")
def fastapi_pool4():
    with serve(ServerSpec("fastapi", threadpool=4)) as server:
        yield server


def slow_def_requests_in_flight(url, n, ms):
    """Start n slow `def` requests and return once the server holds all n tokens."""
    pool = ThreadPoolExecutor(n)
    futures = [
        pool.submit(httpx.get, f"{url}/def-io?ms={ms}", timeout=TIMEOUT, trust_env=False)
        for _ in range(n)
    ]
    deadline = time.monotonic() + TIMEOUT
    while pool_tokens(url)["borrowed"] < n:
        assert time.monotonic() < deadline, "the slow requests never took their tokens"
        time.sleep(0.01)
    return pool, futures


def test_pool_counts_the_tokens_in_use_up_to_threadpool_size(fastapi_pool4):
    assert pool_tokens(fastapi_pool4.url) == {"borrowed": 0, "total": 4}  # THREADPOOL_SIZE=4
    pool, futures = slow_def_requests_in_flight(fastapi_pool4.url, 3, 800)
    with pool:
        assert pool_tokens(fastapi_pool4.url) == {"borrowed": 3, "total": 4}
        assert all(f.result().status_code == 200 for f in futures)
    assert pool_tokens(fastapi_pool4.url)["borrowed"] == 0


def test_a_def_health_check_waits_for_a_token_an_async_one_does_not(fastapi_pool4):
    url = fastapi_pool4.url
    pool, futures = slow_def_requests_in_flight(url, 4, 800)  # every token taken
    with pool, httpx.Client(base_url=url, timeout=TIMEOUT, trust_env=False) as client:
        health = client.get("/health")
        def_health = client.get("/def-health")
        slow_ends = [stamps(f.result())[3] for f in futures]
    assert health.text == def_health.text == "ok\n"
    assert stamps(health)[3] < min(slow_ends)  # answered on the loop, at once
    assert stamps(def_health)[2] >= min(
        slow_ends
    )  # started only when a slow one gave its token back


# --- pool processes never outlive their server ---------------------------------


@pytest.mark.faults
@pytest.mark.skipif(
    not system.is_linux(), reason="the parent-death signal (PR_SET_PDEATHSIG) is Linux's"
)
@pytest.mark.parametrize("kind", ["asgi", "fastapi"])
def test_pool_processes_die_with_a_sigkilled_server(kind):
    # No launcher and no guard here: the kernel's parent-death signal alone
    # (PR_SET_PDEATHSIG, set by each pool process) must end them.
    spec = ServerSpec(kind)
    port = free_port()
    proc = subprocess.Popen(
        spec.command(port),
        start_new_session=True,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    pool = []
    try:
        url = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + TIMEOUT
        while True:
            assert time.monotonic() < deadline and proc.poll() is None, "the server did not start"
            with contextlib.suppress(httpx.HTTPError):
                if (
                    httpx.get(url + "/process-cpu?ms=1", timeout=2, trust_env=False).status_code
                    == 200
                ):
                    break
            time.sleep(0.1)
        pool = [
            p
            for p in psutil.Process(proc.pid).children()
            if "multiprocessing.spawn" in " ".join(p.cmdline())
        ]
        assert len(pool) == usable_cores()
        proc.kill()
        proc.wait(timeout=10)
        assert wait_gone(pool, timeout=5) == []
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=10)
        kill_leftovers(pool)


# --- state lives in each process ---------------------------------------------


@pytest.fixture(
    scope="module",
    params=[
        ServerSpec("wsgi", workers=2),
        ServerSpec("asgi", workers=2),
        ServerSpec("fastapi", workers=2),
        ServerSpec("fastapi", manager="gunicorn", workers=2),
    ],
    ids=lambda spec: spec.label,
)
def two_worker_server(request):
    with serve(request.param) as server:
        yield server


def test_state_is_counted_per_worker_process(two_worker_server):
    server = two_worker_server
    seen = []  # (pid, count, start_ns)
    lock = threading.Lock()
    done = threading.Event()
    deadline = time.monotonic() + 15

    def hammer():
        # A new connection per request, so the kernel may hand each to either worker.
        limits = httpx.Limits(max_keepalive_connections=0)
        with httpx.Client(
            base_url=server.url, timeout=TIMEOUT, trust_env=False, limits=limits
        ) as client:
            for _ in range(500):
                if done.is_set() or time.monotonic() > deadline:
                    return
                r = client.get("/state")
                assert r.status_code == 200
                body = r.json()
                assert body["pid"] == stamps(r)[0]
                with lock:
                    seen.append((body["pid"], body["count"], stamps(r)[2]))
                    counts = defaultdict(int)
                    for pid, _, _ in seen:
                        counts[pid] += 1
                    if len(counts) == 2 and min(counts.values()) >= 5:
                        done.set()

    with ThreadPoolExecutor(4) as pool:
        for future in [pool.submit(hammer) for _ in range(4)]:
            future.result()

    by_pid = defaultdict(list)
    for pid, count, start in seen:
        by_pid[pid].append((start, count))
    assert set(by_pid) == set(server.worker_pids), f"only {sorted(by_pid)} answered"
    for pid, entries in by_pid.items():
        in_time_order = [count for _, count in sorted(entries)]
        # Each process has its own counter: 1, 2, 3 ... with no gaps and no sharing.
        assert in_time_order == list(range(1, len(entries) + 1)), (pid, in_time_order)


def test_state_body_is_json(async_server):
    r = httpx.get(async_server.url + "/state", timeout=TIMEOUT, trust_env=False)
    assert set(json.loads(r.text)) == {"pid", "count"}
