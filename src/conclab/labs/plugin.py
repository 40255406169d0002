"""The pytest plugin graders run under (``-p conclab.labs.plugin``).

It prints one PASS/FAIL line per check, with the reason, and a score line;
the fixtures ``submission`` and ``note`` are the graders' view of the student.
"""

from __future__ import annotations

import os
import sys
import textwrap
from pathlib import Path
from typing import TYPE_CHECKING

from . import tracebacks

if TYPE_CHECKING:
    import pytest


def pytest_configure(config: pytest.Config) -> None:
    """`-p conclab.labs.plugin` loads this module; the real plugin is built here, lazily."""
    config.pluginmanager.register(_grading_plugin(), "conclab-grading")


def _grading_plugin():
    import pytest

    class GradingPlugin:
        def __init__(self):
            self.results = {}  # nodeid -> (passed, check name), in the order reported
            self.last_reason = None

        @pytest.fixture(scope="module")
        def submission(self, request):
            """The folder being graded: $CONCLAB_SUBMISSION, else the lab folder itself."""
            folder = os.environ.get("CONCLAB_SUBMISSION")
            return Path(folder) if folder else Path(request.path).parent.parent

        @pytest.fixture(scope="session")
        def note(self, request):
            """note(text): print a line for the student now, past pytest's output capture."""
            capture = request.config.pluginmanager.getplugin("capturemanager")

            def say(text):
                with capture.global_and_fixture_disabled():
                    for line in text.splitlines():
                        _say(f"  note  {line}")

            return say

        @pytest.hookimpl(wrapper=True)
        def pytest_runtest_makereport(self, item, call):
            report = yield
            report.check_name = _check_name(item)
            if call.excinfo is not None and report.failed:
                report.reason = _reason(call.excinfo)
            return report

        def pytest_runtest_logreport(self, report):
            # A failure in set-up (the app did not start, say) fails the check too.
            if report.failed and report.nodeid not in self.results:
                self.results[report.nodeid] = (False, report.check_name)
                _say(f"  FAIL  {report.check_name}")
                if report.reason == self.last_reason:  # e.g. the app did not start: said once
                    _say("        (the same reason as above)")
                    return
                self.last_reason = report.reason
                for paragraph in report.reason.splitlines():
                    for line in textwrap.wrap(paragraph, 92) or [""]:
                        _say(f"        {line}")
                logged = tracebacks.unseen()
                if logged:
                    _say("        Your code's traceback, from the server's log (its last lines):")
                    for line in logged:
                        _say(f"          {line}")
            elif report.skipped and report.nodeid not in self.results:
                # e.g. the free-threaded build is missing: said, and not counted
                reason = report.longrepr[2] if isinstance(report.longrepr, tuple) else str(report.longrepr)
                self.results[report.nodeid] = None
                _say(f"  SKIP  {report.check_name}: {reason.removeprefix('Skipped: ')}")
            elif report.when == "call" and report.passed:
                self.results[report.nodeid] = (True, report.check_name)
                _say(f"  PASS  {report.check_name}")

        def pytest_collectreport(self, report):
            if report.failed:
                self.results[report.nodeid] = (False, "load the grader")
                _say(f"  FAIL  could not load the grader {report.nodeid}:")
                for line in str(report.longrepr).strip().splitlines()[-8:]:
                    _say(f"        {line}")

        def pytest_sessionfinish(self, session, exitstatus):
            counted = [r for r in self.results.values() if r is not None]  # skipped checks carry nothing
            passed = sum(ok for ok, _ in counted)
            total = len(counted)
            _say(f"score: {passed}/{total}")
            if total and passed == total:
                _say("all checks passed")
            elif not total:
                _say("no check ran: see the SKIP lines above")
            else:
                _say(f"{total - passed} check(s) failed: read the reasons above, fix, and grade again")

    return GradingPlugin()


def _check_name(item):
    """'test_requests_overlap[sleep]' and its docstring -> 'requests_overlap[sleep] - <doc>'."""
    name = item.name.removeprefix("test_")
    function = getattr(item, "function", None)
    doc = ((function.__doc__ if function else None) or "").strip().splitlines()
    return f"{name} - {doc[0]}" if doc else name


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
