"""Little's-law predictions for every kind of route and server.

Closed loop: X = min(N, c) / S and R = N / X, with c the slots that can serve
at once. Open loop at rate lambda: X = min(lambda, c / S), and above capacity
latency grows without bound.
"""

import math

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from conclab.base.specs import ServerSpec
from conclab.measuring.theory import UNBOUNDED, curve, parse_route, predict, slots

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


def test_curve_gives_one_point_per_concurrency():
    xs, rs = curve(SYNC, "/io?ms=100", [1, 2, 4])
    assert xs == pytest.approx([10.0, 10.0, 10.0])
    assert rs == pytest.approx([100.0, 200.0, 400.0])
    xs, rs = curve(ASGI, "/hello", [1, 2])
    assert all(math.isnan(v) for v in xs + rs)


def test_unbounded_slots_serialise_as_null():
    assert predict(ASGI, "/io?ms=100", concurrency=10).to_dict()["slots"] is None
    assert predict(SYNC, "/io?ms=100", concurrency=10).to_dict()["slots"] == 1


SPECS = [SYNC, GTHREAD_8, ASGI, ServerSpec("asgi", threadpool=4), ServerSpec("wsgi", workers=3)]
PATHS = ["/io?ms=100", "/blocking-io?ms=50", "/offload-io?ms=20", "/cpu?ms=30", "/offload-cpu?ms=10"]


@settings(max_examples=200, deadline=None)
@given(spec=st.sampled_from(SPECS), path=st.sampled_from(PATHS), users=st.integers(1, 4096))
def test_every_closed_loop_prediction_obeys_littles_law(spec, path, users):
    if spec.kind == "wsgi" and path.startswith(("/blocking", "/offload")):
        return  # ASGI-only routes
    p = predict(spec, path, concurrency=users, cores=2)
    assert p.throughput_rps * p.latency_ms / 1000 == pytest.approx(users)  # N = X * R
    assert p.throughput_rps <= p.slots / p.service_s * (1 + 1e-9)
    assert p.latency_ms >= p.service_s * 1000 * (1 - 1e-9)
