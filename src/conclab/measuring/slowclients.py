"""Slow clients: connections that trickle a request and never finish it.

    result = run_slow_clients("http://127.0.0.1:8000", clients=4, duration=10)
    result.counts()   # {'clients': 4, 'accepted': 4, 'answered': 0, 'closed': 0, 'reset': 0,
                      #  'timed_out': 4, ...}

Each of the K clients opens a TCP connection, sends a request line, then one
header line per ``interval`` seconds - and never the blank line that ends the
header. A server must keep the connection open while it waits for the rest.
How much that costs depends on the server:

* a Gunicorn sync worker reads the request itself, so it sits in ``recv`` and
  serves nobody else until the client finishes - or until Gunicorn's worker
  timeout kills the worker;
* gthread parks waiting connections in a poller, but only as many requests run
  at once as it has threads;
* an event loop (Uvicorn) or nginx waits for every client at once, for the
  price of a socket and a small buffer each.

This is the "load that trickles data to the servers" of Gunicorn's design doc
(https://docs.gunicorn.org/en/stable/design.html), slowed down so it can be
watched. It is bounded in count (``clients``) and time (``duration``): every
connection gives up after ``duration`` seconds, so a run always ends by itself.
It sends only to this machine (loopback addresses).

Each connection ends one of these ways (``Outcome``):

* ``answered``  - the server sent something back (e.g. a 400 or 408);
* ``closed``    - the server closed the connection without answering;
* ``reset``     - the connection was reset (RST), e.g. a killed worker's socket;
* ``timed_out`` - still waiting at the end: the client gave up, the server never did;
* ``refused``   - the connection never opened.

``accepted`` counts connections whose TCP handshake completed. The kernel
completes it on the server's behalf and queues the connection (the listen
backlog) even while no worker calls ``accept()``: from the client's side, a
connection waiting in the queue and one a worker holds look the same.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import threading
import time
from collections import Counter
from dataclasses import asdict, dataclass, field
from urllib.parse import urlsplit

from ..base.errors import LoadError
from .background import Background
from .driver import check_target
from .transport import raise_fd_limit

OUTCOMES = ("answered", "closed", "reset", "timed_out", "refused")
LIMITS = {"clients": 2000, "duration": 600.0, "interval": 60.0}


@dataclass(frozen=True)
class SlowLoad:
    """K slow clients for at most ``duration`` seconds, one header line per ``interval``."""

    clients: int = 4
    duration: float = 10.0
    interval: float = 1.0
    path: str = "/hello"
    connect_timeout: float = 5.0
    stagger: float = 0.0  # seconds between one client's connect and the next's (0: all at once)

    def __post_init__(self):
        problems = []
        for name, low in (
            ("clients", 1),
            ("duration", 0.1),
            ("interval", 0.05),
            ("connect_timeout", 0.1),
        ):
            value = getattr(self, name)
            high = LIMITS.get(name, 60.0)
            if (
                isinstance(value, bool)
                or not isinstance(value, int | float)
                or not math.isfinite(value)
                or not low <= value <= high
            ):
                problems.append(f"{name} must be a number {low:g}..{high:g}, not {value!r}")
        if not problems and (
            isinstance(self.stagger, bool)
            or not isinstance(self.stagger, int | float)
            or not 0 <= self.stagger * (self.clients - 1) < self.duration
        ):
            problems.append(
                "stagger must be >= 0 and open every client "
                f"before the duration ends, not {self.stagger!r}"
            )
        if isinstance(self.clients, float) and not self.clients.is_integer():
            problems.append(f"clients must be a whole number, not {self.clients!r}")
        if (
            not isinstance(self.path, str)
            or not self.path.startswith("/")
            or not self.path.isprintable()
            or " " in self.path
        ):
            problems.append(f"path must start with '/' and hold no spaces, not {self.path!r}")
        if problems:
            raise LoadError("; ".join(problems))

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass
class Connection:
    """What happened to one slow client. Times are ``time.monotonic_ns()``."""

    index: int
    start_ns: int = 0
    connected_ns: int = 0  # 0: never connected
    end_ns: int = 0
    outcome: str = ""
    lines_sent: int = 0
    status: int = 0  # the HTTP status of an answer, when there was one
    answer: str = ""  # its first line, as the server sent it


@dataclass
class SlowResult:
    """A slow-client run: one :class:`Connection` per client."""

    url: str
    load: SlowLoad
    connections: list[Connection] = field(default_factory=list)
    started_ns: int = 0
    finished_ns: int = 0
    stopped_early: bool = False

    def counts(self) -> dict:
        """How the connections ended, plus how many the server accepted at all."""
        by = Counter(c.outcome for c in self.connections)
        out = {
            "clients": len(self.connections),
            "accepted": sum(1 for c in self.connections if c.connected_ns),
        }
        out.update({name: by.get(name, 0) for name in OUTCOMES})
        return out

    def summary(self) -> dict:
        answers = Counter(c.status for c in self.connections if c.outcome == "answered")
        return {
            **self.counts(),
            "statuses": {str(k): v for k, v in sorted(answers.items())},
            "lines_sent": sum(c.lines_sent for c in self.connections),
            "seconds": (self.finished_ns - self.started_ns) / 1e9,
            "stopped_early": self.stopped_early,
        }

    def to_dict(self) -> dict:
        return {
            "url": self.url,
            "load": self.load.to_dict(),
            "summary": self.summary(),
            "started_ns": self.started_ns,
            "connections": [asdict(c) for c in self.connections],
        }


def _status(first_line: str) -> int:
    parts = first_line.split()
    return (
        int(parts[1])
        if len(parts) >= 2 and parts[0].startswith("HTTP/") and parts[1].isdigit()
        else 0
    )


async def _one(
    conn: Connection, host: str, port: int, load: SlowLoad, deadline_ns: int, stop: asyncio.Future
):
    """One slow client, from connect to its outcome."""
    if load.stagger:
        try:
            await asyncio.wait_for(asyncio.shield(stop), conn.index * load.stagger)
        except TimeoutError:
            pass
        if stop.done():  # stopped before this client's turn: it gave up unopened
            conn.outcome = "timed_out"
            return
    conn.start_ns = time.monotonic_ns()
    try:
        reader, writer = await asyncio.wait_for(
            asyncio.open_connection(host, port), load.connect_timeout
        )
    except (OSError, TimeoutError):
        conn.outcome, conn.end_ns = "refused", time.monotonic_ns()
        return
    conn.connected_ns = time.monotonic_ns()
    read = asyncio.ensure_future(reader.read(4096))
    try:
        # The request line and Host header - then no end of the header, ever.
        writer.write(f"GET {load.path} HTTP/1.1\r\nHost: {host}:{port}\r\n".encode())
        await writer.drain()
        while True:
            left = (deadline_ns - time.monotonic_ns()) / 1e9
            if left <= 0 or stop.done():
                conn.outcome = "timed_out"
                break
            done, _ = await asyncio.wait(
                {read, stop}, timeout=min(load.interval, left), return_when=asyncio.FIRST_COMPLETED
            )
            if read in done:
                data = read.result()  # raises ConnectionResetError on RST
                if data:
                    conn.answer = data.split(b"\r\n", 1)[0].decode("latin-1")[:200]
                    conn.status = _status(conn.answer)
                    conn.outcome = "answered"
                else:
                    conn.outcome = "closed"
                break
            if not done and time.monotonic_ns() < deadline_ns:
                conn.lines_sent += 1
                writer.write(f"X-Slow-{conn.lines_sent}: {conn.lines_sent}\r\n".encode())
                await writer.drain()
    except (ConnectionResetError, BrokenPipeError):
        conn.outcome = "reset"
    except OSError:
        conn.outcome = "reset"
    finally:
        conn.end_ns = time.monotonic_ns()
        read.cancel()
        with contextlib.suppress(asyncio.CancelledError, OSError):
            await read
        writer.transport.abort()  # no lingering: the run ends on time


async def _run(result: SlowResult, host: str, port: int, stopper: dict):
    loop = asyncio.get_running_loop()
    stop = loop.create_future()
    stopper["stop"] = lambda: stop.done() or stop.set_result(None)
    load = result.load
    result.started_ns = time.monotonic_ns()
    deadline = result.started_ns + int(load.duration * 1e9)
    result.connections = [Connection(i) for i in range(int(load.clients))]
    tasks = [
        asyncio.create_task(_one(c, host, port, load, deadline, stop)) for c in result.connections
    ]
    # Every client stops at the deadline by itself; this bound only guards against a bug.
    await asyncio.wait(tasks, timeout=load.duration + load.connect_timeout + 5)
    for t in tasks:
        t.cancel()
    result.finished_ns = time.monotonic_ns()


def run_slow_clients(
    url: str, load: SlowLoad | None = None, *, stop: threading.Event | None = None, **fields
) -> SlowResult:
    """Hold ``clients`` slow connections to ``url`` for ``duration`` seconds; return what happened.

    Blocks until every connection has ended (at most ``duration`` plus the
    connect timeout). Setting ``stop`` (a threading.Event) ends the run early;
    so does Ctrl-C, which then re-raises. Runs its own event loop in a thread,
    so it works the same in a script, a test, a notebook or beside run_load.
    """
    if load is None:
        load = SlowLoad(**fields)
    elif fields:
        raise LoadError("give either a SlowLoad or keyword fields, not both")
    check_target(url)  # loopback only: there is no override
    parts = urlsplit(url)
    if parts.scheme != "http":
        raise LoadError(f"slow clients speak plain http, not {parts.scheme!r}")
    host, port = parts.hostname, parts.port or 80
    result = SlowResult(url.rstrip("/"), load)
    stopper: dict = {}
    loop = asyncio.new_event_loop()

    def main():
        raise_fd_limit(int(load.clients))
        try:
            loop.run_until_complete(_run(result, host, port, stopper))
        finally:
            loop.close()

    def request_stop():
        result.stopped_early = True
        if "stop" in stopper and not loop.is_closed():
            with contextlib.suppress(RuntimeError):
                loop.call_soon_threadsafe(stopper["stop"])

    def check_stop():
        if stop is not None and stop.is_set() and not result.stopped_early:
            request_stop()

    thread = Background(main, name="conclab-slowclients").start()
    try:
        thread.wait(tick=check_stop)
    except KeyboardInterrupt:
        request_stop()
        thread.wait_at_most(load.connect_timeout + 5)
        raise
    thread.result()
    return result


def describe(result: SlowResult) -> str:
    """A short report, as the CLI prints it."""
    s = result.summary()
    load = result.load
    lines = [
        f"{s['clients']} slow clients against {result.url}{load.path}, "
        f"one header line every {load.interval:g} s, "
        f"for up to {load.duration:g} s (took {s['seconds']:.1f} s)",
        f"  accepted  {s['accepted']:>5}   TCP connection "
        "opened (queued by the kernel or held by a worker)",
        f"  answered  {s['answered']:>5}   the server "
        f"replied{' ' + str(s['statuses']) if s['statuses'] else ''}",
        f"  closed    {s['closed']:>5}   the server hung up without a reply",
        f"  reset     {s['reset']:>5}   the connection was reset",
        f"  timed out {s['timed_out']:>5}   still waiting when the client gave up",
    ]
    if s["refused"]:
        lines.append(f"  refused   {s['refused']:>5}   never connected")
    return "\n".join(lines)
