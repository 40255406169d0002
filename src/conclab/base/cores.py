"""Which cores the lab may use, and how it splits them between client and servers.

"Usable cores" is what a prediction must use: the CPUs this process may run on
(its affinity) and the CPU time its cgroup may spend (``cpu.max``, a quota of
microseconds per period), whichever is smaller. A laptop with 8 cores, a
container limited to 1.5 CPUs and a job pinned to 2 cores all get true numbers.
"""

from __future__ import annotations

import math
import os
from pathlib import Path

from . import system

CGROUP_ROOT = Path("/sys/fs/cgroup")


def cgroup_quota(cgroup_root: Path | None = None) -> float | None:
    """CPUs allowed by this process's cgroup CPU quota (None: no quota).

    cgroup v2: ``cpu.max`` holds "QUOTA PERIOD" (e.g. "150000 100000" = 1.5 CPUs)
    or "max PERIOD"; cgroup v1: ``cpu/cpu.cfs_quota_us`` and ``cpu.cfs_period_us``.
    $CONCLAB_CGROUP_ROOT points at another folder (the tests fake a quota with it).
    """
    root = Path(cgroup_root or os.environ.get("CONCLAB_CGROUP_ROOT") or CGROUP_ROOT)
    candidates = []
    try:
        # /proc/self/cgroup: "0::/some/path" on cgroup v2
        for line in Path("/proc/self/cgroup").read_text().splitlines():
            if line.startswith("0::"):
                rel = line[3:].strip().lstrip("/")
                candidates.append(root / rel / "cpu.max")
    except OSError:
        pass
    candidates.append(root / "cpu.max")
    quotas = []
    for path in candidates:
        try:
            quota, period = path.read_text().split()[:2]
        except (OSError, ValueError):
            continue
        if quota != "max" and float(period) > 0:
            quotas.append(float(quota) / float(period))
    # cgroup v1 keeps the same two numbers in two files; -1 means no quota.
    for folder in (root / "cpu", root / "cpu,cpuacct"):
        try:
            quota = int((folder / "cpu.cfs_quota_us").read_text())
            period = int((folder / "cpu.cfs_period_us").read_text())
        except (OSError, ValueError):
            continue
        if quota > 0 and period > 0:
            quotas.append(quota / period)
    return min(quotas) if quotas else None


def usable_cores(cgroup_root: Path | None = None) -> int:
    """min(affinity, cgroup quota rounded up), at least 1: how many cores CPU work can use."""
    affinity = len(system.cpu_ids())
    quota = cgroup_quota(cgroup_root) if system.has_cgroups() else None
    if quota is None:
        return affinity
    return max(1, min(affinity, math.ceil(quota - 1e-9)))


def client_cpu() -> int | None:
    """The core the load driver pins itself to (the last one), or None on 1 core
    and where nothing can be pinned (macOS: see system.pinned_label)."""
    cpus = system.cpu_ids()
    return cpus[-1] if len(cpus) > 1 and system.can_pin() else None


def server_cpus() -> tuple[int, ...]:
    """Cores left for servers by default: all but the driver's."""
    cpus = system.cpu_ids()
    return tuple(cpus[:-1]) if client_cpu() is not None else tuple(cpus)


def placement() -> str:
    """Where the load driver and the servers run, as figures and summaries print it:
    "driver pinned to core 1, servers pinned to core 0" or "unpinned: no CPU affinity on macOS"."""
    if not system.can_pin():
        return f"unpinned: {system.unpinned_reason()}"
    cpu = client_cpu()
    if cpu is None:
        return "unpinned: one usable core, shared by driver and servers"
    return f"driver {system.pinned_label([cpu])}, servers {system.pinned_label(server_cpus())}"
