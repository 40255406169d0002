"""The work the servers do, shared so WSGI, raw ASGI and FastAPI answer the same question.

Two kinds of slowness matter in this lab:

* waiting (I/O): the thread has nothing to do but wait for a disk, a database
  or another service. We fake it with a sleep. A thread blocked in a wait
  releases the GIL, so other threads can run; a coroutine that *awaits* the
  wait hands the event loop back, so other coroutines can run.
* computing (CPU): the thread is busy running Python bytecode and holds the
  GIL while it does. Other threads of the same process must take turns.
  Two ways out: C code that lets go of the GIL while it works (hash_cpu), or
  more processes, each with its own GIL (process_pool).
"""

import contextlib
import ctypes
import hashlib
import math
import multiprocessing
import os
import platform
import re
import signal
import sys
import sysconfig
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

MAX_MS = 60_000

# How often a thread computing in Python is asked to hand over the GIL: every
# sys.getswitchinterval() seconds, 5 ms by default. SWITCH_INTERVAL_MS=1 makes it
# 1 ms, so a loop waiting for the GIL gets it sooner (the cpu_offload figure).
if os.environ.get("SWITCH_INTERVAL_MS"):
    sys.setswitchinterval(float(os.environ["SWITCH_INTERVAL_MS"]) / 1000)

# ASCII digits only: int() would happily accept "١٢" (Arabic-Indic digits) or "1_000".
_DIGITS = re.compile(r"[0-9]{1,5}")


class BadRequest(ValueError):
    """Raised with a one-line reason that the server sends back as a 400."""


def parse_ms(values, name="ms"):
    """Validate the ``ms`` query parameter (a list: it may be repeated or missing)."""
    if len(values) != 1:
        raise BadRequest(f"{name} is required" if not values else f"{name} must be given once")
    text = values[0]
    if not _DIGITS.fullmatch(text) or int(text) > MAX_MS:
        raise BadRequest(f"{name} must be an integer 0..{MAX_MS}")
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


def interpreter_report():
    """What this server runs on, asked of the running process (the /interpreter route).

    ``free_threaded_build``: CPython built with --disable-gil (3.13t, 3.14t).
    ``gil_enabled``: whether the GIL is on *now*. On a free-threaded build an
    extension module that does not declare free-threading support (httptools,
    for one) turns it back on when it is imported, so the build alone does not
    tell: ask ``sys._is_gil_enabled()``, which only the running process knows.
    """
    return {
        "python": platform.python_version(),
        "executable": sys.executable,
        "free_threaded_build": bool(sysconfig.get_config_var("Py_GIL_DISABLED")),
        "gil_enabled": sys._is_gil_enabled() if hasattr(sys, "_is_gil_enabled") else True,
        "pid": os.getpid(),
    }


def work_cpu(units):
    """A fixed amount of pure-Python work: ``units`` rounds of burn_cpu's inner loop.

    burn_cpu stops after a fixed CPU *time*, so an interpreter that runs
    bytecode more slowly does less work in it and looks just as fast. This
    does the same work on every interpreter: its time shows what each costs
    (the free-threaded build pays for its thread safety on one thread too).
    """
    x = 0
    for _ in range(units):
        for i in range(500):
            x += i * i
    return x


# --- C work that releases the GIL ------------------------------------------------

# 1 MiB: about 0.6 ms of hashing per call. Between calls the thread takes the GIL
# back (to read the clock); smaller blocks mean more such hand-overs, which the
# loop thread and other hashing threads then wait for.
_BLOCK = bytes(1024 * 1024)


def hash_cpu(ms):
    """Hash until this thread has used ``ms`` of CPU time, almost all of it in C.

    hashlib lets go of the GIL while it hashes more than 2047 bytes, so threads
    doing this run on several cores at once - unlike burn_cpu, whose bytecode
    needs the GIL. The thread takes the GIL back only to read the clock.
    """
    deadline = time.thread_time() + ms / 1000
    while time.thread_time() < deadline:
        hashlib.sha256(_BLOCK).digest()


# --- a process pool that cannot outlive its server ------------------------------


def usable_cores():
    """How many cores CPU work can use: the CPU affinity, capped by a cgroup CPU
    quota (v2 cpu.max "QUOTA PERIOD", v1 cpu.cfs_quota_us; a container may get
    1.5 CPUs of 8). The same rule as conclab.base.cores, kept here so the servers
    stay standalone files a student can run without the lab installed."""
    affinity = getattr(os, "sched_getaffinity", None)  # Linux only; macOS has no CPU affinity
    cores = len(affinity(0)) if affinity else (os.cpu_count() or 1)
    root = Path(os.environ.get("CONCLAB_CGROUP_ROOT", "/sys/fs/cgroup"))
    # Our own groups (/proc/self/cgroup: "0::/a/b" on v2, "4:cpu,cpuacct:/a/b" on v1)
    # and their ancestors: a quota on any of them binds.
    groups = {}
    for line in _read(os.environ.get("CONCLAB_PROC_CGROUP", "/proc/self/cgroup")).splitlines():
        _, controllers, path = (line.split(":", 2) + ["", ""])[:3]
        groups[controllers] = [p for p in path.strip().split("/") if p]
    cpu_v1 = next((path for ctrls, path in groups.items() if "cpu" in ctrls.split(",")), [])
    for mount, parts in [
        (root, groups.get("", [])),
        (root / "cpu", cpu_v1),
        (root / "cpu,cpuacct", cpu_v1),
    ]:
        for n in range(len(parts), -1, -1):
            folder = mount.joinpath(*parts[:n])
            quota, _, period = _read(folder / "cpu.max").strip().partition(" ")  # v2
            if not quota.isdigit():  # v1; -1 = no quota
                quota, period = (
                    _read(folder / "cpu.cfs_quota_us").strip(),
                    _read(folder / "cpu.cfs_period_us").strip(),
                )
            if quota.isdigit() and period.isdigit() and int(quota) > 0 and int(period) > 0:
                cores = min(cores, math.ceil(int(quota) / int(period)))
    return max(1, cores)


def _read(path):
    try:
        return Path(path).read_text()
    except OSError:
        return ""


def _die_with(parent):
    """Runs first in every pool process: ask Linux to SIGKILL us when the server
    dies (PR_SET_PDEATHSIG), however it dies - even by SIGKILL, which no Python
    cleanup code survives. The work is pure computation: nothing to clean up.

    Linux sends it when the *thread* that started us ends: the pool starts its
    processes from the thread that submits, the event loop's, which lives as
    long as the server."""
    with contextlib.suppress(OSError, AttributeError):  # not Linux: the guard's killpg remains
        ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGKILL, 0, 0, 0)  # 1 = PR_SET_PDEATHSIG
    if os.getppid() != parent:  # the server died before prctl took effect
        os._exit(1)


@contextlib.contextmanager
def process_pool():
    """One process per usable core, started now rather than at the first request.

    "spawn" starts a fresh interpreter: forking a server that already runs
    threads can copy a lock some other thread holds, and deadlock.
    """
    workers = usable_cores()
    pool = ProcessPoolExecutor(
        workers,
        mp_context=multiprocessing.get_context("spawn"),
        initializer=_die_with,
        initargs=(os.getpid(),),
    )
    for future in [pool.submit(int) for _ in range(workers)]:  # spawns them all
        future.result()
    try:
        yield pool
    finally:
        # Don't wait for a running 60 s burn: the processes die with the server.
        pool.shutdown(wait=False, cancel_futures=True)
