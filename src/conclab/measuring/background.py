"""A function run in its own thread, waited for in a way Ctrl-C cannot fool.

The load driver and the slow clients each run an event loop in a thread of
their own, so that they work the same in a script, a test and a notebook
(whose own loop is busy). The caller waits for that thread here.

It waits on an Event the thread sets as its very last step, not on
``Thread.join``: a join interrupted by Ctrl-C can mark the thread stopped while
it still runs (CPython gh-90882), and whatever it does after that (a run's last
records) would then arrive after the caller has moved on.
"""

from __future__ import annotations

import threading
from collections.abc import Callable


class Background:
    """``target()`` in a daemon thread; its exception, if any, re-raised by :meth:`result`."""

    def __init__(self, target: Callable[[], None], name: str):
        self._target = target
        self._done = threading.Event()
        self._errors: list[BaseException] = []
        self._thread = threading.Thread(target=self._main, name=name, daemon=True)

    def _main(self):
        try:
            self._target()
        except BaseException as exc:  # noqa: BLE001 - surfaced in the caller's thread
            self._errors.append(exc)
        finally:
            self._done.set()

    def start(self) -> Background:
        self._thread.start()
        return self

    def wait(self, tick: Callable[[], None] | None = None, every: float = 0.1) -> None:
        """Until the thread has finished, calling ``tick()`` about every ``every`` seconds.

        Ctrl-C (KeyboardInterrupt) reaches the caller at once; the thread goes on
        until it is told to stop, and :meth:`wait_at_most` then waits for it.
        """
        while not self._done.wait(every):
            if tick is not None:
                tick()

    def wait_at_most(self, seconds: float) -> bool:
        """Wait up to ``seconds`` for the thread to finish; True if it has."""
        return self._done.wait(seconds)

    def result(self) -> None:
        """Raise the exception the thread ended with, if any."""
        if self._errors:
            raise self._errors[0]
