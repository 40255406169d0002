"""Bounds around one grader run, so a submission costs its own student alone.

    python -m conclab.labs.sandbox --timeout 180 --memory-mb 768 --cpus 0 \\
        --scratch DIR -- conclab grade 01 --submission S --format json --out F

runs the command as a **keeper** process that:

- is a child subreaper (``PR_SET_CHILD_SUBREAPER``): a process the student's
  code double-forks out of its process group is re-parented to the keeper,
  not to init, so the keeper finds it and kills it when the grade is done;
- puts itself and everything it starts into cgroups of its own, where the
  machine lets it write them (cgroup v2, or v1 ``cpu``, ``memory`` and
  ``pids``): a memory limit (memory.max / memory.limit_in_bytes), a process
  count limit, and a CPU quota if asked; every process left in them is killed
  at the end and the groups removed;
- sets rlimits for the grader and all it starts: ``RLIMIT_FSIZE`` (no file
  bigger than ``--file-mb``: a disk-filling loop dies with SIGXFSZ),
  ``RLIMIT_CORE`` 0, and, only where no memory cgroup could be made,
  ``RLIMIT_AS`` (per process, not in total);
- pins the grader to ``--cpus`` (its own cores, so parallel graders never
  share one), and points ``TMPDIR`` at ``--scratch``, removed at the end; as
  root, ``--scratch`` is a tmpfs of ``--disk-mb``, so all the files a grader
  and the student's servers write there together are bounded (RLIMIT_FSIZE
  bounds one file only: a server restarting its workers writes many);
- keeps at most ``--output-kb`` of the command's output (a submission that
  prints megabytes fills nothing);
- stops the command after ``--timeout`` seconds, and then everything it left.

Linux only, and only imported by batch grading and ``run_autograder``: nothing
here runs at import. On a Mac (no prctl, no cgroups, no RLIMIT_AS) the timeout,
the process group, RLIMIT_FSIZE and the output cap still hold; ``bounds_here``
says which bounds hold on this machine.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import resource
import shutil
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

CGROUP_ROOT = Path("/sys/fs/cgroup")
PR_SET_CHILD_SUBREAPER = 36
MAX_PIDS = 256  # processes in one grader's cgroup (a fork bomb stops there)


def become_subreaper() -> bool:
    """Orphans of our descendants come to us (Linux 3.4+); False where that is not possible."""
    try:
        import ctypes

        return ctypes.CDLL(None, use_errno=True).prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) == 0
    except (OSError, AttributeError):
        return False


def descendants(pid: int | None = None) -> list[int]:
    """Every living process below ``pid`` (default: this one)."""
    import psutil

    try:
        return [child.pid for child in psutil.Process(pid or os.getpid()).children(recursive=True)]
    except psutil.NoSuchProcess:
        return []


def kill_all(pids) -> None:
    for pid in pids:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.kill(pid, signal.SIGKILL)


def reap() -> None:
    """Collect every exited child (orphans re-parented to a subreaper included)."""
    while True:
        try:
            pid, _ = os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:
            return
        if pid == 0:
            return


def kill_until_gone(find, seconds: float = 5.0) -> bool:
    """SIGKILL the processes ``find()`` lists (never this one), reaping our children,
    until it lists none (True) or ``seconds`` have passed (False).

    A killed process is not gone at once: until the kernel has torn it down (its
    memory first), it is still listed, still "running", and on a busy machine that
    can take a second or more. So "nothing left" is checked again, not assumed.
    """
    deadline = time.monotonic() + seconds
    while True:
        left = set(find()) - {os.getpid()}
        if not left:
            return True
        if time.monotonic() > deadline:
            return False
        kill_all(left)
        reap()
        time.sleep(0.05)


# --- cgroups ---------------------------------------------------------------------


class Cgroups:
    """This process's own cgroups for one grader run
    (v2, else v1 cpu/memory/pids), where writable."""

    def __init__(
        self, name: str, memory_mb: int | None, cpu_quota: float | None, root: Path = CGROUP_ROOT
    ):
        self.folders: list[Path] = []
        self.bounds: list[str] = []
        own = _own_groups()
        v2 = root / "cgroup.controllers"
        if v2.is_file():  # the unified hierarchy
            folder = root / own.get("", "").strip("/") / name
            if self._make(folder):
                self._set(folder, "memory.max", memory_mb and memory_mb * 2**20, "memory")
                self._set(folder, "pids.max", MAX_PIDS, "pids")
                self._set(
                    folder,
                    "cpu.max",
                    cpu_quota and f"{int(cpu_quota * 100000)} 100000",
                    "cpu quota",
                )
            return
        for controller, settings in (
            ("memory", [("memory.limit_in_bytes", memory_mb and memory_mb * 2**20, "memory")]),
            ("pids", [("pids.max", MAX_PIDS, "pids")]),
            (
                "cpu",
                [
                    ("cpu.cfs_period_us", cpu_quota and 100000, None),
                    ("cpu.cfs_quota_us", cpu_quota and int(cpu_quota * 100000), "cpu quota"),
                ],
            ),
        ):
            mount = root / controller
            path = next((p for ctrls, p in own.items() if controller in ctrls.split(",")), "/")
            folder = mount / path.strip("/") / name
            if mount.is_dir() and self._make(folder):
                for file, value, what in settings:
                    self._set(folder, file, value, what)

    def _make(self, folder: Path) -> bool:
        try:
            folder.mkdir()
        except OSError:
            return False
        self.folders.append(folder)
        return True

    def _set(self, folder, file, value, what):
        if value in (None, 0, "", False):
            return
        try:
            (folder / file).write_text(str(value))
        except OSError:
            return
        if what:
            self.bounds.append(f"cgroup {what}")

    def join(self, pid: int) -> None:
        for folder in self.folders:
            with contextlib.suppress(OSError):
                (folder / "cgroup.procs").write_text(str(pid))

    def procs(self) -> set[int]:
        found = set()
        for folder in self.folders:
            with contextlib.suppress(OSError):
                found |= {int(p) for p in (folder / "cgroup.procs").read_text().split()}
        return found

    def has(self, what: str) -> bool:
        return f"cgroup {what}" in self.bounds

    def remove(self, leave: int) -> None:
        """Kill every process in the groups but ``leave`` (the keeper), move it out, remove them."""
        kill_until_gone(lambda: self.procs() - {leave})
        for folder in self.folders:
            parent = folder.parent
            with contextlib.suppress(OSError):
                (parent / "cgroup.procs").write_text(str(leave))
        for folder in self.folders:
            for _ in range(20):
                try:
                    folder.rmdir()
                    break
                except FileNotFoundError:
                    break
                except OSError:
                    time.sleep(0.05)


def _own_groups() -> dict[str, str]:
    groups = {}
    with contextlib.suppress(OSError):
        for line in Path("/proc/self/cgroup").read_text().splitlines():
            _, controllers, path = (line.split(":", 2) + ["", ""])[:3]
            groups[controllers] = path.strip()
    return groups


def _mount_tmpfs(folder: Path, size_mb: int) -> bool:
    """A tmpfs of ``size_mb`` at ``folder`` (root only): the disk a submission may fill,
    all of it gone when unmounted. False where it cannot be mounted."""
    if os.geteuid() != 0 or not shutil.which("mount"):
        return False
    done = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", f"size={size_mb}m,mode=1777", "tmpfs", str(folder)],
        capture_output=True,
    )
    return done.returncode == 0


# --- the keeper ------------------------------------------------------------------


def _limits(file_mb: int, memory_mb: int | None, cpus: list[int] | None):
    def apply():  # runs in the child, between fork and exec
        os.setsid()  # a process group of its own, so the keeper can stop it as one
        resource.setrlimit(resource.RLIMIT_FSIZE, (file_mb * 2**20, file_mb * 2**20))
        resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
        if memory_mb:
            with contextlib.suppress(ValueError, OSError, AttributeError):
                resource.setrlimit(resource.RLIMIT_AS, (memory_mb * 2**20, memory_mb * 2**20))
        if cpus:
            os.sched_setaffinity(0, cpus)

    return apply


def keep(
    command: list[str],
    *,
    timeout: float,
    memory_mb: int | None,
    cpus: list[int] | None,
    cpu_quota: float | None,
    scratch: Path,
    file_mb: int,
    output_kb: int,
    name: str,
    disk_mb: int = 512,
) -> int:
    """Run ``command`` bounded; write its capped output
    to stdout; return its exit code (124: timed out)."""
    reaper = become_subreaper()
    groups = Cgroups(f"conclab-{name}-{os.getpid()}", memory_mb, cpu_quota)
    groups.join(os.getpid())  # what the keeper starts from now on starts inside
    scratch.mkdir(parents=True, exist_ok=True)
    mounted = _mount_tmpfs(scratch, disk_mb)
    if mounted:
        groups.bounds.append(f"tmpfs TMPDIR of {disk_mb} MB")
    env = dict(os.environ, TMPDIR=str(scratch))
    # Without a memory cgroup, RLIMIT_AS bounds each process instead (address space, so
    # generously: threads reserve far more than they touch).
    address_mb = None if groups.has("memory") else (memory_mb and max(4 * memory_mb, 4096))
    proc = subprocess.Popen(
        command,
        env=env,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        preexec_fn=_limits(file_mb, address_mb, cpus),
    )
    kept = bytearray()

    def read():  # keep the first output_kb, drain the rest
        for chunk in iter(lambda: proc.stdout.read(65536), b""):
            if len(kept) < output_kb * 1024:
                kept.extend(chunk[: output_kb * 1024 - len(kept)])

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    code = None
    try:
        code = proc.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        code = 124
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        # Whatever escaped the group: in our cgroups, or re-parented to us.
        kill_until_gone(lambda: groups.procs() | set(descendants()))
        proc.wait()
        reader.join(5)
        groups.remove(os.getpid())
        if mounted:
            subprocess.run(["umount", "-l", str(scratch)], capture_output=True)
        shutil.rmtree(scratch, ignore_errors=True)
    sys.stdout.buffer.write(bytes(kept))
    if len(kept) >= output_kb * 1024:
        sys.stdout.write(f"\n[output cut at {output_kb} KB]\n")
    sys.stdout.write(f"\n[bounds: {', '.join(bounds_here(groups, reaper))}]\n")
    sys.stdout.flush()
    return code


def bounds_here(groups: Cgroups | None = None, reaper: bool | None = None) -> list[str]:
    """Which bounds hold on this machine, in words."""
    bounds = ["timeout", "process group", "RLIMIT_FSIZE", "output cap", "own cores"]
    if reaper:
        bounds.append("subreaper")
    if groups is not None:
        bounds += groups.bounds
        if not groups.has("memory"):
            bounds.append("RLIMIT_AS (per process)")
    return bounds


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m conclab.labs.sandbox")
    parser.add_argument("--timeout", type=float, required=True)
    parser.add_argument("--memory-mb", type=int)
    parser.add_argument("--cpus", help="comma-separated cores to pin to")
    parser.add_argument("--cpu-quota", type=float, help="CPUs of CPU time (cgroup), e.g. 0.5")
    parser.add_argument("--scratch", type=Path, required=True, help="TMPDIR, removed at the end")
    parser.add_argument("--file-mb", type=int, default=64)
    parser.add_argument("--disk-mb", type=int, default=512)
    parser.add_argument("--output-kb", type=int, default=256)
    parser.add_argument("--name", default="grade")
    parser.add_argument("command", nargs=argparse.REMAINDER)
    args = parser.parse_args(argv)
    command = args.command[1:] if args.command[:1] == ["--"] else args.command
    cpus = [int(c) for c in args.cpus.split(",")] if args.cpus else None
    return keep(
        command,
        timeout=args.timeout,
        memory_mb=args.memory_mb,
        cpus=cpus,
        cpu_quota=args.cpu_quota,
        scratch=args.scratch,
        file_mb=args.file_mb,
        output_kb=args.output_kb,
        name=args.name,
        disk_mb=args.disk_mb,
    )


if __name__ == "__main__":
    sys.exit(main())
