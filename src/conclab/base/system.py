"""The operating system: every difference between Linux, macOS and Windows lives here.

    platform()        "linux", "darwin", "windows" ($CONCLAB_FAKE_PLATFORM overrides it)
    cpu_ids, pin      usable cores and pinning (CPU affinity exists on Linux only)
    memory_of         PSS on Linux, RSS elsewhere (memory_label says which)
    process_cpu_ns    per-thread CPU from schedstat on Linux, psutil elsewhere
    set_parent_death_signal, server_env, raise_open_files_limit
    notes()           one line per measurement made differently here

Each answer comes with a label ("pinned to core 1", "unpinned: no CPU affinity
on macOS", "RSS, not PSS") that summaries and figure footers print.

System programs the lab uses but pip cannot install (nginx, Chromium) follow one
policy: where one is missing, whatever needs it skips with one line saying how
to install it. Under CI (``CI=true``) a missing program is an error instead: CI
must run those tests, and ``.ci/run`` installs the programs first.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import sys
from pathlib import Path

from .errors import UserError


class ProgramMissing(UserError, RuntimeError):
    """A system program is missing where it may not be (under CI)."""


def in_ci() -> bool:
    """True when running under CI (the CI environment variable is set to true)."""
    return os.environ.get("CI", "").strip().lower() in ("1", "true", "yes")


def missing(what: str, found: str | None, install_hint: str) -> str | None:
    """None when ``found``; else one line "<what> is not installed: <hint>".

    Under CI it raises :class:`ProgramMissing` instead of returning the line.
    """
    if found:
        return None
    line = f"{what} is not installed: {install_hint}"
    if in_ci():
        raise ProgramMissing(
            f"{line} (CI=true: a missing {what} fails instead of skipping; .ci/run installs it)"
        )
    return line


# --------------------------------------------------------------- which system
#
# Everything below is the lab's one place for operating-system differences.
# Each answer says how it was obtained ("pinned to core 1", "RSS, not PSS"), so
# summaries and figures can print it next to the number. Nothing here runs at
# import time: the answers are asked for when a server or a run starts.

FAKE_PLATFORM_VAR = "CONCLAB_FAKE_PLATFORM"
OS_NAMES = {"linux": "Linux", "darwin": "macOS", "windows": "Windows"}

WINDOWS_REFUSAL = (
    "Concurrency Lab does not run on native Windows (Gunicorn, the process groups and the "
    "fork-based servers need a POSIX system): use WSL2 (`wsl --install -d Ubuntu-24.04`, "
    "then the README's WSL2 "
    "section) or the dev container (.devcontainer/, in VS Code or GitHub Codespaces)."
)
UNPINNED_SPREAD = (
    "the OS moves the driver and the servers between cores (on Apple Silicon between "
    "performance and efficiency cores), so repeated points spread wider"
)


def platform() -> str:
    """ "linux", "darwin" (macOS), "windows", or ``sys.platform`` for another system.

    ``$CONCLAB_FAKE_PLATFORM`` overrides the answer for the lab alone: the tests
    make the lab behave as on macOS on a Linux machine. (Faking ``sys.platform``
    for the whole interpreter would break psutil and the standard library.)
    """
    fake = os.environ.get(FAKE_PLATFORM_VAR, "").strip().lower()
    if fake:
        return "windows" if fake in ("win32", "nt") else fake
    if os.name == "nt" or sys.platform.startswith("win"):
        return "windows"
    return "linux" if sys.platform.startswith("linux") else sys.platform


def os_name() -> str:
    """The system's name for people: "Linux", "macOS", "Windows"."""
    return OS_NAMES.get(platform(), platform())


def native_windows() -> bool:
    """True on native Windows (not WSL2, which is Linux), where the lab cannot run."""
    return platform() == "windows"


def is_linux() -> bool:
    return platform() == "linux"


# ------------------------------------------------------------------- cores


def affinity() -> frozenset[int] | None:
    """The cores this process may run on, or None where the system has no CPU
    affinity call (macOS, and interpreters without ``os.sched_getaffinity``)."""
    get = getattr(os, "sched_getaffinity", None)
    if not is_linux() or get is None:
        return None
    return frozenset(get(0))


def cpu_ids() -> tuple[int, ...]:
    """The cores the lab may use: the affinity where there is one, else every core."""
    cores = affinity()
    if cores is not None:
        return tuple(sorted(cores))
    return tuple(range(os.cpu_count() or 1))


def can_pin() -> bool:
    """True where a process or thread can be pinned to chosen cores (Linux)."""
    return affinity() is not None and hasattr(os, "sched_setaffinity")


def unpinned_reason() -> str:
    return f"no CPU affinity on {os_name()}"


def pin(cpus, pid: int = 0) -> bool:
    """Pin process (or, with pid 0 from a thread on Linux, that thread) to ``cpus``.
    False where it cannot be done: the OS then places it."""
    if not can_pin() or not cpus:
        return False
    try:
        os.sched_setaffinity(pid, {int(c) for c in cpus})
    except OSError:
        return False
    return True


def pinned_label(cpus) -> str:
    """What pinning to ``cpus`` does here: "pinned to core 1", "pinned to cores 0,1"
    or "unpinned: no CPU affinity on macOS"."""
    if not can_pin():
        return f"unpinned: {unpinned_reason()}"
    cpus = sorted(cpus or ())
    if not cpus:
        return "unpinned: every core"
    return (
        f"pinned to core {cpus[0]}"
        if len(cpus) == 1
        else f"pinned to cores {','.join(map(str, cpus))}"
    )


def pinned_command(cpu: int | None, command: list[str]) -> list[str]:
    """``command`` run on core ``cpu`` (through taskset) where pinning works; else as it is."""
    if cpu is None or not can_pin() or not shutil.which("taskset"):
        return list(command)
    return ["taskset", "-c", str(cpu), *command]


def has_cgroups() -> bool:
    """True where a CPU quota can come from a cgroup (Linux)."""
    return is_linux()


# ------------------------------------------------------------ memory, CPU time


def memory_kind() -> str:
    """ "PSS" on Linux (each shared page split between the processes sharing it), else "RSS"."""
    return "PSS" if is_linux() else "RSS"


def memory_label() -> str:
    """How memory is counted here, for a summary or an axis."""
    if is_linux():
        return "PSS"
    return (
        f"RSS, not PSS (no PSS on {os_name()}: "
        "pages shared by forked workers count once per process)"
    )


def memory_of(proc) -> int:
    """Bytes of memory of one ``psutil.Process``, counted as :func:`memory_kind` says."""
    if is_linux():
        info = proc.memory_full_info()
        return getattr(info, "pss", info.rss)
    return proc.memory_info().rss


def has_schedstat() -> bool:
    """True where the kernel counts each thread's CPU and wait time in nanoseconds."""
    return is_linux() and os.path.exists(f"/proc/self/task/{os.getpid()}/schedstat")


def process_cpu_ns(pid: int) -> int:
    """Nanoseconds every thread of ``pid`` has spent on a CPU.

    Linux: the first field of each /proc/PID/task/TID/schedstat (nanoseconds).
    Elsewhere psutil's user + system time, counted in clock ticks (coarser).
    """
    if has_schedstat():
        total = 0
        with contextlib.suppress(OSError):
            for task in Path(f"/proc/{pid}/task").iterdir():
                with contextlib.suppress(OSError, ValueError, IndexError):
                    total += int((task / "schedstat").read_text().split()[0])
        return total
    import psutil

    try:
        return int(sum(psutil.Process(pid).cpu_times()[:2]) * 1e9)
    except psutil.Error:
        return 0


def thread_wait_s() -> float | None:
    """Seconds this thread was runnable but not running (Linux schedstat), or None
    where it cannot be measured."""
    if not is_linux():
        return None
    try:
        with open("/proc/thread-self/schedstat") as f:
            return int(f.read().split()[1]) / 1e9
    except (OSError, ValueError, IndexError):
        return None


def wait_note() -> str:
    return f"waiting for a CPU not measured (no schedstat on {os_name()})"


# --------------------------------------------------------- processes, limits


def set_parent_death_signal(sig: int) -> bool:
    """Ask Linux to send ``sig`` to this process when its parent dies (PR_SET_PDEATHSIG).

    False elsewhere: then only the guard's stdin pipe notices a dead parent.
    """
    if not is_linux():
        return False
    import ctypes

    try:
        return (
            ctypes.CDLL(None, use_errno=True).prctl(1, int(sig), 0, 0, 0) == 0
        )  # 1 = PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        return False


def server_env() -> dict[str, str]:
    """What a forking server needs in its environment on this system.

    macOS: Objective-C's runtime kills a forked child that touches a framework
    the parent had started initialising (Gunicorn's workers can), unless told not to.
    """
    if platform() == "darwin":
        return {"OBJC_DISABLE_INITIALIZE_FORK_SAFETY": "YES"}
    return {}


def open_files_limit() -> tuple[int, int] | None:
    """(soft, hard) limit on open files, or None where there is none to read (Windows)."""
    try:
        import resource
    except ImportError:
        return None
    return resource.getrlimit(resource.RLIMIT_NOFILE)


def raise_open_files_limit(need: int) -> str | None:
    """Let this process (and what it starts) hold ``need`` sockets and some to spare,
    up to the hard limit. None when that is done; else one line saying what to do."""
    limits = open_files_limit()
    if limits is None:
        return None
    import resource

    soft, hard = limits
    want = need + 64
    if soft >= want:
        return None
    target = want if hard == resource.RLIM_INFINITY else min(hard, want)
    for value in (target, min(target, 10240)):  # macOS refuses more than kern.maxfilesperproc
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (value, hard))
            soft = value
            break
        except (ValueError, OSError):
            continue
    if soft >= want:
        return None
    return (
        f"the open-files limit is {soft}, fewer than the {want} this run needs: "
        f"run `ulimit -n {want}` in this shell first"
    )


def notes() -> list[str]:
    """One line for each measurement this system makes differently from Linux."""
    out = []
    if not can_pin():
        out.append(f"unpinned: {unpinned_reason()}; {UNPINNED_SPREAD}")
    if not is_linux():
        out.append(f"memory as {memory_label()}")
        out.append(f"CPU time from psutil (clock ticks), not schedstat; {wait_note()}")
        out.append(f"no cgroups on {os_name()}: usable cores come from the core count alone")
        out.append(
            f"no parent-death signal on {os_name()}: the guard's "
            "stdin pipe stops a server whose launcher died"
        )
    return out


# ------------------------------------------------------------ system programs

CHROMIUM_VAR = "CONCLAB_CHROMIUM"


def find_chromium() -> str | None:
    """The Chromium the browser tests drive: $CONCLAB_CHROMIUM, else ``chromium`` or
    ``chromium-browser`` on the PATH (Ubuntu's snap puts it in /snap/bin)."""
    chosen = os.environ.get(CHROMIUM_VAR)
    if chosen:
        return shutil.which(chosen)
    return shutil.which("chromium") or shutil.which("chromium-browser")


def install_hint(apt: str, brew: str) -> str:
    """How to install a program on this system, in one phrase."""
    if platform() == "darwin":
        return f"`brew install {brew}`"
    return f"`sudo apt-get install {apt}` (Debian/Ubuntu; the dev container has it)"
