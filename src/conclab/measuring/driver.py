"""The load driver: fire HTTP requests with httpx and keep one record per request.

Two load shapes:

* closed loop - ``concurrency`` users, each sending its next request as soon as
  the previous answer arrives (what wrk and hey do). A slow server slows the
  client down with it, so its queue never shows in the latencies.
* open loop - requests arrive at a fixed ``rate`` (constant or Poisson) whether
  or not earlier ones have been answered, and latency is measured from when a
  request *should* have been sent (as wrk2 does). A slow server cannot hide.

Why not just ``httpx.AsyncClient()``? Its default transport (httpcore) spends so
much CPU per request that above ~50 concurrent requests the *client* becomes the
bottleneck: measured here, it made a server that can do 1,000 rps look like 76.
So by default requests go through the aiohttp transport (package httpx-aiohttp),
keeping httpx's API. ``transport="httpx"`` selects the default transport so that
students can measure the measurer. The driver's event loop runs in its own
thread, pinned to its own core, and reports how busy it was: a saturated client
is flagged (``client_saturated``) instead of printing a quietly wrong number.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import ipaddress
import os
import random
import resource
import socket
import threading
import time
import warnings
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from urllib.parse import urlsplit

import httpx

from ..base.cores import client_cpu
from ..base.errors import LoadError
from ..base.specs import LIMITS, LoadSpec
from . import stats

# When is the server gone (crashed, killed) rather than slow? When requests sent
# after the first failure keep failing without any HTTP answer: more than
# GONE_AFTER in a row, or at least 5 over GONE_SECONDS (a slow open loop).
GONE_KINDS = ("refused", "disconnected", "reset")
GONE_AFTER = 50
GONE_SECONDS = 2.0

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
        raise LoadError(f"refusing to send load to {host} - not a loopback address (pass allow_remote=True, or --allow-remote on the command line, to override)")


def error_kind(exc: BaseException) -> str:
    """A short, stable name for why a request failed (the root cause, not the wrapper)."""
    root = exc
    # Stop before a CancelledError: asyncio.timeout() raises TimeoutError *from*
    # the cancellation it used to interrupt the request - that is not the cause.
    while (root.__cause__ is not None and root is not root.__cause__
           and not isinstance(root.__cause__, asyncio.CancelledError)):
        root = root.__cause__
    name = type(root).__name__
    if isinstance(root, TimeoutError | asyncio.TimeoutError | httpx.TimeoutException) or "Timeout" in name:
        return "timeout"
    if name in ("ServerDisconnectedError", "RemoteProtocolError", "IncompleteRead"):
        return "disconnected"
    if isinstance(root, ConnectionRefusedError) or name in ("ClientConnectorError", "ConnectError"):
        return "refused"
    if isinstance(root, ConnectionResetError | BrokenPipeError) or name in ("ClientOSError", "ReadError", "WriteError"):
        return "reset"
    return name


@dataclass
class LoadResult:
    """What a run measured: the records, a summary, and how it ended."""

    url: str
    load: LoadSpec
    records: list = field(repr=False)
    started_ns: int = 0
    window: tuple[int, int] = (0, 0)
    finished_ns: int = 0
    client_cpu_s: float = 0.0
    client_wait_s: float = 0.0  # ready to run but waiting for its core (shared with other programs)
    loop_lag_ms: list = field(default_factory=list, repr=False)
    interrupted: bool = False
    failed: str | None = None
    dropped_records: int = 0

    @functools.cached_property
    def summary(self) -> stats.Summary:
        """Computed once, when first asked for - after the run has finished."""
        return stats.summarize(self)

    def columns(self) -> dict:
        """The records as a dict of numpy arrays (see stats.columns)."""
        return stats.columns(self.records)


class Interrupted(KeyboardInterrupt):
    """Ctrl-C during a run. ``.result`` holds what was measured until then."""

    def __init__(self, result):
        super().__init__("load run interrupted")
        self.result = result


def raise_fd_limit(need: int) -> None:
    """Let this process hold ``need`` sockets (and some to spare), up to the hard limit."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < need + 64 and soft < hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (min(hard, max(need + 64, soft)), hard))


def _make_transport(load: LoadSpec, connections: int) -> httpx.AsyncBaseTransport:
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


class _Run:
    """One run's state, living on the driver's event loop thread."""

    def __init__(self, url, load, max_records, progress):
        self.url = url.rstrip("/")
        self.load = load
        self.max_records = max_records
        self.records = []
        self.dropped = 0
        self.stop = None  # asyncio.Event, made on the loop
        self.tickets = load.requests
        self.issued = 0
        self.progress = progress
        self.lag = []
        self.failed = None
        self.gone_since = None  # end of the first failure of the current streak
        self.gone = {}  # kind -> count of failures in the streak, sent after it began

    def record(self, rec):
        if len(self.records) < self.max_records:
            self.records.append(rec)
        else:
            self.dropped += 1

    def take_ticket(self):
        if self.stop.is_set():
            return False
        if self.tickets is not None:
            if self.issued >= self.tickets:
                return False
        self.issued += 1
        return True

    async def one(self, intended):
        path = self.load.path
        start = time.monotonic_ns()
        status, error, pid, thread, s0, s1 = 0, "", 0, 0, 0, 0
        try:
            async with asyncio.timeout(self.load.timeout):
                # A prebuilt httpx.Request, sent straight to the transport: this
                # skips the client's per-request work (URL merging, cookies, auth
                # and redirect handling) that a load generator does not need.
                response = await self.transport.handle_async_request(self.request)
                await response.aread()
                await response.aclose()
            status = response.status_code
            h = response.headers
            pid = int(h.get("x-worker-pid", 0) or 0)
            thread = int(h.get("x-thread", 0) or 0)
            s0 = int(h.get("x-start-ns", 0) or 0)
            s1 = int(h.get("x-end-ns", 0) or 0)
            if status >= 400:
                error = f"http_{status}"
            self.gone_since, self.gone = None, {}  # an answer: the server is there
        except (httpx.HTTPError, OSError, TimeoutError, ValueError) as exc:
            error = error_kind(exc)
        end = time.monotonic_ns()
        self.record((intended, start, end, status, error, path, pid, thread, s0, s1))
        if error in GONE_KINDS:
            self.note_gone(start, end, error)

    def note_gone(self, start, end, error):
        """Stop the run, saying why, once the server has evidently died."""
        if self.gone_since is None:
            self.gone_since = end
            return
        if start < self.gone_since or self.failed:
            return  # in flight when the server died: one burst, however many
        self.gone[error] = self.gone.get(error, 0) + 1
        n = sum(self.gone.values())
        if n > GONE_AFTER or (n >= 5 and end - self.gone_since >= GONE_SECONDS * 1e9):
            if set(self.gone) == {"refused"}:
                self.failed = f"the server refused {n} connections in a row (is it running?)"
            else:
                kinds = ", ".join(f"{v} {k}" for k, v in sorted(self.gone.items()))
                self.failed = f"the server stopped answering: {n} requests in a row failed ({kinds}) - did it crash?"
            self.stop.set()

    async def closed_user(self, deadline):
        while self.take_ticket():
            now = time.monotonic_ns()
            if deadline and now >= deadline:
                return
            await self.one(now)

    async def open_arrivals(self, t0, deadline):
        rng = random.Random(self.load.seed)
        rate = self.load.rate
        next_ns = t0
        arrivals, offset_s = 0, 0.0
        tasks = set()
        while self.take_ticket():
            if deadline and next_ns >= deadline:
                break
            delay = (next_ns - time.monotonic_ns()) / 1e9
            if delay > 0.0005:  # when behind schedule, send at once: never skip an arrival
                await asyncio.sleep(delay)
                if self.stop.is_set():
                    break
            task = asyncio.create_task(self.one(next_ns))
            tasks.add(task)
            task.add_done_callback(tasks.discard)
            # The schedule is computed from t0, not by adding rounded gaps: those
            # would drift early and fit one arrival too many into the duration.
            arrivals += 1
            if self.load.arrivals == "poisson":
                offset_s += rng.expovariate(rate)
            else:
                offset_s = arrivals / rate
            next_ns = t0 + round(offset_s * 1e9)
        if tasks:
            await asyncio.wait(tasks, timeout=self.load.timeout + 1)

    async def watch_lag(self):
        """How late the loop wakes up from a 10 ms sleep: a busy client wakes late."""
        while not self.stop.is_set():
            t = time.perf_counter()
            await asyncio.sleep(0.01)
            self.lag.append((time.perf_counter() - t - 0.01) * 1000)

    async def main(self, result):
        load = self.load
        self.stop = asyncio.Event()
        connections = int(load.concurrency or min(LIMITS["concurrency"], max(64, load.rate * load.timeout)))
        raise_fd_limit(connections)
        self.transport = _make_transport(load, connections)
        client = httpx.AsyncClient(transport=self.transport, timeout=httpx.Timeout(load.timeout), trust_env=False)
        async with client:
            self.request = client.build_request("GET", self.url + load.path)
            # The clock starts once the client is ready: building it (the first
            # time, importing aiohttp) takes ~0.1 s, which would otherwise make
            # the first open-loop arrivals late and shorten the measured window.
            t0 = time.monotonic_ns()
            warm_end = t0 + int(load.warmup * 1e9)
            deadline = warm_end + int(load.duration * 1e9) if load.duration else None
            result.started_ns = t0
            cpu0, wait0 = time.thread_time(), _thread_wait_s()
            lag_task = asyncio.create_task(self.watch_lag())
            progress_task = asyncio.create_task(self.report_progress(t0, deadline))
            if load.concurrency:
                users = [asyncio.create_task(self.closed_user(deadline)) for _ in range(int(load.concurrency))]
                done, pending = await asyncio.wait(users, timeout=None if deadline is None else (deadline - t0) / 1e9 + load.timeout + 2)
                for task in pending:
                    task.cancel()
            else:
                await self.open_arrivals(t0, deadline)
        self.stop.set()
        await asyncio.gather(lag_task, progress_task, return_exceptions=True)
        result.client_cpu_s = time.thread_time() - cpu0
        wait1 = _thread_wait_s()
        result.client_wait_s = wait1 - wait0 if wait0 is not None and wait1 is not None else 0.0
        result.finished_ns = time.monotonic_ns()
        end = deadline if (deadline and not load.requests) else max((r[2] for r in self.records), default=result.finished_ns)
        result.window = (warm_end, min(end, result.finished_ns) if deadline else end)

    async def report_progress(self, t0, deadline):
        if not self.progress:
            return
        from tqdm.auto import tqdm

        total = self.load.requests if self.load.requests else round((deadline - t0) / 1e9, 1)
        unit = "req" if self.load.requests else "s"
        bar = tqdm(total=total, unit=unit, desc=f"{self.load.shape} {self.load.path}", leave=False)
        try:
            while not self.stop.is_set():
                await asyncio.sleep(0.25)
                done = len(self.records) + self.dropped
                value = done if self.load.requests else min(total, round((time.monotonic_ns() - t0) / 1e9, 1))
                bar.n = value
                errors = sum(1 for r in self.records[-500:] if r[4])
                bar.set_postfix(done=done, recent_errors=errors, refresh=False)
                bar.refresh()
        finally:
            bar.close()


def _thread_wait_s():
    """Seconds this thread was runnable but not running (Linux schedstat), or None.

    A driver starved of CPU by other programs on its core uses little CPU yet
    still cannot keep up; its CPU time alone would hide that.
    """
    try:
        with open("/proc/thread-self/schedstat") as f:
            return int(f.read().split()[1]) / 1e9
    except (OSError, ValueError, IndexError):
        return None


def _new_loop():
    # uvloop makes the client's own event loop about twice as cheap per request.
    try:
        import uvloop
    except ImportError:
        return asyncio.new_event_loop()
    return uvloop.new_event_loop()


class RunProgress:
    """A read-only view of a run in progress, handed to watchers (see :func:`watching`).

    ``records`` is the run's own list, still growing on the driver's thread:
    read it (slicing is safe), never change it.
    """

    def __init__(self, runner: _Run, result: LoadResult):
        self._runner = runner
        self._result = result
        self.load = runner.load
        self.records = runner.records
        self.finished = False

    @property
    def started_ns(self) -> int:
        """When the run's clock started (time.monotonic_ns()); 0 while the client is being built."""
        return self._result.started_ns

    @property
    def in_flight(self) -> int:
        """Requests sent and not yet answered, now."""
        return self._runner.issued - len(self._runner.records) - self._runner.dropped


_watchers = threading.local()


@contextlib.contextmanager
def watching(callback: Callable[[RunProgress], None], every: float = 1.0) -> Iterator[None]:
    """Inside this block, each run_load called from this thread calls ``callback(progress)``
    about every ``every`` seconds while it runs, and once more when it has finished.

    The callback runs on the calling thread, which only waits while the
    driver's own thread sends the requests: the driver does no extra work.
    But both threads share the GIL: a callback that computes for long (a chart
    rendering a frame, 70-190 ms here) holds up the driver's loop meanwhile,
    which the run's ``loop_lag_ms_p99`` then shows. Keep callbacks short.
    (A live chart in a notebook uses this; see conclab.teaching.live.)
    """
    stack = _watchers.__dict__.setdefault("stack", [])
    entry = (callback, every)
    stack.append(entry)
    try:
        yield
    finally:
        stack.remove(entry)


class _Watch:
    """Calls the calling thread's watchers on their schedule during one run."""

    def __init__(self, runner, result):
        self.progress = RunProgress(runner, result)
        self.watchers = list(_watchers.stack)
        self.due = [time.monotonic() + every for _, every in self.watchers]
        self.errors = []

    def tick(self, final=False):
        now = time.monotonic()
        self.progress.finished = final
        for i, (callback, every) in enumerate(self.watchers):
            if callback is None or not (final or now >= self.due[i]):
                continue
            self.due[i] = now + every
            try:
                callback(self.progress)
            except Exception as exc:  # noqa: BLE001 - a broken watcher must not break the run
                self.errors.append(exc)
                self.watchers[i] = (None, every)


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
    runner = _Run(url, load, max_records, progress)
    result = LoadResult(url=url.rstrip("/"), load=load, records=runner.records)
    loop_holder = {}
    errors = []
    # The driver's thread says when it is done through this Event, not through
    # Thread.join: a join interrupted by Ctrl-C can mark the thread stopped while
    # it still runs (CPython gh-90882), and the run's last records would then
    # arrive after its summary was taken.
    done = threading.Event()

    def thread_main():
        cpu = client_cpu()
        if pin and cpu is not None:
            with contextlib.suppress(OSError):
                os.sched_setaffinity(0, {cpu})  # this thread only (Linux)
        loop = _new_loop()
        loop_holder["loop"] = loop
        try:
            loop.run_until_complete(runner.main(result))
        except BaseException as exc:  # noqa: BLE001 - surfaced in the caller's thread
            errors.append(exc)
        finally:
            loop.close()
            done.set()

    watch = _Watch(runner, result) if getattr(_watchers, "stack", None) else None
    thread = threading.Thread(target=thread_main, name="conclab-driver", daemon=True)
    thread.start()
    try:
        while not done.wait(0.1):
            if watch:
                watch.tick()
    except KeyboardInterrupt:
        loop = loop_holder.get("loop")
        if loop is not None and runner.stop is not None:
            loop.call_soon_threadsafe(runner.stop.set)
        done.wait(load.timeout + 5)
        result.interrupted = True
        _finish(result, runner)
        raise Interrupted(result) from None
    if errors:
        raise errors[0]
    _finish(result, runner)
    if watch:
        watch.tick(final=True)
        for exc in watch.errors:
            warnings.warn(f"a watcher of the run failed and was dropped: {exc!r}", RuntimeWarning, stacklevel=2)
    if warn and result.summary.client_saturated:
        s = result.summary
        warnings.warn(
            f"the load driver was saturated (client CPU {s.client_cpu:.0%}, waiting for a CPU "
            f"{s.client_wait:.0%}, loop lag p99 "
            f"{s.loop_lag_ms_p99:.1f} ms): throughput is a lower bound and latencies include client delay",
            ClientSaturatedWarning, stacklevel=2,
        )
    return result


def _finish(result, runner):
    result.dropped_records = runner.dropped
    result.loop_lag_ms = runner.lag
    result.failed = runner.failed
    if not result.finished_ns:
        result.finished_ns = time.monotonic_ns()
        result.window = (result.window[0] or result.started_ns, result.finished_ns)
