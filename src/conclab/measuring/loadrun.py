"""One load run on the driver's event loop: send each request, record it, notice a dead server.

The load shape (:mod:`conclab.measuring.shapes`) decides *when* each request is
sent; :class:`Run` sends it, keeps one record per request, stops the run once
the server has evidently died, watches how late its own loop wakes up, and
reads how much CPU its thread used and how long it waited for its core.
"""

from __future__ import annotations

import asyncio
import time

import httpx

from ..base import system
from ..base.specs import LIMITS
from .shapes import closed_user, open_arrivals
from .transport import error_kind, make_transport, raise_fd_limit

# When is the server gone (crashed, killed) rather than slow? When requests sent
# after the first failure keep failing without any HTTP answer: more than
# GONE_AFTER in a row, or at least 5 over GONE_SECONDS (a slow open loop).
GONE_KINDS = ("refused", "disconnected", "reset")
GONE_AFTER = 50
GONE_SECONDS = 2.0


class Run:
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
        self.loop = None
        # set by a watcher that saw the warm-up end early (RunProgress.steady_from)
        self.window_start_ns = None
        self.stopped_ns = None  # set by a watcher that has measured enough (RunProgress.stop)

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
                self.failed = (
                    f"the server stopped answering: {n} requests in a row failed ({kinds}) "
                    "- did it crash?"
                )
            self.stop.set()

    async def watch_lag(self):
        """How late the loop wakes up from a 10 ms sleep: a busy client wakes late."""
        while not self.stop.is_set():
            t = time.perf_counter()
            await asyncio.sleep(0.01)
            self.lag.append((time.perf_counter() - t - 0.01) * 1000)

    async def main(self, result):
        load = self.load
        self.loop = asyncio.get_running_loop()
        self.stop = asyncio.Event()
        connections = int(
            load.concurrency or min(LIMITS["concurrency"], max(64, load.rate * load.timeout))
        )
        raise_fd_limit(connections)
        self.transport = make_transport(load, connections)
        client = httpx.AsyncClient(
            transport=self.transport, timeout=httpx.Timeout(load.timeout), trust_env=False
        )
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
                users = [
                    asyncio.create_task(closed_user(self, deadline))
                    for _ in range(int(load.concurrency))
                ]
                done, pending = await asyncio.wait(
                    users,
                    timeout=None if deadline is None else (deadline - t0) / 1e9 + load.timeout + 2,
                )
                for task in pending:
                    task.cancel()
            else:
                await open_arrivals(self, t0, deadline)
        self.stop.set()
        await asyncio.gather(lag_task, progress_task, return_exceptions=True)
        result.client_cpu_s = time.thread_time() - cpu0
        wait1 = _thread_wait_s()
        result.client_wait_s = wait1 - wait0 if wait0 is not None and wait1 is not None else None
        result.finished_ns = time.monotonic_ns()
        end = (
            deadline
            if (deadline and not load.requests)
            else max((r[2] for r in self.records), default=result.finished_ns)
        )
        if self.stopped_ns:  # a watcher ended the run: the window ends then, without the drain
            end = min(end, self.stopped_ns)
        start = min(self.window_start_ns or warm_end, warm_end)
        result.window = (start, min(end, result.finished_ns) if deadline else end)

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
                value = (
                    done
                    if self.load.requests
                    else min(total, round((time.monotonic_ns() - t0) / 1e9, 1))
                )
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
    return system.thread_wait_s()
