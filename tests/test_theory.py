"""Little's-law predictions for every kind of route and server.

Closed loop: X = min(N, c) / S and R = N / X, with c the slots that can serve
at once. Open loop at rate lambda: X = min(lambda, c / S), and above capacity
latency grows without bound.
"""

import math

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from conclab.base import system
from conclab.base.specs import ServerSpec
from conclab.measuring.theory import UNBOUNDED, Overhead, parse_route, predict, slots

SYNC = ServerSpec("wsgi")
GTHREAD_8 = ServerSpec("wsgi", threads=8)
ASGI = ServerSpec("asgi")


def test_parse_route_reads_the_service_time_in_seconds():
    assert parse_route("/io?ms=100") == ("/io", 0.1)
    assert parse_route("/blocking-io?ms=50") == ("/blocking-io", 0.05)
    assert parse_route("/hello") == ("/hello", None)


def test_one_sync_worker_serves_one_request_at_a_time():
    p = predict(SYNC, "/io?ms=100", concurrency=8)
    assert p.slots == 1
    assert p.throughput_rps == pytest.approx(10.0)
    assert p.latency_ms == pytest.approx(800.0)  # 8 users queue behind one slot
    assert p.bound == "slots"


def test_below_the_slots_latency_is_the_service_time_and_clients_bound_throughput():
    p = predict(GTHREAD_8, "/io?ms=100", concurrency=4)
    assert p.throughput_rps == pytest.approx(40.0)
    assert p.latency_ms == pytest.approx(100.0)
    assert p.bound == "clients"


def test_gthread_has_one_slot_per_thread():
    p = predict(GTHREAD_8, "/io?ms=100", concurrency=16)
    assert p.slots == 8
    assert p.throughput_rps == pytest.approx(80.0)
    assert p.latency_ms == pytest.approx(200.0)


def test_sync_workers_add_slots():
    p = predict(ServerSpec("wsgi", workers=4), "/io?ms=100", concurrency=16)
    assert p.slots == 4
    assert p.throughput_rps == pytest.approx(40.0)


def test_awaiting_io_on_the_event_loop_has_unbounded_slots():
    p = predict(ASGI, "/io?ms=100", concurrency=100)
    assert p.slots == UNBOUNDED
    assert p.throughput_rps == pytest.approx(1000.0)
    assert p.latency_ms == pytest.approx(100.0)
    assert p.bound == "clients"
    assert predict(ASGI, "/io?ms=200", concurrency=256).throughput_rps == pytest.approx(1280.0)


def test_uvicorn_limit_concurrency_bounds_the_event_loop():
    p = predict(ServerSpec("asgi", limit_concurrency=50), "/io?ms=100", concurrency=100)
    assert p.slots == 50
    assert p.throughput_rps == pytest.approx(500.0)


@pytest.mark.parametrize("users", [1, 10, 100])
def test_blocking_io_in_async_def_serves_one_at_a_time_whatever_the_concurrency(users):
    p = predict(ASGI, "/blocking-io?ms=50", concurrency=users)
    assert p.slots == 1
    assert p.throughput_rps == pytest.approx(20.0)
    assert p.latency_ms == pytest.approx(50.0 * users)


def test_offloaded_io_is_bounded_by_the_threadpool():
    p = predict(ServerSpec("asgi", threadpool=4), "/offload-io?ms=100", concurrency=16)
    assert p.slots == 4
    assert p.throughput_rps == pytest.approx(40.0)
    assert p.latency_ms == pytest.approx(400.0)


def test_cpu_work_is_capped_by_cores_not_by_workers():
    p = predict(ServerSpec("wsgi", workers=4), "/cpu?ms=50", concurrency=8, cores=2)
    assert p.slots == 2
    assert p.throughput_rps == pytest.approx(40.0)
    assert p.bound == "cores"


def test_threads_do_not_add_cpu_slots_because_of_the_gil():
    assert predict(ServerSpec("wsgi", threads=8), "/cpu?ms=50", concurrency=8, cores=4).slots == 1
    p = predict(ServerSpec("asgi", threadpool=40), "/offload-cpu?ms=50", concurrency=8, cores=4)
    assert p.slots == 1
    assert p.throughput_rps == pytest.approx(20.0)
    assert p.bound == "cores"


def test_cpu_work_on_the_loop_uses_the_cores_of_its_workers():
    p = predict(ServerSpec("asgi", workers=2), "/cpu?ms=100", concurrency=4, cores=2)
    assert p.slots == 2
    assert p.throughput_rps == pytest.approx(20.0)


def test_cores_default_to_the_servers_own_cpus():
    four = ServerSpec("wsgi", workers=4, cpus=(0,))
    assert slots(four, "/cpu") == (1, "cores")
    assert slots(ServerSpec("wsgi", workers=4, cpus=(0, 1)), "/cpu") == (2, "cores")


def test_open_loop_below_capacity_is_served_at_the_arrival_rate():
    p = predict(SYNC, "/io?ms=50", rate=10)
    assert p.throughput_rps == pytest.approx(10.0)
    assert p.latency_ms == pytest.approx(50.0)
    assert p.bound == "clients"


def test_open_loop_above_capacity_has_infinite_latency():
    p = predict(SYNC, "/io?ms=50", rate=30)
    assert p.throughput_rps == pytest.approx(20.0)  # the server's capacity
    assert p.latency_ms == math.inf  # the queue grows for as long as the run lasts
    assert p.bound == "slots"


def test_routes_without_a_service_time_have_no_prediction():
    assert predict(ASGI, "/hello", concurrency=10) is None
    assert predict(ASGI, "/io?ms=0", concurrency=10) is None


def test_a_prediction_needs_a_load_shape():
    with pytest.raises(ValueError):
        predict(ASGI, "/io?ms=100")


def test_an_asgi_route_without_a_theory_is_an_error():
    with pytest.raises(ValueError, match="no theory"):
        predict(ASGI, "/state?ms=5", concurrency=1)


def test_unbounded_slots_serialise_as_null():
    assert predict(ASGI, "/io?ms=100", concurrency=10).to_dict()["slots"] is None
    assert predict(SYNC, "/io?ms=100", concurrency=10).to_dict()["slots"] == 1


SPECS = [SYNC, GTHREAD_8, ASGI, ServerSpec("asgi", threadpool=4), ServerSpec("wsgi", workers=3)]
PATHS = [
    "/io?ms=100",
    "/blocking-io?ms=50",
    "/offload-io?ms=20",
    "/cpu?ms=30",
    "/offload-cpu?ms=10",
]


@settings(max_examples=200, deadline=None)
@given(spec=st.sampled_from(SPECS), path=st.sampled_from(PATHS), users=st.integers(1, 4096))
def test_every_closed_loop_prediction_obeys_littles_law(spec, path, users):
    if spec.kind == "wsgi" and path.startswith(("/blocking", "/offload")):
        return  # ASGI-only routes
    p = predict(spec, path, concurrency=users, cores=2)
    assert p.throughput_rps * p.latency_ms / 1000 == pytest.approx(users)  # N = X * R
    assert p.throughput_rps <= p.slots / p.service_s * (1 + 1e-9)
    assert p.latency_ms >= p.service_s * 1000 * (1 - 1e-9)


# --- usable cores: affinity and the cgroup quota, whichever is smaller -------------


def fake_quota(monkeypatch, tmp_path, text):
    """A cgroup folder whose cpu.max says ``text``;
    the lab reads it through $CONCLAB_CGROUP_ROOT."""
    (tmp_path / "cpu.max").write_text(text + "\n")
    monkeypatch.setenv("CONCLAB_CGROUP_ROOT", str(tmp_path))


@pytest.mark.skipif(
    not system.has_cgroups(), reason="cgroup CPU quotas are Linux's: this system has none"
)
def test_cpu_work_is_capped_by_a_one_cpu_cgroup_quota(monkeypatch, tmp_path):
    spec = ServerSpec("wsgi", workers=4, cpus="all")
    fake_quota(monkeypatch, tmp_path, "100000 100000")  # 1 CPU per 100 ms period
    p = predict(spec, "/cpu?ms=40", concurrency=8)
    assert p.slots == 1 and p.bound == "cores"
    assert p.throughput_rps == pytest.approx(25.0)


@pytest.mark.skipif(
    not system.has_cgroups(), reason="cgroup CPU quotas are Linux's: this system has none"
)
def test_a_fractional_quota_rounds_up_to_whole_cores(monkeypatch, tmp_path):
    if len(system.cpu_ids()) < 2:
        pytest.skip("needs two cores in the affinity mask")
    fake_quota(monkeypatch, tmp_path, "150000 100000")  # 1.5 CPUs: a second core runs part-time
    assert (
        predict(ServerSpec("wsgi", workers=4, cpus="all"), "/cpu?ms=40", concurrency=8).slots == 2
    )


def test_no_quota_leaves_the_affinity_in_charge(monkeypatch, tmp_path):
    fake_quota(monkeypatch, tmp_path, "max 100000")
    spec = ServerSpec("wsgi", workers=64, cpus="all")
    assert predict(spec, "/cpu?ms=40", concurrency=128).slots == len(system.cpu_ids())


def test_io_slots_do_not_depend_on_the_quota(monkeypatch, tmp_path):
    fake_quota(monkeypatch, tmp_path, "100000 100000")
    assert predict(ServerSpec("wsgi", workers=4), "/io?ms=50", concurrency=8).slots == 4


# --- a measured overhead ------------------------------------------------------------


def test_a_per_request_overhead_lengthens_the_service_time():
    # 8 sync workers, 50 ms handlers, 2.5 ms measured around each at one user.
    o = Overhead(per_request_s=0.0025, source="1 user")
    p = predict(ServerSpec("wsgi", workers=8), "/io?ms=50", concurrency=8, overhead=o)
    assert p.throughput_rps == pytest.approx(8 / 0.0525)
    assert p.to_dict()["ideal_throughput_rps"] == pytest.approx(160.0)
    assert p.to_dict()["overhead"] == {
        "per_request_ms": pytest.approx(2.5),
        "per_connection_ms": 0.0,
        "source": "1 user",
    }


def test_the_overhead_caps_an_open_loops_capacity():
    p = predict(SYNC, "/io?ms=50", rate=30, overhead=Overhead(per_request_s=0.0125))
    assert p.throughput_rps == pytest.approx(1 / 0.0625)


def test_one_wave_on_unbounded_slots_pays_the_connection_cost_once_per_extra_request():
    # 1000 requests at once on the event loop: the last handler starts after 999
    # connections were accepted one after another.
    o = Overhead(per_request_s=0.002, per_connection_s=0.0003)
    p = predict(ASGI, "/io?ms=3000", concurrency=1000, requests=1000, overhead=o)
    makespan = 3.002 + 999 * 0.0003
    assert p.latency_ms == pytest.approx(makespan * 1000)
    assert p.throughput_rps == pytest.approx(1000 / makespan)
    assert p.to_dict()["ideal_throughput_rps"] == pytest.approx(1000 / 3)


def test_one_wave_on_one_slot_runs_in_rounds():
    p = predict(
        SYNC, "/io?ms=100", concurrency=12, requests=12, overhead=Overhead(per_request_s=0.003)
    )
    assert p.latency_ms == pytest.approx(12 * 103)
    assert p.throughput_rps == pytest.approx(12 / 1.236)


def test_a_long_closed_run_is_not_a_wave():
    o = Overhead(per_request_s=0.0, per_connection_s=0.01)
    p = predict(ASGI, "/io?ms=100", concurrency=10, requests=1000, overhead=o)
    assert p.throughput_rps == pytest.approx(100.0)


def test_fastapi_def_endpoints_are_bounded_by_anyios_tokens():
    spec = ServerSpec("asgi", app="asgi_fastapi:app")
    assert predict(spec, "/def-io?ms=100", concurrency=100).slots == 40
    assert predict(spec, "/def-io?ms=100", concurrency=100).throughput_rps == pytest.approx(400.0)


@pytest.mark.freethreaded
def test_without_the_gil_pool_threads_are_slots_for_pure_python(freethreaded_python):
    """/offload-cpu: one slot under the GIL, whatever the pool; min(threads, cores) without it."""
    from conclab.base.cores import usable_cores

    def rps(python, threadpool, users):
        spec = ServerSpec("asgi", cpus="all", threadpool=threadpool, python=python)
        return predict(spec, "/offload-cpu?ms=20", concurrency=users).throughput_rps

    assert rps(None, 2, 2) == pytest.approx(50)
    assert rps(freethreaded_python, 1, 2) == pytest.approx(50)
    assert rps(freethreaded_python, 2, 2) == pytest.approx(min(2, usable_cores()) * 50)
