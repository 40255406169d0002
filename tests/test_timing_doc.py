"""docs/timing.md's tables are what conclab.figures.timing_doc
writes from figures/data, and the claims check holds them."""

import copy
import json
import re
import shutil
from pathlib import Path

import pytest

from conclab.base.errors import UserError
from conclab.base.paths import ROOT
from conclab.figures import timing_doc
from conclab.teaching.claims import check


def _timing(name: str, total: float, load=(1.0, 2.0)) -> dict:
    seconds = {
        "startup": 1.0,
        "calibration": 0.5,
        "warmup": 0.25,
        "measuring": total - 2.0,
        "extra": 0.0,
        "drawing": 0.25,
    }
    return {
        "name": name,
        "quick": True,
        "total_s": total,
        "seconds": seconds,
        "servers": 2,
        "measured": 4,
        "cached": 0,
        "points": [],
        "load_avg": {"start": load[0], "end": load[1]},
    }


TIMING = {"quick": {"gil": _timing("gil", 12.34), "workers": _timing("workers", 20.5, (3.5, 0.75))}}
TESTS = {
    "args": ["-m", "not (stage or browser)", "--durations=25"],
    "seconds": 1234.5,
    "exit_status": 1,
    "load_avg": {"start": 0.5, "end": 1.25},
    "outcomes": {"passed": 2, "failed": 1},
    "tests": [
        {"id": "tests/test_labs.py::test_grader[lab01]", "seconds": 40.25, "outcome": "passed"},
        {"id": "tests/test_live.py::test_live_chart", "seconds": 9.5, "outcome": "failed"},
        {"id": "tests/test_labs.py::test_readme[lab02]", "seconds": 3.0, "outcome": "passed"},
    ],
}


def _report(problems) -> str:
    return "\n".join(map(str, problems))


@pytest.fixture
def scratch(tmp_path) -> Path:
    """The doc, its generated tables emptied, and the test's
    timing data in figures/data of a scratch root."""
    (tmp_path / "docs").mkdir()
    (tmp_path / "figures" / "data").mkdir(parents=True)
    doc = timing_doc.REGION.sub(
        lambda m: m.group(1) + (m["body"] if m["name"] == "why" else "") + m.group(4),
        (ROOT / timing_doc.DOC).read_text(),
    )
    (tmp_path / timing_doc.DOC).write_text(doc)
    for name in set(re.findall(r"= file:(\S+?)[;\s]", doc)):  # the files the prose's markers cite
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(ROOT / name, tmp_path / name)
    (tmp_path / "figures" / "data" / "timing.json").write_text(json.dumps(TIMING))
    (tmp_path / "figures" / "data" / "test_durations.json").write_text(json.dumps(TESTS))
    return tmp_path


def _generate(root: Path) -> Path:
    path = root / timing_doc.DOC
    path.write_text(timing_doc.render(path.read_text(), *timing_doc.read(root)))
    return path


def test_the_doc_is_what_the_generator_writes_from_the_committed_data():
    doc = (ROOT / timing_doc.DOC).read_text()
    assert timing_doc.render(doc, *timing_doc.read(ROOT)) == doc, (
        "docs/timing.md differs from what figures/data "
        "gives (edited by hand, or the data re-measured): "
        "run .venv/bin/python -m conclab.figures.timing_doc"
    )


def test_every_generated_number_has_a_marker_that_the_claims_check_holds(scratch):
    path = _generate(scratch)
    text = path.read_text()
    assert "| gil | 12.3 |" in text and "**32.8**" in text  # the figure's row and the sum of both
    assert (
        "| `tests/test_labs.py::test_grader[lab01]` | passed | 40.25 "
        "<!-- claim: 40.25 = test_durations.json:tests.0.seconds -->" in text
    )
    problems = check(scratch, [path])
    assert not problems, _report(problems)


def test_a_re_measure_committed_without_regenerating_fails_the_claims_check_naming_the_row(scratch):
    path = _generate(scratch)
    timing = copy.deepcopy(TIMING)
    timing["quick"]["gil"]["seconds"]["startup"] = 3.0  # a re-measure moved one phase of one figure
    timing["quick"]["gil"]["total_s"] += 2.0
    (scratch / "figures" / "data" / "timing.json").write_text(json.dumps(timing))
    problems = check(scratch, [path])
    assert problems, "a changed timing.json went unnoticed by the claims check"
    assert all(
        p.path == "docs/timing.md"
        and "the committed data say" in p.message
        and "timing.json:quick" in p.message
        for p in problems
    ), _report(problems)
    assert any('"| gil | 12.3 | 1.0 |' in p.message for p in problems), _report(problems)
    assert any("sum(timing.json:quick.*.total_s)" in p.message for p in problems), _report(problems)

    _generate(scratch)  # regenerating mends it
    assert not check(scratch, [path])


def test_a_hand_edited_number_in_a_generated_table_is_not_what_the_generator_writes(scratch):
    path = _generate(scratch)
    text = path.read_text()
    edited = text.replace("| gil | 12.3 |", "| gil | 10.0 |")
    assert edited != text
    assert timing_doc.render(edited, *timing_doc.read(scratch)) == text


def test_the_long_tests_table_keeps_its_hand_written_text_and_counts_the_tests_it_names(scratch):
    path = _generate(scratch)
    rows = [
        line
        for line in path.read_text().splitlines()
        if line.startswith("| `tests/test_labs.py::*`")
    ]
    assert len(rows) == 1
    cells = [c.strip() for c in rows[0].strip("|").split("|")]
    assert cells[1] == "2"  # the two test_labs tests of the run
    assert cells[2].startswith(
        "43 <!-- claim: 2 = count(test_durations.json:tests[0,2].seconds); "
        "43 = sum(test_durations.json:tests[0,2].seconds)"
    )
    assert cells[3].startswith("the graders give the promised verdict")
    live = next(
        line
        for line in path.read_text().splitlines()
        if line.startswith("| `tests/test_live.py::*`")
    )
    assert "| 1 | 10 <!--" in live  # 9.5 rounds to the even 10, and the claims check agrees
    notebooks = next(
        line
        for line in path.read_text().splitlines()
        if line.startswith("| `tests/test_notebooks.py::*`")
    )
    assert "| none in this run | - |" in notebooks


def test_a_partial_run_of_the_suite_says_so_and_does_not_claim_the_target(scratch):
    tests = dict(TESTS, args=["tests/test_claims.py", "--durations=25"])
    (scratch / "figures" / "data" / "test_durations.json").write_text(json.dumps(tests))
    text = _generate(scratch).read_text()
    assert "a partial run (chosen tests, not the whole of `make test`)" in text
    assert "not known: a partial run" in text
    assert not check(scratch, [scratch / timing_doc.DOC])


def test_taking_a_quick_run_keeps_the_full_half_of_the_committed_timing(scratch, tmp_path_factory):
    data = scratch / "figures" / "data" / "timing.json"
    data.write_text(
        json.dumps({"full": {"gil": _timing("gil", 99.0)}, "quick": {"old": _timing("old", 1.0)}})
    )
    run = tmp_path_factory.mktemp("timing")
    (run / "data").mkdir()
    (run / "data" / "timing.json").write_text(json.dumps(TIMING))
    timing_doc.take("quick", run, root=scratch)
    assert json.loads(data.read_text()) == {
        "full": {"gil": _timing("gil", 99.0)},
        "quick": TIMING["quick"],
    }


def test_each_figure_measured_alone_decides_the_one_figure_target(scratch, tmp_path_factory):
    (scratch / "figures" / "data" / "timing.json").write_text(json.dumps(TIMING))
    run = tmp_path_factory.mktemp("alone")
    (run / "data").mkdir()
    alone = {"quick": {"gil": _timing("gil", 12.0), "slow_clients": _timing("slow_clients", 24.0)}}
    (run / "data" / "timing.json").write_text(json.dumps(alone))
    timing_doc.take("alone", run, root=scratch)
    timing, tests = timing_doc.read(scratch)
    assert timing["alone"] == alone["quick"] and timing["quick"] == TIMING["quick"]
    row = next(
        line
        for line in timing_doc.targets_table(timing, tests).splitlines()
        if "any one figure" in line
    )
    assert "24 s (`slow_clients`, the slowest, each figure measured alone)" in row
    assert "| yes <!--" in row and "max(timing.json:alone.*.total_s)" in row


def test_taking_a_run_that_is_not_there_says_which_command_makes_it(scratch, tmp_path):
    with pytest.raises(UserError, match="conclab charts --fresh --out"):
        timing_doc.take("full", tmp_path, root=scratch)


def test_a_doc_without_a_region_says_which_and_how_to_add_it():
    with pytest.raises(UserError, match="no region for full, quick, targets, tests, why"):
        timing_doc.render("# Timing\n", {}, {})
