"""Usable cores: the CPU affinity and the cgroup CPU quota, whichever is smaller."""

import math

import pytest

from conclab.base import system
from conclab.base.cores import cgroup_quota, usable_cores

AFFINITY = len(system.cpu_ids())
pytestmark = pytest.mark.skipif(
    not system.has_cgroups(), reason="cgroup CPU quotas are Linux's: this system has none"
)


@pytest.fixture
def cgroup(tmp_path, monkeypatch):
    monkeypatch.setenv("CONCLAB_CGROUP_ROOT", str(tmp_path))
    return tmp_path


def test_no_quota_leaves_the_affinity(cgroup):
    (cgroup / "cpu.max").write_text("max 100000\n")
    assert cgroup_quota() is None
    assert usable_cores() == AFFINITY


def test_a_v2_quota_of_half_a_cpu_leaves_one_core(cgroup):
    (cgroup / "cpu.max").write_text("50000 100000\n")
    assert cgroup_quota() == pytest.approx(0.5)
    assert usable_cores() == 1


def test_a_v1_quota_counts_too(cgroup):
    (cgroup / "cpu").mkdir()
    (cgroup / "cpu" / "cpu.cfs_quota_us").write_text("150000\n")
    (cgroup / "cpu" / "cpu.cfs_period_us").write_text("100000\n")
    assert cgroup_quota() == pytest.approx(1.5)
    assert usable_cores() == min(AFFINITY, 2)


def test_a_v1_quota_of_minus_one_means_none(cgroup):
    (cgroup / "cpu").mkdir()
    (cgroup / "cpu" / "cpu.cfs_quota_us").write_text("-1\n")
    (cgroup / "cpu" / "cpu.cfs_period_us").write_text("100000\n")
    assert cgroup_quota() is None


def test_a_quota_above_the_affinity_does_not_add_cores(cgroup):
    (cgroup / "cpu.max").write_text(f"{(AFFINITY + 3) * 100000} 100000\n")
    assert usable_cores() == AFFINITY
    assert math.ceil(cgroup_quota()) == AFFINITY + 3


def own_group(cgroup, monkeypatch, membership):
    """This process's groups, as /proc/self/cgroup would list them."""
    (cgroup / "self-cgroup").write_text(membership)
    monkeypatch.setenv("CONCLAB_PROC_CGROUP", str(cgroup / "self-cgroup"))


def v1_quota(folder, quota, period=100000):
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "cpu.cfs_quota_us").write_text(f"{quota}\n")
    (folder / "cpu.cfs_period_us").write_text(f"{period}\n")


def test_a_v1_quota_on_the_process_own_child_group_counts(cgroup, monkeypatch):
    """A grader in a child group of half a CPU has one core, whatever the root group allows."""
    v1_quota(cgroup / "cpu", -1)
    v1_quota(cgroup / "cpu" / "grading" / "alice", 50000)
    own_group(cgroup, monkeypatch, "4:memory:/x\n2:cpu,cpuacct:/grading/alice\n0::/\n")
    assert cgroup_quota() == pytest.approx(0.5)
    assert usable_cores() == 1


def test_a_v1_quota_on_a_parent_group_binds_its_children(cgroup, monkeypatch):
    v1_quota(cgroup / "cpu" / "grading", 100000)
    v1_quota(cgroup / "cpu" / "grading" / "alice", -1)
    own_group(cgroup, monkeypatch, "1:cpu:/grading/alice\n")
    assert cgroup_quota() == pytest.approx(1.0)


def test_a_v2_quota_on_the_process_own_group_counts(cgroup, monkeypatch):
    (cgroup / "cpu.max").write_text("max 100000\n")
    (cgroup / "grading").mkdir()
    (cgroup / "grading" / "cpu.max").write_text("50000 100000\n")
    own_group(cgroup, monkeypatch, "0::/grading\n")
    assert cgroup_quota() == pytest.approx(0.5)
    assert usable_cores() == 1


def test_the_standalone_servers_read_the_same_quota(cgroup, monkeypatch):
    """servers/workload.py keeps its own copy of the rule (it runs without the lab installed)."""
    import importlib.util

    from conclab.base.paths import SERVERS_DIR

    spec = importlib.util.spec_from_file_location("workload_copy", SERVERS_DIR / "workload.py")
    workload = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(workload)
    v1_quota(cgroup / "cpu" / "grading" / "alice", 50000)
    own_group(cgroup, monkeypatch, "2:cpu,cpuacct:/grading/alice\n0::/\n")
    assert workload.usable_cores() == usable_cores() == 1
    (cgroup / "grading").mkdir()
    (cgroup / "grading" / "cpu.max").write_text("100000 100000\n")
    own_group(cgroup, monkeypatch, "0::/grading\n")
    assert workload.usable_cores() == usable_cores() == 1
