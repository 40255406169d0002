"""The load driver: fire HTTP requests with httpx and keep one record per request.

Two load shapes:

* closed loop - ``concurrency`` users, each sending its next request as soon as
  the previous answer arrives (what wrk and hey do). A slow server slows the
  client down with it, so its queue never shows in the latencies.
* open loop - requests arrive at a fixed ``rate`` (constant or Poisson) whether
  or not earlier ones have been answered, and latency is measured from when a
  request *should* have been sent (as wrk2 does). A slow server cannot hide.

Requests go through httpx with aiohttp's transport (why: ``transport.py``).
The driver's event loop runs in its own thread, pinned to its own core, and
reports how busy it was: a saturated client is flagged (``client_saturated``)
instead of printing a quietly wrong number.

This module is the front: ``run_load`` and what it raises and warns. The rest
is one idea per module, all importable from here as well:

    shapes.py       the closed loop and the open loop
    loadrun.py      one run on the driver's loop: send, record, notice a dead server
    transport.py    httpx over aiohttp, the socket limit, names for failures
    loadresult.py   LoadResult (records, summary) and Interrupted
    watchers.py     watching(): a callback while a run runs (the live chart)
    background.py   the driver's thread, waited for safely under Ctrl-C
"""

from __future__ import annotations

import asyncio
import ipaddress
import socket
import time
import warnings
from urllib.parse import urlsplit

from ..base import system
from ..base.cores import client_cpu
from ..base.errors import LoadError, RemoteTargetError
from ..base.specs import LoadSpec
from . import watchers
from .background import Background
from .loadresult import Interrupted, LoadResult
from .loadrun import Run
from .transport import error_kind, raise_fd_limit
from .watchers import RunProgress, watching

__all__ = [
    "ClientSaturatedWarning",
    "Interrupted",
    "LoadResult",
    "RunProgress",
    "check_target",
    "error_kind",
    "raise_fd_limit",
    "run_load",
    "watching",
]


class ClientSaturatedWarning(UserWarning):
    """The load driver itself was the bottleneck: its numbers understate the server."""


def check_target(url: str, allow_remote: bool = False) -> None:
    """Refuse anything but this machine unless explicitly allowed."""
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise LoadError(f"not an http(s) URL: {url!r}")
    if allow_remote:
        return
    host = parts.hostname
    try:
        addresses = [ipaddress.ip_address(host)]
    except ValueError:
        try:
            infos = socket.getaddrinfo(host, None)
        except socket.gaierror:
            raise LoadError(f"cannot resolve {host!r}") from None
        addresses = [ipaddress.ip_address(info[4][0].split("%")[0]) for info in infos]
    if not all(a.is_loopback for a in addresses):
        raise RemoteTargetError(
            f"refusing to send load to {host} - not a loopback address (pass allow_remote=True, "
            "or --allow-remote on the command line, to override)",
            host,
        )


def run_load(
    url: str,
    load: LoadSpec | None = None,
    *,
    progress: bool = True,
    pin: bool = True,
    allow_remote: bool = False,
    max_records: int = 1_000_000,
    warn: bool = True,
    **load_fields,
) -> LoadResult:
    """Apply ``load`` to ``url`` and return a :class:`LoadResult`.

    ``run_load(url, path="/io?ms=100", concurrency=16, duration=5, warmup=1)``

    Runs its own event loop in a thread pinned to the driver's core, so it works
    the same in a script, a test and a Jupyter notebook (whose loop is busy).
    Ctrl-C stops the run and raises :class:`Interrupted` carrying the partial result.
    """
    if load is None:
        load = LoadSpec(**load_fields)
    elif load_fields:
        raise LoadError("give either a LoadSpec or keyword fields, not both")
    check_target(url, allow_remote)
    runner = Run(url, load, max_records, progress)
    result = LoadResult(url=url.rstrip("/"), load=load, records=runner.records)
    loop_holder = {}

    def thread_main():
        cpu = client_cpu()
        if not system.can_pin():
            result.client_placement = f"unpinned: {system.unpinned_reason()}"
        elif not pin:
            result.client_placement = "unpinned (pin=False)"
        elif cpu is None:
            result.client_placement = "unpinned: one usable core, shared with the servers"
        elif system.pin([cpu]):  # this thread only (Linux)
            result.client_placement = system.pinned_label([cpu])
        else:
            result.client_placement = "unpinned: the system refused the CPU affinity"
        loop = _new_loop()
        loop_holder["loop"] = loop
        try:
            loop.run_until_complete(runner.main(result))
        finally:
            loop.close()

    watch = watchers.watch(runner, result)
    # The run's last records arrive before its summary is taken: see background.py.
    thread = Background(thread_main, name="conclab-driver").start()
    try:
        thread.wait(tick=watch.tick if watch else None)
    except KeyboardInterrupt:
        loop = loop_holder.get("loop")
        if loop is not None and runner.stop is not None:
            loop.call_soon_threadsafe(runner.stop.set)
        thread.wait_at_most(load.timeout + 5)
        result.interrupted = True
        _finish(result, runner)
        raise Interrupted(result) from None
    thread.result()
    _finish(result, runner)
    if watch:
        watch.tick(final=True)
        for exc in watch.errors:
            warnings.warn(
                f"a watcher of the run failed and was dropped: {exc!r}",
                RuntimeWarning,
                stacklevel=2,
            )
    if warn and result.summary.client_saturated:
        s = result.summary
        warnings.warn(
            f"the load driver was saturated (client CPU {s.client_cpu:.0%}, waiting for a CPU "
            f"{'not measured' if s.client_wait is None else format(s.client_wait, '.0%')}, "
            f"loop lag p99 {s.loop_lag_ms_p99:.1f} ms): "
            "throughput is a lower bound and latencies include client delay",
            ClientSaturatedWarning,
            stacklevel=2,
        )
    return result


def _finish(result, runner):
    result.dropped_records = runner.dropped
    result.loop_lag_ms = runner.lag
    result.failed = runner.failed
    if not result.finished_ns:
        result.finished_ns = time.monotonic_ns()
        result.window = (result.window[0] or result.started_ns, result.finished_ns)


def _new_loop():
    # uvloop makes the client's own event loop about twice as cheap per request.
    try:
        import uvloop
    except ImportError:
        return asyncio.new_event_loop()
    return uvloop.new_event_loop()
