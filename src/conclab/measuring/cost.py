"""What a request costs the server: its CPU time per request, in one place.

    with ServerCpu(server) as cpu:
        result = run_load(server.url, load)
    cpu.us_per_request(answered(result))    # microseconds of server CPU per request

The server's CPU counters (``cpu_seconds()`` of a running server: every app server
process, nginx left out when it is in front) are read before and after; the
difference over the requests the server answered, warm-up included - the
counters run through the warm-up too - is the cost of one request.
"""

from __future__ import annotations

from typing import Protocol

import numpy as np


class HasCpu(Protocol):
    def cpu_seconds(self) -> float: ...


class ServerCpu:
    """The server's CPU seconds used inside a ``with`` block (``seconds``, set on exit)."""

    def __init__(self, server: HasCpu):
        self.server = server
        self.before = 0.0
        self.seconds: float | None = None

    def __enter__(self) -> ServerCpu:
        self.before = self.server.cpu_seconds()
        return self

    def __exit__(self, *exc) -> None:
        self.seconds = self.server.cpu_seconds() - self.before

    def us_per_request(self, requests: int) -> float | None:
        """Microseconds of server CPU per request; None when no request was answered."""
        return self.seconds / requests * 1e6 if requests else None


def answered(result) -> int:
    """The requests of a LoadResult the server answered (any HTTP status)."""
    return int(np.sum(result.columns()["status"] > 0))
