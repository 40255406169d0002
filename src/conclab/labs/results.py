"""A grade: one result per check, and the formats a gradebook reads.

A grader's checks are pytest tests; each carries its points where it is written,

    @pytest.mark.points(2)                              # visible now
    @pytest.mark.points(1, visibility="after_due_date") # shown after the due date

and a check without the mark is worth 1 point, visible (a hidden check,
``grader/instructor_test_*.py``, is shown only after the due date). So adding
a lab, or a check, declares its points in one place: beside the check.

The grading plugin turns each check's outcome into a :class:`CheckResult`:

- passed: its points; failed: 0, with the reason (the lab's hint) and, when the
  student's code crashed, the student's own traceback;
- could not run (the student's server never started): 0, with that reason;
  checks that do not need the server still run;
- skipped because this machine lacks something (a free-threaded Python, say):
  no points and no maximum in this run - a full-marks answer is never marked
  down by the machine - and its output says so.

A :class:`Grade` is the list of them; text, JSON and Gradescope's
``results.json`` are three formatters of the same list.
"""

from __future__ import annotations

import json
import textwrap
from dataclasses import asdict, dataclass, field

VISIBILITIES = ("visible", "after_due_date")
DEFAULT_POINTS = 1.0
FORMATS = ("text", "json", "gradescope")


@dataclass
class CheckResult:
    """One check's outcome. ``status`` is passed, failed or skipped (not counted)."""

    name: str  # e.g. "requests_overlap[sleep]": what --check takes
    title: str = ""  # the check's docstring, first line
    points: float = 0.0  # earned
    max_points: float = DEFAULT_POINTS  # 0 when skipped
    status: str = "failed"
    output: str = ""  # the reason, notes, the student's traceback
    visibility: str = "visible"

    @property
    def passed(self) -> bool:
        return self.status == "passed"

    @property
    def label(self) -> str:
        return f"{self.name} - {self.title}" if self.title else self.name


@dataclass
class Grade:
    """A submission's grade: its check results, and an error that stopped the whole run."""

    lab: str
    checks: list[CheckResult] = field(default_factory=list)
    seconds: float = 0.0
    error: str = ""  # e.g. "the grader did not finish within 150 s"

    @property
    def score(self) -> float:
        return sum(c.points for c in self.checks)

    @property
    def max_score(self) -> float:
        return sum(c.max_points for c in self.checks)

    @property
    def all_passed(self) -> bool:
        """Every counted check passed (a skipped check is not counted: never a failure)."""
        counted = [c for c in self.checks if c.status != "skipped"]
        return bool(self.checks) and not self.error and all(c.passed for c in counted)

    def to_dict(self) -> dict:
        return {
            "lab": self.lab,
            "score": self.score,
            "max_score": self.max_score,
            "seconds": round(self.seconds, 2),
            "error": self.error,
            "checks": [dict(asdict(c), passed=c.passed) for c in self.checks],
        }

    @classmethod
    def from_dict(cls, data: dict) -> Grade:
        names = CheckResult.__dataclass_fields__
        checks = [
            CheckResult(**{k: v for k, v in c.items() if k in names})
            for c in data.get("checks", [])
        ]
        return cls(data.get("lab", ""), checks, data.get("seconds", 0.0), data.get("error", ""))


def points_of(item) -> tuple[float, str]:
    """(points, visibility) of a collected pytest item, from its ``points`` mark."""
    hidden = item.path.name.startswith("instructor_")
    default = "after_due_date" if hidden else "visible"
    mark = item.get_closest_marker("points")
    if mark is None:
        return DEFAULT_POINTS, default
    points = float(mark.args[0] if mark.args else mark.kwargs.get("points", DEFAULT_POINTS))
    visibility = mark.kwargs.get("visibility", default)
    if visibility not in VISIBILITIES or points < 0:
        raise ValueError(f"{item.nodeid}: points must be >= 0 and visibility one of {VISIBILITIES}")
    return points, visibility


# --- formats ---------------------------------------------------------------------


def _number(x: float) -> str:
    return f"{x:g}"


def check_lines(check: CheckResult, width: int = 92) -> list[str]:
    """A check as text: its PASS/FAIL/SKIP line, then its output, indented."""
    word = {"passed": "PASS", "failed": "FAIL", "skipped": "SKIP"}[check.status]
    points = f"{_number(check.points)}/{_number(check.max_points)}"
    lines = [f"  {word}  {check.label}  [{points}]"]
    for paragraph in check.output.splitlines():
        if paragraph.startswith("  "):  # a traceback: kept as it is
            lines.append(f"        {paragraph}")
            continue
        lines += [f"        {line}" for line in textwrap.wrap(paragraph, width) or [""]]
    return lines


def summary_lines(grade: Grade) -> list[str]:
    lines = [f"error: {grade.error}"] if grade.error else []
    lines.append(f"score: {_number(grade.score)}/{_number(grade.max_score)}")
    skipped = [c.name for c in grade.checks if c.status == "skipped"]
    if skipped:
        lines.append(f"not counted (this machine cannot run them): {', '.join(skipped)}")
    failed = sum(c.status == "failed" for c in grade.checks)
    if grade.all_passed:
        lines.append("all checks passed")
    else:
        lines.append(f"{failed} check(s) failed: read the reasons above, fix, and grade again")
    return lines


def format_text(grade: Grade) -> str:
    lines = [line for check in grade.checks for line in check_lines(check)]
    return "\n".join(lines + summary_lines(grade)) + "\n"


def format_json(grade: Grade) -> str:
    return json.dumps(grade.to_dict(), indent=2) + "\n"


def format_gradescope(grade: Grade) -> str:
    """Gradescope's results.json: score, output, and tests[] with name, score,
    max_score, output, visibility, status (passed/failed)."""
    tests = [
        {
            "name": c.label,
            "score": c.points,
            "max_score": c.max_points,
            "output": c.output if c.status != "passed" or c.output else "passed",
            "visibility": c.visibility,
            "status": "failed" if c.status == "failed" else "passed",
        }
        for c in grade.checks
    ]
    output = "\n".join(summary_lines(grade))
    return json.dumps({"score": grade.score, "output": output, "tests": tests}, indent=2) + "\n"


FORMATTERS = {"text": format_text, "json": format_json, "gradescope": format_gradescope}
