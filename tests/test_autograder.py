"""What a teacher uploads: Gradescope's zip, run against fake /autograder roots, and the
GitHub Classroom workflow, whose commands are run here as the workflow runs them.

Lab 04 (quick to grade). setup.sh cannot run here (it needs Gradescope's image):
the fake roots use this checkout's `conclab` ($CONCLAB_AUTOGRADER_BIN) with the
zip's own copy of the lab ($CONCLAB_LABS, set by run_autograder).
"""

import json
import os
import shlex
import shutil
import subprocess
import sys
import tomllib
import zipfile
from pathlib import Path

import psutil
import pytest
import yaml

from conclab.labs import handout as handouts

# A long CI stage (make test-stages): each test grades a submission as Gradescope would.
pytestmark = [pytest.mark.labs, pytest.mark.slow, pytest.mark.stage, pytest.mark.timeout(600)]

CONCLAB = str(Path(sys.executable).with_name("conclab"))
LAB = handouts.find_lab("04")
SOLUTION = (LAB / "app.py").read_text()
STARTER_FAILS = set(
    tomllib.loads((LAB / "instructor" / "checks.toml").read_text())["starter_fails"]
)


def conclab(*args, **kwargs):
    return subprocess.run([CONCLAB, *args], capture_output=True, text=True, timeout=300, **kwargs)


@pytest.fixture(scope="module")
def made(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("autograder")
    done = conclab(
        "autograder",
        "04",
        "--gradescope",
        str(tmp / "lab04.zip"),
        "--classroom",
        str(tmp / "template"),
    )
    assert done.returncode == 0, done.stderr
    starter = tmp / "handout"
    assert conclab("handout", "--out", str(starter)).returncode == 0
    return tmp, (starter / LAB.name / "app.py").read_text(), starter


def run_autograder(made, tmp_path, files):
    """A fake /autograder: source/ from the zip, submission/ from ``files``; run run_autograder."""
    zip_path = made[0] / "lab04.zip"
    root = tmp_path / "autograder"
    with zipfile.ZipFile(zip_path) as zf:
        zf.extractall(root / "source")
    for info in zipfile.ZipFile(zip_path).infolist():  # extractall drops the modes
        (root / "source" / info.filename).chmod(info.external_attr >> 16 & 0o777)
    for name, text in files.items():
        path = root / "submission" / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    env = dict(os.environ, CONCLAB_AUTOGRADER_ROOT=str(root), CONCLAB_AUTOGRADER_BIN=CONCLAB)
    env.pop("CONCLAB_LABS", None)
    done = subprocess.run(
        [str(root / "source" / "run_autograder")],
        cwd=root / "source",
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    results = json.loads((root / "results" / "results.json").read_text())
    assert set(results) == {"score", "output", "tests"}
    return results, done.stdout


def scores(results):
    return {t["name"].split(" - ")[0]: t["score"] for t in results["tests"]}


def test_the_zip_holds_what_gradescope_runs_and_no_solution(made):
    with zipfile.ZipFile(made[0] / "lab04.zip") as zf:
        names = zf.namelist()
        modes = {i.filename: i.external_attr >> 16 for i in zf.infolist()}
        app = zf.read(f"conclab/labs/{LAB.name}/app.py").decode()
        setup = zf.read("setup.sh").decode()
    assert {"setup.sh", "run_autograder", "autograder.json", "conclab/pyproject.toml"} <= set(names)
    assert modes["run_autograder"] & 0o111 and modes["setup.sh"] & 0o111
    assert not [n for n in names if "instructor/" in n or "mutants" in n]
    assert "BEGIN SOLUTION" not in app and app == (made[2] / LAB.name / "app.py").read_text()
    assert "deadsnakes" in setup and "(3, 11)" in setup


def test_a_passing_submission_scores_the_maximum(made, tmp_path):
    results, _ = run_autograder(made, tmp_path, {"app.py": SOLUTION})
    assert results["score"] == sum(t["max_score"] for t in results["tests"]) == 5
    assert all(t["status"] == "passed" for t in results["tests"])


def test_a_submission_nested_one_folder_down_is_found(made, tmp_path):
    results, _ = run_autograder(
        made, tmp_path, {f"{LAB.name}/app.py": SOLUTION, "__MACOSX/app.py": "junk"}
    )
    assert results["score"] == 5


def test_a_failing_submission_scores_less_with_the_hint(made, tmp_path):
    results, _ = run_autograder(made, tmp_path, {"app.py": made[1]})
    failed = {name for name, score in scores(results).items() if score == 0}
    assert failed == STARTER_FAILS and results["score"] == 1
    hint = next(t for t in results["tests"] if t["name"].startswith("every_hit"))["output"]
    assert "Look at hit() and total() in app.py" in hint


def test_a_crashing_submission_scores_zero_with_its_traceback(made, tmp_path):
    escaped = tmp_path / "escaped"
    escaped.mkdir()
    crash = (
        SOLUTION
        + f"""
import os, time
if os.fork() == 0:  # a process that forks away and would rewrite results.json later
    os.setsid()
    open(os.path.join({str(escaped)!r}, str(os.getpid())), "w").close()
    time.sleep(3600)
raise RuntimeError("boom")
"""
    )
    results, _ = run_autograder(made, tmp_path, {"app.py": crash})
    assert results["score"] == 0 and len(results["tests"]) == 3
    outputs = [t["output"] for t in results["tests"]]
    # Every check says the app did not start, with the student's traceback.
    assert all(
        "did not start" in out and "RuntimeError: boom" in out and 'app.py", line' in out
        for out in outputs
    ), outputs
    pids = [int(p.name) for p in escaped.iterdir()]
    assert pids, "the crashing submission never forked (the test proves nothing)"
    assert not [p for p in pids if psutil.pid_exists(p) and psutil.Process(p).status() != "zombie"]


def test_an_empty_submission_says_what_is_missing(made, tmp_path):
    results, _ = run_autograder(made, tmp_path, {"notes.txt": "hello"})
    assert results["score"] == 0 and "holds no app.py" in results["output"]


def workflow_commands(template):
    """(command, points) per check step of the Classroom workflow, as GitHub would run them."""
    workflow = yaml.safe_load((template / ".github" / "workflows" / "classroom.yml").read_text())
    job = workflow["jobs"]["run-autograding-tests"]
    steps = [
        s
        for s in job["steps"]
        if s.get("uses", "").startswith("classroom-resources/autograding-command")
    ]
    reporter = job["steps"][-1]
    assert reporter["with"]["runners"].split(",") == [s["id"] for s in steps]
    return workflow["env"], [
        (s["with"]["test-name"], s["with"]["command"], s["with"]["max-score"]) for s in steps
    ]


@pytest.mark.parametrize("answer", ["solution", "starter"])
def test_the_classroom_workflow_commands_score_as_declared(made, tmp_path, answer):
    template = tmp_path / "repo"
    shutil.copytree(made[0] / "template", template)
    (template / "app.py").write_text(SOLUTION if answer == "solution" else made[1])
    workflow_env, steps = workflow_commands(template)
    assert sorted(name for name, _, _ in steps) == sorted(
        [
            "every_hit_gets_its_own_number",
            "total_is_exact_in_every_worker",
            "exact_with_threads_too",
        ]
    )
    env = dict(os.environ, **workflow_env, PATH=f"{Path(CONCLAB).parent}:{os.environ['PATH']}")
    earned = {}
    for name, command, points in steps:
        done = subprocess.run(
            shlex.split(command), cwd=template, env=env, capture_output=True, text=True, timeout=300
        )
        earned[name] = points if done.returncode == 0 else 0
    declared = {name: points for name, _, points in steps}
    if answer == "solution":
        assert earned == declared and sum(declared.values()) == 5
    else:
        assert {n for n, p in earned.items() if p == 0} == STARTER_FAILS
        assert sum(earned.values()) == 1
