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

    The quota that binds is the process's own group's, or any ancestor's,
    whichever is smallest: a grader started in a child group of 0.5 CPU has
    0.5 CPU however much the root group allows. ``/proc/self/cgroup`` names the
    groups: "0::/a/b" on cgroup v2, "4:cpu,cpuacct:/a/b" on v1.

    cgroup v2: ``cpu.max`` holds "QUOTA PERIOD" (e.g. "150000 100000" = 1.5 CPUs)
    or "max PERIOD"; cgroup v1: ``cpu.cfs_quota_us`` and ``cpu.cfs_period_us``
    in the ``cpu`` controller's folder (-1 = no quota).
    $CONCLAB_CGROUP_ROOT points at another folder and $CONCLAB_PROC_CGROUP at
    another membership file (the tests fake a quota with them).
    """
    root = Path(cgroup_root or os.environ.get("CONCLAB_CGROUP_ROOT") or CGROUP_ROOT)
    quotas = []
    for folder in _quota_folders(root, _own_groups()):
        quota, _, period = _read(folder / "cpu.max").strip().partition(" ")
        if quota.isdigit() and period.isdigit() and int(period) > 0:
            quotas.append(int(quota) / int(period))
        quota, period = (
            _read(folder / "cpu.cfs_quota_us").strip(),
            _read(folder / "cpu.cfs_period_us").strip(),
        )
        if quota.isdigit() and period.isdigit() and int(quota) > 0 and int(period) > 0:
            quotas.append(int(quota) / int(period))
    return min(quotas) if quotas else None


def _own_groups() -> dict[str, str]:
    """{controllers: group path} from /proc/self/cgroup ("" = the v2 hierarchy)."""
    groups = {}
    for line in _read(os.environ.get("CONCLAB_PROC_CGROUP") or "/proc/self/cgroup").splitlines():
        _, controllers, path = (line.split(":", 2) + ["", ""])[:3]
        groups[controllers] = path.strip().strip("/")
    return groups


def _quota_folders(root: Path, groups: dict[str, str]) -> list[Path]:
    """Every folder whose quota limits this process: its own groups and their ancestors."""
    places = [(root, groups.get("", ""))]  # v2 (or no /proc: the root group only)
    cpu_v1 = next((path for ctrls, path in groups.items() if "cpu" in ctrls.split(",")), "")
    places += [(root / mount, cpu_v1) for mount in ("cpu", "cpu,cpuacct")]
    folders = []
    for mount, path in places:
        parts = [p for p in path.split("/") if p]
        folders += [mount.joinpath(*parts[:n]) for n in range(len(parts), -1, -1)]
    return folders


def _read(path) -> str:
    try:
        return Path(path).read_text()
    except OSError:
        return ""


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
