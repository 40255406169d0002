"""Where and when a request ran: the four headers the lab's load driver reads.

X-Worker-Pid and X-Thread say who ran the handler; X-Start-Ns and X-End-Ns say
when, on time.monotonic_ns() - one clock for every process on the machine, so
the driver can put them on its own timeline. The raw ASGI app writes them by
hand; FastAPI adds them with the middleware below.

A FastAPI app does its work in three places: on the loop (`async def`), in a
pool thread (a `def` endpoint, run_in_threadpool) or in a pool process. The
headers must name the place the work ran, not the loop that sent the answer.
"""

import functools
import os
import threading
import time
from contextvars import ContextVar

_ran = ContextVar("ran")  # this request's {"thread", "start", "end"}


class ServerStamps:
    """The ASGI middleware that adds the headers to every response.

    A plain ASGI class: FastAPI's @app.middleware("http") reads shorter, but
    runs each request in an extra task, and halved FastAPI's req/s on /hello.
    """

    def __init__(self, app):
        self.app = app

    async def __call__(self, scope, receive, send):
        # The loop's own stamps, kept unless the work ran elsewhere (ran_at).
        ran = {"thread": threading.get_native_id(), "start": time.monotonic_ns()}
        _ran.set(ran)

        async def send_stamped(message):
            if message["type"] == "http.response.start":
                end = ran.setdefault("end", time.monotonic_ns())
                message["headers"] = [
                    *message.get("headers", ()),
                    (b"x-worker-pid", b"%d" % os.getpid()),
                    (b"x-thread", b"%d" % ran["thread"]),
                    (b"x-start-ns", b"%d" % ran["start"]),
                    (b"x-end-ns", b"%d" % end),
                ]
            await send(message)

        await self.app(scope, receive, send_stamped)


def timed(work, *args):
    """Run blocking work; return which thread ran it, and when.

    A thread's native id is what `top -H` shows. In a pool *process* its main
    thread's id is that process's pid, so a timeline gets one lane per process.
    """
    start = time.monotonic_ns()
    work(*args)
    return threading.get_native_id(), start, time.monotonic_ns()


def ran_at(thread, start, end):
    """Credit this request's work to another thread or process."""
    _ran.get().update(thread=thread, start=start, end=end)


def reports_its_thread(work):
    """Wrap blocking work so the headers name the pool thread that runs it.

    Works because AnyIO runs the call in a copy of the request's context, so
    the pool thread sees this request's `ran`.
    """

    @functools.wraps(work)  # FastAPI still sees the parameters - and a plain def
    def run(*args, **kwargs):
        start = time.monotonic_ns()
        try:
            return work(*args, **kwargs)
        finally:
            ran_at(threading.get_native_id(), start, time.monotonic_ns())

    return run
