"""The pytest plugin graders run under (``-p conclab.labs.plugin``).

It prints one PASS/FAIL line per check, with the reason, as each check ends,
and keeps every check's result (``conclab.labs.results``) in the JSON file
$CONCLAB_RESULTS, rewritten after each check, so a run stopped half-way keeps
what it found; ``conclab grade`` reads it and prints the score. $CONCLAB_CHECK
runs one check. The fixtures ``submission`` and ``note`` are the graders' view
of the student.
"""

from __future__ import annotations

import dataclasses
import json
import os
import sys
from dataclasses import asdict
from pathlib import Path
from typing import TYPE_CHECKING

from ..base.files import atomic_write
from . import results, tracebacks

if TYPE_CHECKING:
    import pytest


def pytest_configure(config: pytest.Config) -> None:
    """`-p conclab.labs.plugin` loads this module; the real plugin is built here, lazily."""
    config.addinivalue_line(
        "markers",
        "points(n, visibility='visible'): what a check is worth "
        "(visibility: visible or after_due_date); 1 point, visible, without it",
    )
    config.pluginmanager.register(_grading_plugin(), "conclab-grading")


def _grading_plugin():
    import pytest

    class GradingPlugin:
        def __init__(self):
            # nodeid -> CheckResult (status "failed", "did not run") until it reports
            self.planned = {}
            self.results = {}  # nodeid -> CheckResult, in the order reported
            self.notes = {}  # nodeid -> lines note() printed during that check
            self.current = None
            self.last_reason = None
            self.out = os.environ.get("CONCLAB_RESULTS")

        @pytest.fixture(scope="module")
        def submission(self, request):
            """The folder being graded: $CONCLAB_SUBMISSION, else the lab folder itself."""
            folder = os.environ.get("CONCLAB_SUBMISSION")
            return Path(folder) if folder else Path(request.path).parent.parent

        @pytest.fixture(scope="session")
        def note(self, request):
            """note(text): print a line for the student now, past pytest's output capture;
            it also goes into the output of the check that is running."""
            capture = request.config.pluginmanager.getplugin("capturemanager")

            def say(text):
                self.notes.setdefault(self.current, []).extend(text.splitlines())
                with capture.global_and_fixture_disabled():
                    for line in text.splitlines():
                        _say(f"  note  {line}")

            return say

        @pytest.hookimpl(trylast=True)
        def pytest_collection_modifyitems(self, session, config, items):
            only = os.environ.get("CONCLAB_CHECK")
            if only:
                chosen = [item for item in items if _short_name(item) == only]
                if not chosen:
                    names = ", ".join(dict.fromkeys(_short_name(item) for item in items))
                    raise pytest.UsageError(
                        f"no check {only!r} in this lab; the checks are: {names}"
                    )
                config.hook.pytest_deselected(items=[i for i in items if i not in chosen])
                items[:] = chosen
            for item in items:
                points, visibility = results.points_of(item)
                self.planned[item.nodeid] = results.CheckResult(
                    _short_name(item),
                    _title(item),
                    0.0,
                    points,
                    "failed",
                    "did not run",
                    visibility,
                )
            self._save()

        def pytest_runtest_logstart(self, nodeid, location):
            self.current = nodeid

        @pytest.hookimpl(wrapper=True)
        def pytest_runtest_makereport(self, item, call):
            report = yield
            if call.excinfo is not None and report.failed:
                report.reason = _reason(call.excinfo)
            return report

        def pytest_runtest_logreport(self, report):
            check = self.planned.get(report.nodeid)
            if check is None or report.nodeid in self.results:
                return
            notes = self.notes.get(report.nodeid, [])
            if report.failed:  # in set-up too: the app did not start, say
                reason = getattr(report, "reason", "") or str(report.longrepr)
                logged = tracebacks.unseen()
                lines = [reason]
                if logged:
                    lines += ["Your code's traceback, from the server's log (its last lines):"]
                    lines += [f"  {line}" for line in logged]
                check.status, check.points = "failed", 0.0
                check.output = "\n".join([*lines, *notes])
                self._report(check, same=reason == self.last_reason)
                self.last_reason = reason
            elif report.skipped:
                why = (
                    report.longrepr[2]
                    if isinstance(report.longrepr, tuple)
                    else str(report.longrepr)
                )
                why = why.removeprefix("Skipped: ")
                check.status, check.points, check.max_points = "skipped", 0.0, 0.0
                check.output = f"skipped, not counted in this run (no points, no maximum): {why}"
                self._report(check)
            elif report.when == "call":
                check.status, check.points, check.output = (
                    "passed",
                    check.max_points,
                    "\n".join(notes),
                )
                self._report(check)

        def _report(self, check, same=False):
            self.results[check.name] = check
            if same:  # e.g. the app did not start: said once
                _say(results.check_lines(dataclasses.replace(check, output=""))[0])
                _say("        (the same reason as above)")
            else:
                for line in results.check_lines(dataclasses.replace(check, output=_shown(check))):
                    _say(line)
            self._save()

        def pytest_collectreport(self, report):
            if report.failed:
                name = f"load the grader {report.nodeid}"
                text = "\n".join(str(report.longrepr).strip().splitlines()[-8:])
                self.planned[name] = check = results.CheckResult(name, "", 0.0, 1.0, "failed", text)
                self._report(check)

        def _save(self):
            if self.out:
                data = {"checks": [asdict(c) for c in self.planned.values()]}
                atomic_write(Path(self.out), json.dumps(data))

    return GradingPlugin()


def _shown(check):
    """What the live text shows under a check: its output, less the notes already printed."""
    return "" if check.status == "passed" else check.output


def _short_name(item):
    return item.name.removeprefix("test_")


def _title(item):
    function = getattr(item, "function", None)
    doc = ((function.__doc__ if function else None) or "").strip().splitlines()
    return doc[0] if doc else ""


def _reason(excinfo):
    """What went wrong, in the grader's words; for an exception in student code, where."""
    exc = excinfo.value
    if isinstance(exc, AssertionError) or excinfo.typename == "Failed":
        # pytest appends the rewritten expression after the message: keep the message.
        text = str(exc).split("\nassert ")[0].strip()
        return text or "an assertion in the grader failed"
    folder = os.environ.get("CONCLAB_SUBMISSION", "")
    where = ""
    for entry in reversed(excinfo.traceback):
        path = str(entry.path)
        if folder and path.startswith(folder) and os.sep + "grader" + os.sep not in path:
            where = f"\n(raised in your code: {Path(path).name} line {entry.lineno + 1})"
            break
    message = f"{excinfo.typename}: {exc}" if str(exc) else excinfo.typename
    return message + where


def _say(text):
    try:
        sys.stdout.write(text + "\n")
        sys.stdout.flush()
    except BrokenPipeError:  # the reader went away (| head): nothing left to tell
        pass
