"""Keeps a server from outliving the process that started it.

The launcher runs ``python -m conclab.processes.guard --cpus 1 -- gunicorn ...`` as the
leader of a new process group. The guard starts the server inside that group
and tears the whole group down (TERM, then KILL after a grace period) when any
of these happens:

* the launcher closes our stdin (a normal stop), or dies and the kernel closes
  it for it - this works however the launcher died, even by SIGKILL;
* the kernel's parent-death signal (Linux ``PR_SET_PDEATHSIG``) arrives;
* we receive SIGTERM, SIGINT or SIGHUP.

Workers of Gunicorn and Uvicorn stay in the group, so one ``killpg`` reaches them all.
"""

import argparse
import os
import shutil
import signal
import subprocess
import sys
import threading
import time

from ..base import system


def _set_parent_death_signal(sig):
    # Linux only (PR_SET_PDEATHSIG); elsewhere the stdin pipe still guards us.
    system.set_parent_death_signal(sig)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m conclab.processes.guard")
    parser.add_argument("--parent", type=int, required=True)
    parser.add_argument("--cpus", default="", help="comma-separated CPU ids for the server")
    parser.add_argument("--grace", type=float, default=5.0)
    parser.add_argument(
        "--log-dir", default="", help="the launcher's log folder, removed if the launcher died"
    )
    parser.add_argument(
        "--exit-file",
        default="",
        help="where to write the server's exit code (the guard's own is KILL: it ends its group)",
    )
    parser.add_argument("command", nargs=argparse.REMAINDER)
    args = parser.parse_args(argv)
    command = args.command[1:] if args.command[:1] == ["--"] else args.command

    _set_parent_death_signal(signal.SIGTERM)
    if os.getppid() != args.parent:  # the parent died before prctl took effect
        return 1
    if args.cpus:
        system.pin([int(c) for c in args.cpus.split(",")])  # where the OS allows it (not macOS)

    child = subprocess.Popen(command, stdin=subprocess.DEVNULL)
    stopping = threading.Event()

    def stop(*_):
        if stopping.is_set():
            return
        stopping.set()
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        try:
            os.killpg(os.getpgrp(), signal.SIGTERM)
        except ProcessLookupError:
            pass

    for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
        signal.signal(sig, stop)

    def watch_stdin():
        try:
            while sys.stdin.buffer.read(1):
                pass
        except (OSError, ValueError):
            pass
        os.kill(os.getpid(), signal.SIGTERM)  # wake the main thread

    threading.Thread(target=watch_stdin, daemon=True).start()

    while child.poll() is None and not stopping.is_set():
        time.sleep(0.05)
    if stopping.is_set():
        deadline = time.monotonic() + args.grace
        while child.poll() is None and time.monotonic() < deadline:
            time.sleep(0.05)
    code = child.poll()
    if args.log_dir and os.getppid() != args.parent:
        # The launcher died without cleaning up after itself: do it for it.
        shutil.rmtree(args.log_dir, ignore_errors=True)
    if args.exit_file and code is not None:
        # Said before the KILL below, which ends the guard too: its own exit
        # status is always KILL, so the launcher reads the server's from here.
        try:
            with open(args.exit_file, "w") as f:
                f.write(str(code))
        except OSError:
            pass
    # Whatever is left of the group (workers of a dead master, stragglers): KILL.
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    try:
        os.killpg(os.getpgrp(), signal.SIGKILL)
    except ProcessLookupError:
        pass
    return 0 if code is None else code


if __name__ == "__main__":
    sys.exit(main())
