"""Watching a run while it runs: a callback, on the calling thread, about every second.

A live chart in a notebook (conclab.teaching.live) uses this.
"""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from .loadresult import LoadResult
    from .loadrun import Run


class RunProgress:
    """A read-only view of a run in progress, handed to watchers (see :func:`watching`).

    ``records`` is the run's own list, still growing on the driver's thread:
    read it (slicing is safe), never change it.
    """

    def __init__(self, runner: Run, result: LoadResult):
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

    def steady_from(self, ns: int) -> None:
        """The warm-up ended at ``ns`` (before the load's own warm-up did): the window starts there.

        For a watcher that judges when the server is steady (see
        conclab.figures.experiment.SteadyStop); the load's warm-up stays the longest one.
        """
        self._runner.window_start_ns = ns

    def stop(self) -> None:
        """End the run now: no request is sent after this, and the measured window ends here
        (answers still in flight are recorded but not counted). For a watcher that has
        measured enough before the load's duration ran out."""
        runner = self._runner
        if runner.stopped_ns is None and runner.loop is not None and runner.stop is not None:
            runner.stopped_ns = time.monotonic_ns()
            runner.loop.call_soon_threadsafe(runner.stop.set)


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


class Watch:
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


def watch(runner: Run, result: LoadResult) -> Watch | None:
    """The calling thread's watchers for this run, or None when it has none."""
    return Watch(runner, result) if getattr(_watchers, "stack", None) else None
