"""Grader for lab 06: /primes must compute on several cores at once on a
free-threaded Python, and /stats must add up exactly.

The grader runs your app.py on the free-threaded build (Python 3.13t, built by
`make freethreaded`) under Uvicorn with 2 pool threads on every core, sends
REQUESTS requests of /primes from 4 clients at once, and meanwhile watches the
server's threads as the kernel sees them. Three checks, none of them timed:

- every answer is the right number of primes;
- /stats afterwards says exactly REQUESTS requests and REQUESTS x BELOW numbers;
- while the requests ran, the server's two busiest threads computed at the
  same time: every ~2 ms the grader reads how much CPU time each thread has
  used (the kernel's count), and in each such slice compares the two. A
  thread waiting for a lock or for the GIL uses no CPU, so one request at a
  time shows as one thread computing while the other does not - however busy
  or slow the machine is.

Without the free-threaded build these checks are skipped, saying how to build
it (under CI=true they fail instead).
"""

import asyncio
import itertools
import threading
import time
from pathlib import Path

import httpx
import pytest

from conclab.base.paths import SERVERS_DIR
from conclab.base.specs import ServerSpec
from conclab.labs.helpers import serve_or_fail, student_file
from conclab.processes import interpreters

HERE = Path(__file__).resolve().parent
BELOW = 20_000  # each request counts the primes below this: tens of ms of pure Python
REQUESTS = 24
CLIENTS = 4
THREADS = 2  # the pool's threads (THREADPOOL_SIZE), as many as the cores of a small laptop
PARALLEL_SHARE = (
    0.15  # share of the busiest threads' CPU time run side by side (serial: under 0.05)
)
WHERE = "Look at count_primes() in app.py"


def primes_below(n):
    """The right answer, by a sieve (not the student's method)."""
    sieve = bytearray([1]) * max(n, 2)
    sieve[0:2] = b"\0\0"
    for i in range(2, int(n**0.5) + 1):
        if sieve[i]:
            sieve[i * i :: i] = bytearray(len(sieve[i * i :: i]))
    return sum(sieve[:n])


def cpu_ns_by_thread(server):
    """{thread id: nanoseconds it has run on a CPU}, for every thread of the server."""
    out = {}
    for proc in server.processes():
        for task in Path(f"/proc/{proc.pid}/task").glob("*"):
            try:
                out[task.name] = int((task / "schedstat").read_text().split()[0])
            except (OSError, ValueError, IndexError):
                continue
    return out


def overlap(samples):
    """How much of the two busiest threads' CPU time ran side by side, 0..1.

    Per slice between two samples (~2 ms): min(cpu of A, cpu of B) is what both did at
    once; summed over the slices, divided by the sum of max(A, B). One thread
    at a time gives ~0, two threads always computing together ~1.
    """
    slices = [
        {tid: after[tid] - before.get(tid, 0) for tid in after}
        for before, after in itertools.pairwise(samples)
    ]
    totals = {}
    for s in slices:
        for tid, ns in s.items():
            totals[tid] = totals.get(tid, 0) + ns
    busiest = sorted(totals, key=totals.get, reverse=True)[:2]
    if len(busiest) < 2:
        return 0.0
    a, b = busiest
    both = sum(min(s.get(a, 0), s.get(b, 0)) for s in slices)
    either = sum(max(s.get(a, 0), s.get(b, 0)) for s in slices)
    return both / either if either else 0.0


async def hammer(url):
    todo = iter(range(REQUESTS))
    answers = []

    async def client_loop(client):
        for _ in todo:  # the clients share one iterator: REQUESTS requests in all
            answers.append(await client.get(f"{url}/primes", params={"below": BELOW}))

    async with httpx.AsyncClient(
        timeout=30, limits=httpx.Limits(max_connections=CLIENTS)
    ) as client:
        await asyncio.gather(*(client_loop(client) for _ in range(CLIENTS)))
        stats = await client.get(f"{url}/stats")
    return answers, stats


@pytest.fixture(scope="module")
def run(submission):
    """Serve app.py on the free-threaded build; send the requests while sampling thread states."""
    why = interpreters.freethreaded_missing()  # under CI=true a missing build raises instead
    if why:
        pytest.skip(why)
    student_file(submission, "app.py")
    spec = ServerSpec(
        "asgi",
        app="shim:app",
        app_dir=str(HERE),
        python=str(interpreters.freethreaded_python()),
        threadpool=THREADS,
        cpus="all",
        env=(("LAB_SUBMISSION", str(submission)), ("CONCLAB_SERVERS", str(SERVERS_DIR))),
    )
    with serve_or_fail(
        spec, submission, "your app.py on the free-threaded Python", start_timeout=120
    ) as server:
        report = server.interpreter or {}
        samples, done = [], threading.Event()

        def sample():
            while not done.is_set():
                samples.append(cpu_ns_by_thread(server))
                time.sleep(0.002)

        sampler = threading.Thread(target=sample, daemon=True)
        sampler.start()
        try:
            answers, stats = asyncio.run(asyncio.wait_for(hammer(server.url), 50))
        finally:
            done.set()
            sampler.join(5)
    return {"answers": answers, "stats": stats, "samples": samples, "report": report}


def gil_off(run):
    # Without this the parallel check would prove nothing.
    report = run["report"]
    assert report.get("free_threaded_build") and not report.get("gil_enabled"), (
        f"the server's GIL was on ({interpreters.gil_words(report)}). An extension module that "
        "does not support free threading turns it back on when imported: does app.py import one?"
    )


def ok(response, what):
    if response.status_code != 200:
        pytest.fail(
            f"{what} answered {response.status_code} {response.text[:200]!r}. Look at app.py; "
            "`make try LAB=06 SUBMISSION=<your folder>` runs it by hand and shows its log.",
            pytrace=False,
        )
    return response.json()


def test_answers_are_right(run):
    """every /primes answer is the right count"""
    want = primes_below(BELOW)
    got = sorted({ok(r, "GET /primes")["primes"] for r in run["answers"]})
    assert got == [want], f"/primes?below={BELOW} answered {got}, expected {want}. {WHERE}."


def test_counts_are_exact(run):
    """/stats adds up every request exactly, with 2 threads computing at once"""
    gil_off(run)
    stats = ok(run["stats"], "GET /stats")
    want = {"requests": REQUESTS, "checked": REQUESTS * BELOW}
    assert {k: stats.get(k) for k in want} == want, (
        f"after {REQUESTS} requests of /primes?below={BELOW}, /stats said {stats}, "
        f"expected {want}. "
        f"Updates to the shared dict were lost: without the GIL two threads can both read "
        f"stats['checked'], both add, both write back. {WHERE}: make each update one locked step, "
        "and take the lock rarely (once per request, not once per number), "
        "or the threads queue for it."
    )


def test_work_runs_in_parallel(run):
    """two threads compute at the same moment (the work is not serialised)"""
    gil_off(run)
    share = overlap(run["samples"])
    assert share >= PARALLEL_SHARE, (
        f"while {CLIENTS} clients waited, the server's two busiest threads "
        f"computed side by side for "
        f"{share:.0%} of their CPU time (at least {PARALLEL_SHARE:.0%} expected). "
        f"The work ran one request "
        f"at a time: on the event loop, or under a lock held for the whole computation. {WHERE}: "
        "run it in the pool, and hold a lock only around the short update of the shared totals."
    )
