"""The work both servers do, shared so WSGI and ASGI answer the same question.

Two kinds of slowness matter in this lab:

* waiting (I/O): the thread has nothing to do but wait for a disk, a database
  or another service. We fake it with a sleep. A thread blocked in a wait
  releases the GIL, so other threads can run; a coroutine that *awaits* the
  wait hands the event loop back, so other coroutines can run.
* computing (CPU): the thread is busy running Python bytecode and holds the
  GIL while it does. Other threads of the same process must take turns.
"""

import re
import time

MAX_MS = 60_000
# ASCII digits only: int() would happily accept "١٢" (Arabic-Indic digits) or "1_000".
_DIGITS = re.compile(r"[0-9]{1,5}")


class BadRequest(ValueError):
    """Raised with a one-line reason that the server sends back as a 400."""


def parse_ms(values):
    """Validate the ``ms`` query parameter (a list: it may be repeated or missing)."""
    if len(values) != 1:
        raise BadRequest(
            "ms is required" if not values else "ms must be given once"
        )
    text = values[0]
    if not _DIGITS.fullmatch(text) or int(text) > MAX_MS:
        raise BadRequest(f"ms must be an integer 0..{MAX_MS}")
    return int(text)


def burn_cpu(ms):
    """Run pure-Python code until this thread has used ``ms`` of CPU time.

    We count CPU time of *this thread* (time.thread_time), not wall time, so
    /cpu?ms=50 is the same amount of work whether or not other threads are
    fighting for the GIL. Under contention the wall time grows instead - which
    is exactly what the GIL experiments show.
    """
    deadline = time.thread_time() + ms / 1000
    x = 0
    while time.thread_time() < deadline:
        for i in range(500):  # a little bytecode between clock reads
            x += i * i
    return x
