"""What a teacher uploads unchanged.

    conclab autograder LAB --gradescope OUT.zip --classroom DIR

Gradescope (the zip)::

    setup.sh          run once on Gradescope's Ubuntu image: a Python >= 3.11
                      (deadsnakes' when the image's is older), a venv, the lab
    run_autograder    run per submission: grades it, writes results/results.json
    autograder.json   the lab and the files a submission must hold
    conclab/          the lab's source: src/, servers/, this lab (its hidden
                      instructor_test_*.py checks included; no solutions)

``run_autograder`` calls :func:`run_autograder`, which finds the submission
(``/autograder/submission``, or one folder down), grades a copy of it in a
fresh process, kills whatever the student's code left running (it is a child
subreaper: a double-forked process comes back to it), and only then writes
``results.json``. $CONCLAB_AUTOGRADER_ROOT replaces ``/autograder`` (the
tests run it against fake roots).

GitHub Classroom (the folder): the lab's handout as a template repository, the
lab's source in ``.conclab/`` and ``.github/workflows/classroom.yml`` running
each check with ``conclab grade --check NAME`` for its points.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import stat
import sys
import tempfile
import zipfile
from pathlib import Path

from ..base.errors import LabError
from ..base.files import atomic_write
from ..base.paths import ROOT
from .grading import collect_checks, find_submission, grade, student_files
from .handout import _copy_lab, find_lab
from .results import Grade, format_gradescope, format_text

DEFAULT_ROOT = "/autograder"
SKIP = shutil.ignore_patterns("__pycache__", "*.pyc", ".pytest_cache", ".ruff_cache")
CLASSROOM_PYTHON = "3.12"
CHECK_MINUTES = 10  # a Classroom step's timeout; a whole lab grades in about a minute

SETUP_SH = r"""#!/usr/bin/env bash
# Gradescope runs this once, as root, on its Ubuntu image, to build the autograder.
set -euo pipefail
cd /autograder/source
export DEBIAN_FRONTEND=noninteractive
# The lab needs Python 3.11 or newer; older Ubuntu images have 3.10 or less:
# take deadsnakes' build (https://launchpad.net/~deadsnakes/+archive/ubuntu/ppa).
PY=""
for candidate in python3.13 python3.12 python3.11 python3; do
    if command -v "$candidate" >/dev/null &&
       "$candidate" -c 'import sys, venv, ensurepip; sys.exit(sys.version_info < (3, 11))' \
           2>/dev/null; then
        PY="$candidate"; break
    fi
done
if [ -z "$PY" ]; then
    apt-get update -qq
    apt-get install -y -qq --no-install-recommends software-properties-common gpg-agent
    add-apt-repository -y ppa:deadsnakes/ppa
    apt-get update -qq
    apt-get install -y -qq --no-install-recommends python3.12 python3.12-venv
    PY=python3.12
fi
"$PY" -m venv /autograder/venv
/autograder/venv/bin/python -m pip install --quiet --upgrade pip
/autograder/venv/bin/python -m pip install --quiet -e /autograder/source/conclab
/autograder/venv/bin/conclab grade --help >/dev/null
"""

RUN_AUTOGRADER = r"""#!/usr/bin/env bash
# Gradescope runs this for every submission (as root): grade it, write results.json.
set -uo pipefail
ROOT="${CONCLAB_AUTOGRADER_ROOT:-/autograder}"
export CONCLAB_AUTOGRADER_ROOT="$ROOT"
export CONCLAB_LABS="$ROOT/source/conclab/labs"
exec "${CONCLAB_AUTOGRADER_BIN:-$ROOT/venv/bin/conclab}" autograder LAB --run
"""


# --- what goes in ----------------------------------------------------------------


def write_source(lab: Path, dest: Path, hidden: bool) -> Path:
    """The lab's installable source in ``dest``: pyproject, src/, servers/, and the lab
    as handed out (solutions cut), with its hidden checks when ``hidden``."""
    dest.mkdir(parents=True)
    for name in ("pyproject.toml", "README.md"):
        shutil.copy2(ROOT / name, dest / name)
    shutil.copytree(ROOT / "src", dest / "src", ignore=SKIP)
    shutil.copytree(ROOT / "servers", dest / "servers", ignore=SKIP)
    labs = dest / "labs"
    (labs / lab.name).mkdir(parents=True)
    shutil.copy2(lab.parent / "pytest.ini", labs / "pytest.ini")
    _copy_lab(lab, labs / lab.name)
    if hidden:
        for test in sorted((lab / "grader").glob("instructor_test_*.py")):
            shutil.copy2(test, labs / lab.name / "grader" / test.name)
    for info in dest.rglob("*.egg-info"):
        shutil.rmtree(info, ignore_errors=True)
    return dest


def write_gradescope_zip(key: str | None, out: str | Path) -> Path:
    lab = _lab(key)
    out = Path(out)
    with tempfile.TemporaryDirectory(prefix="conclab-autograder-") as scratch:
        staging = Path(scratch)
        write_source(lab, staging / "conclab", hidden=True)
        files = {
            "setup.sh": SETUP_SH,
            "run_autograder": RUN_AUTOGRADER.replace(" LAB ", f" {lab.name[:2]} "),
            "autograder.json": json.dumps({"lab": lab.name, "files": student_files(lab)}, indent=2)
            + "\n",
        }
        for name, text in files.items():
            (staging / name).write_text(text)
            if not name.endswith(".json"):
                (staging / name).chmod(0o755)
        out.parent.mkdir(parents=True, exist_ok=True)
        partial = out.with_name(out.name + ".partial")
        with zipfile.ZipFile(partial, "w", zipfile.ZIP_DEFLATED) as zf:
            for path in sorted(staging.rglob("*")):
                if path.is_file():
                    info = zipfile.ZipInfo.from_file(path, path.relative_to(staging).as_posix())
                    info.external_attr = (stat.S_IFREG | path.stat().st_mode & 0o777) << 16
                    with zf.open(info, "w") as target:
                        target.write(path.read_bytes())
        partial.replace(out)
    return out


def write_classroom_template(key: str | None, out: str | Path) -> Path:
    """A template repository: the handout at the root,
    the lab's source in .conclab/, the workflow."""
    lab = _lab(key)
    out = Path(out)
    if out.exists() and any(out.iterdir()):
        raise LabError(f"{out} is not empty: give a new folder for the template repository")
    out.mkdir(parents=True, exist_ok=True)
    _copy_lab(lab, out)
    write_source(lab, out / ".conclab", hidden=False)
    workflow = out / ".github" / "workflows" / "classroom.yml"
    workflow.parent.mkdir(parents=True)
    workflow.write_text(classroom_workflow(lab))
    return out


def classroom_workflow(lab: Path) -> str:
    """GitHub Classroom's autograding workflow: one command-grader step per check, with its points.

    Hidden checks are left out: the workflow runs in the student's own repository,
    where nothing can be hidden."""
    checks = [c for c in collect_checks(lab.name) if c.visibility == "visible"]
    number = lab.name[:2]
    ids = [re.sub(r"[^a-z0-9]+", "-", c.name.lower()).strip("-") for c in checks]
    lines = [
        "# Written by `conclab autograder "
        + number
        + " --classroom`: one step per check, with its points.",
        "name: Autograding Tests",
        "'on': [push, repository_dispatch]",
        "permissions: {checks: write, actions: read, contents: read}",
        "env: {CONCLAB_LABS: .conclab/labs}",
        "jobs:",
        "  run-autograding-tests:",
        "    runs-on: ubuntu-latest",
        "    if: github.actor != 'github-classroom[bot]'",
        "    steps:",
        "    - name: Checkout code",
        "      uses: actions/checkout@v4",
        "    - uses: actions/setup-python@v5",
        f"      with: {{python-version: '{CLASSROOM_PYTHON}'}}",
        "    - name: Install the lab",
        "      run: python -m pip install --quiet -e ./.conclab",
    ]
    for check, step in zip(checks, ids, strict=True):
        command = f"conclab grade {number} --submission . --check '{check.name}'"
        lines += [
            f"    - name: {json.dumps(check.name)}",
            f"      id: {step}",
            "      uses: classroom-resources/autograding-command-grader@v1",
            "      with:",
            f"        test-name: {json.dumps(check.name)}",
            "        setup-command: ''",
            f"        command: {json.dumps(command)}",
            f"        timeout: {CHECK_MINUTES}",
            f"        max-score: {check.max_points:g}",
        ]
    lines += [
        "    - name: Autograding Reporter",
        "      uses: classroom-resources/autograding-grading-reporter@v1",
        "      env:",
    ]
    lines += [
        f'        {step.upper()}_RESULTS: "${{{{steps.{step}.outputs.result}}}}"' for step in ids
    ]
    lines += ["      with:", f"        runners: {','.join(ids)}"]
    return "\n".join(lines) + "\n"


def _lab(key):
    if not key:
        raise LabError("which lab? e.g. conclab autograder 01 --gradescope lab01.zip")
    return find_lab(key)


# --- on Gradescope ---------------------------------------------------------------


def run_autograder(key: str | None) -> int:
    """Grade /autograder/submission, write
    /autograder/results/results.json (see the module docstring)."""
    from . import sandbox  # Linux-only calls, used here and in batch grading only

    root = Path(os.environ.get("CONCLAB_AUTOGRADER_ROOT") or DEFAULT_ROOT)
    meta = json.loads((root / "source" / "autograder.json").read_text())
    reaper = sandbox.become_subreaper()
    found = find_submission(root / "submission", meta["files"])
    if found is None:
        verdict = Grade(
            meta["lab"],
            [],
            0.0,
            f"your submission holds no {', '.join(meta['files'])}: upload the "
            "files of the lab folder (or the folder itself)",
        )
    else:
        with tempfile.TemporaryDirectory(prefix="conclab-submission-") as scratch:
            copy = Path(scratch) / meta["lab"]
            shutil.copytree(found, copy, ignore=SKIP, symlinks=True)
            verdict = grade(key or meta["lab"], copy, live=False)
            if not verdict.checks and not verdict.error:
                verdict.error = "the grader reported nothing"
    # Whatever the student's code left running is killed, and gone, before
    # results.json is written.
    sandbox.kill_until_gone(sandbox.descendants)
    if found is not None and not verdict.checks:
        full = collect_checks(meta["lab"])
        for check in full:
            check.output = verdict.error
        verdict.checks = full
    results = root / "results"
    results.mkdir(parents=True, exist_ok=True)
    atomic_write(results / "results.json", format_gradescope(verdict))
    sys.stdout.write(format_text(verdict))
    if not reaper:
        print("(not a subreaper here: a process that forked away may outlive the grade)")
    return 0
