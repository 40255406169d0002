"""Judged right on an autograder's budget: half a CPU and 768 MB, as Gradescope's default.

Every lab's solution and every known answer in ``labs/*/instructor/mutants/``
(accepted alternatives and wrong answers) is graded inside cgroups of its own
(v2, or v1 ``cpu`` and ``memory``; made, used and removed by
``conclab.labs.sandbox``), and must get the verdicts its
``instructor/checks.toml`` promises - the verdicts tests/test_labs.py proves
without a quota - and so the same points. Inside, the lab counts 1 usable
core. Long (about 20 grader runs at half a CPU): marker ``cgroup``, run by
``make test-cgroup`` (a stage of .ci/run of its own), not by ``make test``.
The grading time per lab is printed at the end and written to
``build/cgroup-grading-times.json``.
"""

import json
import os
import shutil
import subprocess
import sys
import time
import tomllib
from pathlib import Path

import pytest

from conclab.base.paths import ROOT
from conclab.labs import handout as handouts
from conclab.labs.grading import collect_checks

pytestmark = [pytest.mark.cgroup, pytest.mark.labs, pytest.mark.timeout(900)]

CPU_QUOTA = 0.5
MEMORY_MB = 768
TIMEOUT = 540.0  # well inside Gradescope's 10-minute default
LABS = handouts.all_labs()
TIMES: dict[str, list[float]] = {}


def bounded(command, tmp_path, name):
    """Run ``command`` in the keeper, under the quota; return (its output, the bounds it held)."""
    keeper = [
        sys.executable,
        "-m",
        "conclab.labs.sandbox",
        "--timeout",
        str(TIMEOUT),
        "--memory-mb",
        str(MEMORY_MB),
        "--cpu-quota",
        str(CPU_QUOTA),
        "--scratch",
        str(tmp_path / f"scratch-{name}"),
        "--name",
        name,
        "--",
        *command,
    ]
    done = subprocess.run(keeper, capture_output=True, text=True, timeout=TIMEOUT + 60)
    bounds = done.stdout.rsplit("[bounds: ", 1)[-1]
    if "cgroup cpu quota" not in bounds or "cgroup memory" not in bounds:
        message = (
            f"cgroups are not writable here (bounds held: {bounds.strip()}); run as root on Linux"
        )
        if os.environ.get("CI") == "true":
            pytest.fail(message)
        pytest.skip(message)
    return done.stdout


@pytest.fixture(scope="module")
def handout(tmp_path_factory):
    out = tmp_path_factory.mktemp("dist") / "handout"
    subprocess.run(
        [str(Path(sys.executable).with_name("conclab")), "handout", "--out", str(out)],
        check=True,
        capture_output=True,
    )
    yield out
    report = {
        lab: {"runs": len(times), "seconds_each": [round(t, 1) for t in times]}
        for lab, times in TIMES.items()
    }
    if report:
        (ROOT / "build").mkdir(exist_ok=True)
        (ROOT / "build" / "cgroup-grading-times.json").write_text(
            json.dumps(report, indent=2) + "\n"
        )
        sys.__stdout__.write(
            "\ngrading time per run under 0.5 CPU / 768 MB:\n"
            + "".join(
                f"  {lab}: {max(t):.0f} s at most, "
                f"{sum(t) / len(t):.0f} s mean over {len(t)} run(s)\n"
                for lab, t in TIMES.items()
            )
        )


def test_the_lab_counts_one_usable_core_under_half_a_cpu(tmp_path):
    probe = (
        "from conclab.base.cores import usable_cores; import importlib.util, sys; "
        "spec = importlib.util.spec_from_file_location('w', "
        "sys.argv[1]); w = importlib.util.module_from_spec(spec); "
        "spec.loader.exec_module(w); print('cores', usable_cores(), w.usable_cores())"
    )
    output = bounded(
        [sys.executable, "-c", probe, str(ROOT / "servers" / "workload.py")], tmp_path, "cores"
    )
    assert "cores 1 1" in output, output


CASES = [pytest.param(lab, None, id=f"{lab.name}-solution") for lab in LABS] + [
    pytest.param(lab, mutant, id=f"{lab.name}-{mutant}")
    for lab in LABS
    for mutant in sorted(
        tomllib.loads((lab / "instructor" / "checks.toml").read_text()).get("mutants", {})
    )
]


@pytest.mark.parametrize(("lab", "mutant"), CASES)
def test_verdicts_and_points_under_an_autograders_quota(lab, mutant, handout, tmp_path):
    if mutant is None:
        folder, fails = lab, set()
    else:
        folder = tmp_path / lab.name
        shutil.copytree(handout / lab.name, folder)
        for path in (lab / "instructor" / "mutants" / mutant).iterdir():
            shutil.copy(path, folder / path.name)
        promised = tomllib.loads((lab / "instructor" / "checks.toml").read_text())
        fails = set(promised["mutants"][mutant]["fails"])
    out = tmp_path / "grade.json"
    started = time.monotonic()
    output = bounded(
        [
            str(Path(sys.executable).with_name("conclab")),
            "grade",
            lab.name,
            "--submission",
            str(folder),
            "--format",
            "json",
            "--out",
            str(out),
        ],
        tmp_path,
        lab.name[:2],
    )
    TIMES.setdefault(lab.name, []).append(time.monotonic() - started)
    assert out.is_file(), output
    grade = json.loads(out.read_text())
    failed = {c["name"] for c in grade["checks"] if not c["passed"]}
    assert failed == fails, json.dumps(grade, indent=1)[:4000]
    declared = {c.name: c.max_points for c in collect_checks(lab.name)}
    assert grade["score"] == sum(p for name, p in declared.items() if name not in fails)
    assert grade["max_score"] == sum(declared.values())
