"""Grades: points declared beside each check, summed; text, JSON and Gradescope formats of one list.

A small lab written here (no servers) has a check worth 2 points, a default
1-point check, a check the machine cannot run (skipped: no points, no
maximum), a check whose server never starts (0, with the reason) and a check
after it that still runs.
"""

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from conclab.labs import handout as handouts
from conclab.labs.grading import collect_checks, grade
from conclab.labs.results import FORMATTERS, format_gradescope

CONCLAB = str(Path(sys.executable).with_name("conclab"))

DEMO_GRADER = '''
import pytest


@pytest.fixture(scope="module")
def server(submission):
    if (submission / "broken").exists():
        pytest.fail(
            "your app.py under Uvicorn did not start:\\nSyntaxError: invalid syntax", pytrace=False
        )
    return "up"


@pytest.mark.points(2)
def test_answers(submission):
    """the app answers right"""
    answer = (submission / "app.py").read_text().strip()
    assert answer == "right", f"app.py says {answer!r}. Hint: look at answer() in app.py."


def test_uses_the_server(server):
    """needs the server"""


def test_plain(submission, note):
    """worth the default point"""
    note("measured: 3 req/s")


@pytest.mark.points(5)
def test_needs_free_threading():
    """runs only on a free-threaded Python"""
    pytest.skip("this Python has a GIL (install python3.13t)")


@pytest.mark.points(1, visibility="after_due_date")
def test_late_check(submission):
    """hidden until the due date"""
    assert "right" in (submission / "app.py").read_text(), "not right"
'''


@pytest.fixture
def labs(tmp_path):
    root = tmp_path / "labs"
    lab = root / "01-demo"
    (lab / "grader").mkdir(parents=True)
    (lab / "grader" / "test_demo.py").write_text(DEMO_GRADER)
    (lab / "app.py").write_text("### BEGIN SOLUTION\n# right\n### END SOLUTION\n")
    (root / "pytest.ini").write_text((handouts.all_labs()[0].parent / "pytest.ini").read_text())
    return root


def submission(tmp_path, answer, broken=False):
    folder = tmp_path / f"sub-{answer}-{broken}"
    folder.mkdir()
    (folder / "app.py").write_text(answer + "\n")
    if broken:
        (folder / "broken").write_text("")
    return folder


def by_name(grade_):
    return {c.name: c for c in grade_.checks}


def test_points_are_declared_beside_each_check_and_summed(labs, tmp_path):
    result = grade("01", submission(tmp_path, "right"), labs_dir=labs, live=False)
    checks = by_name(result)
    assert [c.name for c in result.checks] == [
        "answers",
        "uses_the_server",
        "plain",
        "needs_free_threading",
        "late_check",
    ]
    assert (checks["answers"].points, checks["answers"].max_points) == (2, 2)
    assert (checks["plain"].points, checks["plain"].max_points) == (1, 1)
    assert checks["late_check"].visibility == "after_due_date"
    assert (result.score, result.max_score) == (5, 5)
    assert result.all_passed
    assert "measured: 3 req/s" in checks["plain"].output


def test_a_check_the_machine_cannot_run_carries_no_points_and_says_so(labs, tmp_path):
    result = grade("01", submission(tmp_path, "right"), labs_dir=labs, live=False)
    skipped = by_name(result)["needs_free_threading"]
    assert (skipped.status, skipped.points, skipped.max_points) == ("skipped", 0, 0)
    assert "not counted" in skipped.output and "python3.13t" in skipped.output
    assert result.score == result.max_score  # full marks, never marked down by the machine


def test_a_check_that_cannot_run_scores_zero_with_the_reason_and_later_checks_still_run(
    labs, tmp_path
):
    result = grade("01", submission(tmp_path, "wrong", broken=True), labs_dir=labs, live=False)
    checks = by_name(result)
    assert checks["uses_the_server"].status == "failed" and checks["uses_the_server"].points == 0
    assert "did not start" in checks["uses_the_server"].output
    assert checks["plain"].passed  # after it, and not needing the server
    assert "Hint: look at answer()" in checks["answers"].output
    assert (result.score, result.max_score) == (1, 5)
    assert not result.all_passed


def test_gradescope_results_json_has_the_fields_gradescope_reads(labs, tmp_path):
    result = grade("01", submission(tmp_path, "wrong"), labs_dir=labs, live=False)
    data = json.loads(format_gradescope(result))
    assert set(data) == {"score", "output", "tests"}
    assert data["score"] == 2  # plain and the server check
    for test in data["tests"]:
        assert set(test) == {"name", "score", "max_score", "output", "visibility", "status"}
        assert test["status"] in ("passed", "failed") and test["visibility"] in (
            "visible",
            "after_due_date",
        )
    answers = next(t for t in data["tests"] if t["name"].startswith("answers"))
    assert (answers["score"], answers["max_score"], answers["status"]) == (0, 2, "failed")
    assert "Hint: look at answer()" in answers["output"]


def test_text_and_json_are_formats_of_the_same_grade(labs, tmp_path):
    result = grade("01", submission(tmp_path, "wrong"), labs_dir=labs, live=False)
    text = FORMATTERS["text"](result)
    data = json.loads(FORMATTERS["json"](result))
    assert re.search(r"^score: 2/5$", text, re.M)
    assert (data["score"], data["max_score"]) == (2, 5)
    assert [c["name"] for c in data["checks"]] == [c.name for c in result.checks]
    assert "  FAIL  answers - the app answers right  [0/2]" in text


def test_one_check_runs_alone_and_its_exit_status_is_its_verdict(labs, tmp_path):
    wrong = submission(tmp_path, "wrong")
    result = grade("01", wrong, labs_dir=labs, live=False, check="plain")
    assert [c.name for c in result.checks] == ["plain"] and result.all_passed
    result = grade("01", wrong, labs_dir=labs, live=False, check="answers")
    assert [c.name for c in result.checks] == ["answers"] and not result.all_passed
    result = grade("01", wrong, labs_dir=labs, live=False, check="needs_free_threading")
    assert result.all_passed, (
        "a check this machine skips is not a failure (a Classroom step gives no 0)"
    )


def test_the_checks_are_listed_with_their_points_without_running(labs):
    checks = collect_checks("01", labs_dir=labs)
    assert [(c.name, c.max_points) for c in checks] == [
        ("answers", 2),
        ("uses_the_server", 1),
        ("plain", 1),
        ("needs_free_threading", 5),
        ("late_check", 1),
    ]


def test_the_command_line_writes_each_format_and_exits_with_the_verdict(labs, tmp_path):
    env = dict(os.environ, CONCLAB_LABS=str(labs))
    out = tmp_path / "out" / "results.json"
    done = subprocess.run(
        [
            CONCLAB,
            "grade",
            "01",
            "--submission",
            str(submission(tmp_path, "right")),
            "--format",
            "gradescope",
            "--out",
            str(out),
        ],
        env=env,
        capture_output=True,
        text=True,
    )
    assert done.returncode == 0, done.stderr
    assert json.loads(out.read_text())["score"] == 5
    done = subprocess.run(
        [
            CONCLAB,
            "grade",
            "01",
            "--submission",
            str(submission(tmp_path, "wrong")),
            "--check",
            "answers",
        ],
        env=env,
        capture_output=True,
        text=True,
    )
    assert done.returncode == 1 and "FAIL  answers" in done.stdout, done.stdout + done.stderr
    done = subprocess.run(
        [CONCLAB, "grade", "01", "--check", "nope"], env=env, capture_output=True, text=True
    )
    assert done.returncode == 2 and "no check 'nope'" in done.stderr


@pytest.mark.parametrize("lab", handouts.all_labs(), ids=lambda lab: lab.name)
def test_each_lab_readme_names_its_maximum(lab):
    """The `score: n/MAX` a lab README promises is the sum of its checks' declared points."""
    total = sum(c.max_points for c in collect_checks(lab.name))
    text = (lab / "README.md").read_text()
    assert re.search(rf"`score: n/{total:g}`", text), (
        f"{lab.name}: README should say score: n/{total:g}"
    )
