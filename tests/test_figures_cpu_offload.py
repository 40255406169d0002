"""CPU work in a web server (figures/cpu_offload.py): a process pool computes on every
core, a thread pool of pure Python on one, hashlib threads on several; the loop stays
free with processes and is blocked by /cpu; the server's CPU time per request is
lower with uvloop+httptools than with asyncio+h11 in every repeat.

The machine is shared: another program taking a core for part of a 1 s quick-mode
window costs a point 30%. So a check that misses measures its points again, 3 runs
in all; a real error misses every time.
"""

import dataclasses

import pytest

from conclab.base.cores import usable_cores
from conclab.figures.cpu_offload import (
    CPU_MS,
    CPU_OFFLOAD,
    RATES,
    STACKS,
    cost_load,
    measure_cost,
    offload_users,
)
from conclab.figures.experiment import measure
from conclab.processes.launcher import serve

S = CPU_MS / 1000  # service time of one request
RUNS = 3
LOOP, THREADS, HASH, PROCESSES = (
    "on the loop (/cpu)",
    "pure Python in threads (/offload-cpu)",
    "hashlib in threads (/hash-cpu)",
    "process pool (/process-cpu)",
)
MOST = max(offload_users(True))


def _series(*names):
    """The cpu_offload experiment restricted to some of
    its series (measured exactly as the figure's)."""
    return dataclasses.replace(
        CPU_OFFLOAD, jobs=lambda quick: [j for j in CPU_OFFLOAD.jobs(quick) if j.series in names]
    )


def _until_no_misses(names, misses_of):
    """Measure the series (cached points first),
    re-measuring afresh while ``misses_of`` finds misses."""
    runs = []
    for attempt in range(RUNS):
        points = measure(_series(*names), quick=True, fresh=attempt > 0, progress=False)["points"]
        by = {(p["series"], p["x"]): p for p in points}
        misses = misses_of(by)
        if not misses:
            return by
        runs.append(misses)
    pytest.fail("every run missed:\n" + "\n".join(f"run {i + 1}: {m}" for i, m in enumerate(runs)))


def _off_by_more_than(by, series, expected, rel=0.15):
    misses = []
    for n in offload_users(True):
        measured = by[(series, n)]["summary"].throughput_rps
        if measured != pytest.approx(expected(n), rel=rel):
            misses.append(f"{series} x={n}: {measured:.1f} req/s, expected {expected(n):.1f}")
    return misses


def test_a_process_pool_computes_on_every_usable_core():
    cores = usable_cores()
    _until_no_misses(
        [PROCESSES], lambda by: _off_by_more_than(by, PROCESSES, lambda n: min(n, cores) / S)
    )


def test_pure_python_in_a_thread_pool_adds_no_throughput():
    _until_no_misses([THREADS], lambda by: _off_by_more_than(by, THREADS, lambda n: 1 / S))


@pytest.mark.skipif(usable_cores() < 2, reason="scaling past one core needs two usable cores")
def test_hashlib_in_a_thread_pool_scales_past_one_core():
    def misses(by):
        x = by[(HASH, MOST)]["summary"].throughput_rps
        return (
            []
            if x >= 1.3 / S
            else [f"{MOST} users: {x:.1f} req/s, not above one core's {1 / S:.0f}"]
        )

    _until_no_misses([HASH], misses)


def test_health_is_answered_at_once_beside_a_process_pool_and_waits_behind_cpu_on_the_loop():
    def misses(by):
        free = by[(PROCESSES, MOST)]["probe"].latency_ms.p50
        blocked = by[(LOOP, MOST)]["probe"].latency_ms.p50
        out = []
        if blocked < CPU_MS / 2:  # a probe lands mid-handler and waits its rest, and the queue's
            out.append(f"/health p50 under /cpu only {blocked:.1f} ms")
        if free > 10 or free * 5 > blocked:
            out.append(
                f"/health p50 {free:.1f} ms under /process-cpu vs {blocked:.1f} ms under /cpu"
            )
        return out

    _until_no_misses([LOOP, PROCESSES], misses)


def test_cost_per_request_whiskers_of_uvloop_httptools_lie_below_those_of_h11():
    """The figure draws each stack's repeats as a bar (median) and whiskers (min..max);
    its lesson holds when uvloop+httptools' highest repeat costs less than h11's lowest.

    A request's CPU time is read in nanoseconds (schedstat), yet on this shared machine
    the same server's runs differ by up to 50% (81 to 126 us in five runs of one
    uvloop+httptools server): the same work takes longer while other programs share
    the core's caches. So the two servers run side by side and take turns, three
    repeats each, and the whiskers, not a fixed tolerance, decide.
    """
    stacks = dict(STACKS)
    names = ("uvicorn asyncio+h11", "uvicorn uvloop+httptools")
    load = cost_load("/hello", RATES[-1], quick=True)
    runs = []
    for _ in range(RUNS):
        cost = {name: [] for name in names}
        with serve(stacks[names[0]]) as h11, serve(stacks[names[1]]) as uvloop:
            for _ in range(3):
                for name, server in zip(names, (h11, uvloop), strict=True):
                    cost[name].append(measure_cost(server, load)[1]["us_per_request"])
        if max(cost[names[1]]) < min(cost[names[0]]):
            return
        runs.append(", ".join(f"{n}: {sorted(round(v) for v in cost[n])} us" for n in names))
    pytest.fail("the whiskers overlapped in every run:\n" + "\n".join(runs))
