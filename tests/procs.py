"""Process helpers shared by the tests that check no server outlives its owner.

Processes are tracked as psutil handles taken while they run: a handle
remembers the process's create time, so a pid recycled later is never
mistaken for (or killed as) one of ours. Nothing here looks processes up by name.
"""

import time

import psutil


def snapshot(pids):
    """psutil handles for the pids that are running now."""
    procs = []
    for pid in pids:
        try:
            procs.append(psutil.Process(pid))
        except psutil.NoSuchProcess:
            pass
    return procs


def descendants(pid):
    """Every process below ``pid`` (children, grandchildren ...)."""
    try:
        return psutil.Process(pid).children(recursive=True)
    except psutil.NoSuchProcess:
        return []


def alive(procs):
    """The processes that still run (a zombie has finished: it is only unreaped)."""
    left = []
    for p in procs:
        try:
            if p.is_running() and p.status() != psutil.STATUS_ZOMBIE:
                left.append(p)
        except psutil.NoSuchProcess:
            pass
    return left


def wait_gone(procs, timeout=15.0):
    """Wait up to ``timeout`` s for the processes to end; return those still running."""
    deadline = time.monotonic() + timeout
    while alive(procs) and time.monotonic() < deadline:
        time.sleep(0.05)
    return alive(procs)


def kill_leftovers(procs):
    """Last-resort cleanup after a failed test, by the exact processes we started."""
    for p in alive(procs):
        try:
            p.kill()
        except psutil.Error:
            pass
