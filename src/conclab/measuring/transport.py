"""How the driver's requests go out (httpx over aiohttp's transport, or httpx's own),
how many sockets it may hold, and the short name of each way a request fails.

Why not just ``httpx.AsyncClient()``? Its default transport (httpcore) spends so
much CPU per request that above ~50 concurrent requests the *client* becomes the
bottleneck: measured here, it made a server that can do 1,000 rps look like 76.
So by default requests go through the aiohttp transport (package httpx-aiohttp),
keeping httpx's API. ``transport="httpx"`` selects the default transport so that
students can measure the measurer.
"""

from __future__ import annotations

import asyncio
import warnings

import httpx

from ..base import system
from ..base.specs import LoadSpec


def raise_fd_limit(need: int) -> None:
    """Let this process hold ``need`` sockets (and some to spare), up to the hard
    limit; where that is too low, warn with what to do (macOS starts at 256)."""
    problem = system.raise_open_files_limit(need)
    if problem:
        warnings.warn(problem, RuntimeWarning, stacklevel=2)


def make_transport(load: LoadSpec, connections: int) -> httpx.AsyncBaseTransport:
    """The httpx transport that carries the requests: aiohttp's, or httpx's default."""
    limits = httpx.Limits(max_connections=connections, max_keepalive_connections=connections)
    if load.transport == "httpx":
        return httpx.AsyncHTTPTransport(limits=limits, trust_env=False)
    from httpx_aiohttp import AiohttpTransport

    class NoRetryTransport(AiohttpTransport):
        def get_client(self):
            # aiohttp silently sends a GET a second time when the server drops
            # the connection (a worker killed mid-request): the first failure
            # would never be recorded. A measuring instrument must see it.
            session = super().get_client()
            session._retry_connection = False
            return session

    return NoRetryTransport(limits=limits, trust_env=False)


def error_kind(exc: BaseException) -> str:
    """A short, stable name for why a request failed (the root cause, not the wrapper)."""
    root = exc
    # Stop before a CancelledError: asyncio.timeout() raises TimeoutError *from*
    # the cancellation it used to interrupt the request - that is not the cause.
    while (
        root.__cause__ is not None
        and root is not root.__cause__
        and not isinstance(root.__cause__, asyncio.CancelledError)
    ):
        root = root.__cause__
    name = type(root).__name__
    if (
        isinstance(root, TimeoutError | asyncio.TimeoutError | httpx.TimeoutException)
        or "Timeout" in name
    ):
        return "timeout"
    if name in ("ServerDisconnectedError", "RemoteProtocolError", "IncompleteRead"):
        return "disconnected"
    if isinstance(root, ConnectionRefusedError) or name in ("ClientConnectorError", "ConnectError"):
        return "refused"
    if isinstance(root, ConnectionResetError | BrokenPipeError) or name in (
        "ClientOSError",
        "ReadError",
        "WriteError",
    ):
        return "reset"
    return name
