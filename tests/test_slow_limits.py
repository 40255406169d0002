"""Slow clients against Uvicorn's --limit-concurrency,
and nginx as the fix (conclab.figures.slow_limits)."""

import pytest

from conclab.base.specs import ServerSpec
from conclab.figures import slow_limits
from conclab.processes.launcher import serve
from conclab.processes.nginx import FrontSpec, nginx_missing, serve_front

LIMIT = 4


def test_worker_connections_is_read_from_the_nginx_template():
    assert slow_limits.worker_connections() >= 2000  # conclab slowclients opens up to 2,000


def test_slow_clients_one_short_of_the_limit_turn_every_normal_request_into_a_503():
    with serve(ServerSpec("asgi", limit_concurrency=LIMIT)) as server:
        _, alone = slow_limits._with_slow_clients(
            server.url, 0, 5, lambda: slow_limits._normal_requests(server.url)
        )
        slow, statuses = slow_limits._with_slow_clients(
            server.url,
            LIMIT - 1,
            slow_limits.HOLD_S + 2,
            lambda: slow_limits._normal_requests(server.url),
        )
    assert alone == {"200": slow_limits.NORMAL}
    assert statuses == {"503": slow_limits.NORMAL}
    assert (
        slow["accepted"] == LIMIT - 1 and slow["timed_out"] == LIMIT - 1
    )  # Uvicorn never dropped them


@pytest.mark.skipif(nginx_missing() is not None, reason=nginx_missing() or "")
def test_nginx_in_front_serves_normal_requests_and_drops_the_slow_clients_at_its_header_timeout():
    front = FrontSpec(app=ServerSpec("asgi", limit_concurrency=LIMIT), client_header_timeout=2)
    with serve_front(front) as nginx:
        slow, statuses = slow_limits._with_slow_clients(
            nginx.url, 3 * LIMIT, 8.0, lambda: slow_limits._normal_requests(nginx.url)
        )
    assert statuses == {"200": slow_limits.NORMAL}
    assert (
        slow["closed"] == 3 * LIMIT and slow["seconds"] < 6
    )  # dropped after 2 s, not at the clients' 8 s
