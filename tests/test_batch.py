"""A whole class at once: every submission costs its own student alone.

Lab 04's grader over a folder of good, wrong, crashing, hanging, forking-away,
disk-filling and flooding submissions: the right points for each in
grades.csv, the same with two graders at once as with one, and nothing left
running, in a cgroup or on disk afterwards.
"""

import csv
import os
import shutil
import subprocess
import sys
from pathlib import Path

import psutil
import pytest

from conclab.labs import handout as handouts
from conclab.labs.batch import grade_batch, submissions

# A long CI stage (make test-stages): a whole class graded twice, serially and in parallel.
pytestmark = [pytest.mark.labs, pytest.mark.slow, pytest.mark.stage, pytest.mark.timeout(900)]

LAB = handouts.find_lab("04")
SOLUTION = (LAB / "app.py").read_text()
TIMEOUT = 60.0  # per submission, all included: the good ones take ~15 s here

# Prepended to the solution; each runs when a Gunicorn worker imports app.py.
ESCAPE = """
import os as _os, time as _time
if _os.fork() == 0:  # double fork out of the process group: init (or a subreaper) adopts it
    _os.setsid()
    if _os.fork() == 0:
        open(_os.path.join({folder!r}, str(_os.getpid())), "w").close()
        _time.sleep(3600)
    _os._exit(0)
"""
HANG = "import time as _time\n_time.sleep(3600)\n"
FILL_DISK = """
import tempfile as _tempfile
with _tempfile.NamedTemporaryFile(delete=False, prefix="fill-") as _f:
    while True:
        _f.write(b"x" * 2**20)
"""
FLOOD = "while True:\n    print('spam ' * 20000, flush=True)\n"


def make_class(root, handout_app, escapes):
    """One folder per student (bob's one folder down, as a zip of the lab folder unpacks)."""
    apps = {
        "alice-good": SOLUTION,
        "bob-wrong": handout_app,
        "carol-crash": SOLUTION + '\nraise RuntimeError("boom")\n',
        "dave-hang": HANG + SOLUTION,
        "erin-forks-away": ESCAPE.format(folder=str(escapes)) + SOLUTION,
        "frank-fills-disk": FILL_DISK + SOLUTION,
        "grace-floods": FLOOD + SOLUTION,
    }
    for name, text in apps.items():
        folder = root / name / ("04-state-across-workers" if name == "bob-wrong" else "")
        folder.mkdir(parents=True)
        (folder / "app.py").write_text(text)
    return root


def read_grades(out):
    with open(out / "grades.csv", newline="") as f:
        return {row["student"]: row for row in csv.DictReader(f)}


def leftovers():
    """Processes below this one, and the batch's cgroups."""
    cgroups = (
        [str(p) for p in Path("/sys/fs/cgroup").glob("*/**/conclab-*")]
        if Path("/sys/fs/cgroup").is_dir()
        else []
    )
    return psutil.Process().children(recursive=True), cgroups


@pytest.fixture(scope="module")
def graded(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("class")
    escapes = tmp / "escaped"
    escapes.mkdir()
    out = tmp / "handout"
    subprocess.run(
        [str(Path(sys.executable).with_name("conclab")), "handout", "--out", str(out)],
        check=True,
        capture_output=True,
    )
    batch = make_class(tmp / "submissions", (out / LAB.name / "app.py").read_text(), escapes)
    before = set(os.listdir(os.environ.get("TMPDIR", "/tmp")))
    runs = {}
    for jobs in (1, 2):
        grade_batch("04", batch, out=tmp / f"grades-{jobs}", jobs=jobs, timeout=TIMEOUT)
        runs[jobs] = read_grades(tmp / f"grades-{jobs}")
    return runs, tmp, escapes, before


def test_each_submission_gets_its_own_points(graded):
    runs, *_ = graded
    grades = runs[1]
    full = grades["alice-good"]
    assert full["total"] == full["max"] == "5" and not full["error"], full
    assert grades["bob-wrong"]["total"] == "1", grades["bob-wrong"]  # starter: threads check only
    assert grades["erin-forks-away"]["total"] == "5", grades[
        "erin-forks-away"
    ]  # escaping is not wrong
    for name in ("carol-crash", "dave-hang", "frank-fills-disk", "grace-floods"):
        assert grades[name]["total"] == "0" and grades[name]["max"] == "5", grades[name]


def test_a_hanging_submission_is_stopped_in_time(graded):
    runs, *_ = graded
    for grades in runs.values():
        assert float(grades["dave-hang"]["seconds"]) < TIMEOUT + 15, grades["dave-hang"]
        assert all(float(row["seconds"]) < TIMEOUT + 15 for row in grades.values())


def test_parallel_graders_give_the_points_of_serial_grading(graded):
    runs, *_ = graded
    points = {
        jobs: {
            s: {k: v for k, v in row.items() if k not in ("seconds", "error")}
            for s, row in rows.items()
        }
        for jobs, rows in runs.items()
    }
    assert points[2] == points[1]


def test_nothing_is_left_running_in_a_cgroup_or_on_disk(graded):
    _, tmp, escapes, before = graded
    escaped = [int(p.name) for p in escapes.iterdir()]
    assert escaped, "the forking-away submission never forked (the test proves nothing)"
    alive = [
        pid
        for pid in escaped
        if psutil.pid_exists(pid) and psutil.Process(pid).status() != "zombie"
    ]
    assert not alive, f"escaped processes still running: {alive}"
    children, cgroups = leftovers()
    assert not children and not cgroups, (children, cgroups)
    for jobs in (1, 2):
        out = tmp / f"grades-{jobs}"
        assert sorted(p.name for p in out.iterdir()) == ["feedback", "grades.csv"]
        assert len(list((out / "feedback").iterdir())) == 7
    # The graders' TMPDIR was each keeper's scratch (gone, above): nothing of theirs lands in
    # the shared temp folder, where other programs' files come and go.
    left = set(os.listdir(os.environ.get("TMPDIR", "/tmp"))) - before
    assert not [name for name in left if name.startswith("fill-")], left


def test_feedback_is_what_the_student_would_see(graded):
    _, tmp, *_ = graded
    text = (tmp / "grades-1" / "feedback" / "carol-crash.txt").read_text()
    assert "RuntimeError: boom" in text and "score: 0/5" in text


def test_a_gradescope_export_names_the_students(tmp_path):
    (tmp_path / "submission_123").mkdir()
    (tmp_path / "submission_456").mkdir()
    (tmp_path / "submission_metadata.yml").write_text(
        "submission_123:\n  :submitters:\n  - :name: Ada Lovelace\n    :email: ada@example.com\n"
        "  :created_at: 2026-01-01\nsubmission_456:\n"
        "  :submitters:\n  - :name: Alan Turing\n  - :name: Grace Hopper\n"
    )
    assert [name for name, _ in submissions(tmp_path)] == [
        "Ada Lovelace",
        "Alan Turing & Grace Hopper",
    ]
    shutil.rmtree(tmp_path / "submission_123")
