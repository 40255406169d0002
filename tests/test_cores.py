"""Usable cores: the CPU affinity and the cgroup CPU quota, whichever is smaller."""

import math

import pytest

from conclab.base import system
from conclab.base.cores import cgroup_quota, usable_cores

AFFINITY = len(system.cpu_ids())
pytestmark = pytest.mark.skipif(not system.has_cgroups(), reason="cgroup CPU quotas are Linux's: this system has none")


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
