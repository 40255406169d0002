"""Homework labs: write the student handout, and grade a submission.

    conclab handout --out dist/handout
    conclab grade 01                                  # labs/01-*/ as it stands
    conclab grade 01 --submission path/to/01-folder   # a student's copy

Instructor sources in ``labs/NN-topic/`` keep the solution between markers
(labs/README.md describes them). ``handout`` copies every lab with the solution
blocks cut out, the starter blocks made live, and instructor-only files left
behind.

``grade`` runs the lab's grader tests in a fresh Python process. It always runs
the repository's own copy of ``labs/NN-topic/grader/`` - never the one inside
the submission - against the student files of the submission folder, so a
student who edits their copy of the grader gains nothing.

This module is also the pytest plugin the graders run under (``-p conclab.labs``):
the hooks at the bottom print one PASS/FAIL line per check, with the reason,
and a score line.
"""

from __future__ import annotations

import importlib.util
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import textwrap
from pathlib import Path

from .results import atomic_write

LABS_DIR = Path(os.environ.get("CONCLAB_LABS", Path(__file__).resolve().parents[2] / "labs"))
GRADER_TIMEOUT = 150.0  # seconds for a whole grader run; each lab aims for under 60

# --- markers -----------------------------------------------------------------
#
#     ### BEGIN SOLUTION            the instructor's code: cut from the handout
#     await asyncio.sleep(ms / 1000)
#     ### END SOLUTION
#     ### BEGIN STARTER             commented out here, live code in the handout
#     # time.sleep(ms / 1000)
#     ### END STARTER
#
# A marker is a line of its own: a '#' comment holding only the marker words,
# so markers work in any file whose comments start with '#' (Python, TOML,
# gunicorn.conf.py, shell).

MARKER = re.compile(r"^[ \t]*#+[ \t]*(BEGIN|END) (SOLUTION|STARTER)[ \t]*$")
MARKER_WORDS = re.compile(r"(BEGIN|END) SOLUTION")
SKIPPED_NAMES = {"__pycache__", ".pytest_cache", ".ruff_cache", ".DS_Store"}


class MarkerError(ValueError):
    """A marker block that is not closed, nested or otherwise malformed."""


class LabError(ValueError):
    """A lab or submission that cannot be found; the message is one line."""


def _uncomment(line, where):
    """'    # code' -> '    code': a starter line is commented out in the instructor file."""
    body = line.rstrip("\r\n")
    if not body.strip():
        return line
    indent = body[: len(body) - len(body.lstrip())]
    rest = body[len(indent):]
    if not rest.startswith("#"):
        raise MarkerError(f"{where}: a STARTER line must be commented out with '#': {body.strip()!r}")
    rest = rest[2:] if rest.startswith("# ") else rest[1:]
    ending = line[len(body):]
    return indent + rest + ending if rest else ending  # a bare '#' becomes a blank line


def split_blocks(text, name="<text>"):
    """Yield (kind, line, "file:line") for every non-marker line; kind is None,
    "SOLUTION" or "STARTER" - the block the line sits in."""
    open_kind, opened_at = None, 0
    for number, line in enumerate(text.splitlines(keepends=True), 1):
        match = MARKER.match(line.rstrip("\r\n"))
        if not match:
            yield open_kind, line, f"{name}:{number}"
            continue
        edge, kind = match.groups()
        if edge == "BEGIN":
            if open_kind:
                raise MarkerError(f"{name}:{number}: BEGIN {kind} inside the {open_kind} block opened at line {opened_at}")
            open_kind, opened_at = kind, number
        else:
            if open_kind != kind:
                raise MarkerError(f"{name}:{number}: END {kind} without a matching BEGIN {kind}")
            open_kind = None
    if open_kind:
        raise MarkerError(f"{name}:{opened_at}: BEGIN {open_kind} is never closed")


def student_version(text, name="<text>"):
    """The handout version of an instructor file: solutions cut, starters made live."""
    out = []
    for kind, line, where in split_blocks(text, name):
        if kind == "SOLUTION":
            continue
        out.append(_uncomment(line, where) if kind == "STARTER" else line)
    result = "".join(out)
    if MARKER_WORDS.search(result):
        raise MarkerError(f"{name}: solution marker words left outside a marker line")
    return result


def solution_lines(text, name="<text>"):
    """The lines between SOLUTION markers (what must never reach a student)."""
    return [line for kind, line, _ in split_blocks(text, name) if kind == "SOLUTION"]


# --- labs and the handout ----------------------------------------------------


def all_labs(labs_dir=None):
    """labs/NN-topic/ folders, in order."""
    root = Path(labs_dir or LABS_DIR)
    return sorted(p for p in root.iterdir() if p.is_dir() and re.fullmatch(r"\d\d-[a-z0-9-]+", p.name))


def find_lab(key, labs_dir=None):
    """'01', '1' or '01-unblock-the-loop' -> the lab folder; anything else is a LabError."""
    labs = all_labs(labs_dir)
    text = str(key).strip()
    if text.isdigit():
        text = f"{int(text):02d}"
    for lab in labs:
        if text in (lab.name, lab.name[:2]):
            return lab
    names = ", ".join(lab.name[:2] for lab in labs) or "none"
    raise LabError(f"no lab {key!r}; the labs are {names} (e.g. make grade LAB=01)")


def handed_out(path):
    """Instructor-only files (instructor*, caches) stay behind."""
    return not (path.name in SKIPPED_NAMES or path.name.lower().startswith("instructor")
                or path.suffix == ".pyc")


def _copy_lab(src, dst):
    for path in sorted(src.iterdir()):
        if not handed_out(path):
            continue
        target = dst / path.name
        if path.is_dir():
            target.mkdir()
            _copy_lab(path, target)
            continue
        try:
            text = path.read_text(encoding="utf-8")
        except UnicodeDecodeError:  # a binary file: copied as it is
            shutil.copy2(path, target)
            continue
        target.write_text(student_version(text, str(path)), encoding="utf-8")
        shutil.copymode(path, target)


def write_handout(out, labs_dir=None):
    """Write every lab's student copy to out/NN-topic/; return the folders written.

    Each lab is built in a temporary folder and renamed into place, so a marker
    error leaves the previous handout untouched rather than half-written.
    """
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    written = []
    for lab in all_labs(labs_dir):
        staging = Path(tempfile.mkdtemp(prefix=f".{lab.name}-", dir=out))
        try:
            _copy_lab(lab, staging)
            final = out / lab.name
            if final.exists():
                shutil.rmtree(final)
            staging.rename(final)
        finally:
            shutil.rmtree(staging, ignore_errors=True)
        written.append(final)
    atomic_write(out / "README.md", handout_index(written))
    return written


def handout_index(folders):
    """The handout's front page: each lab's title and goal, and how to grade it."""
    lines = ["# Concurrency Lab - homework labs", "",
             "One folder per lab; start with its README. Work in the folder, then grade it",
             "from the root of the Concurrency Lab repository (after `make setup`):", "",
             "```sh", "make grade LAB=01 SUBMISSION=path/to/your/01-unblock-the-loop", "```", "",
             "It prints a PASS/FAIL line per check, why a check failed, and your score.", ""]
    for folder in folders:
        readme = folder / "README.md"
        text = readme.read_text(encoding="utf-8") if readme.is_file() else folder.name
        title = (text.strip().splitlines() or [folder.name])[0].lstrip("# ").strip()
        goal = re.search(r"^\*\*Goal:\*\*\s*(.+?)(?:\n\n|\Z)", text, re.M | re.S)
        lines.append(f"- [{title}]({folder.name}/README.md)"
                     + (f": {' '.join(goal.group(1).split())}" if goal else ""))
    return "\n".join(lines) + "\n"


# --- grading -------------------------------------------------------------------


def grade(key, submission=None, labs_dir=None, timeout=GRADER_TIMEOUT):
    """Grade one lab; print every check and the score; return the exit code (0 = all passed)."""
    if not key:
        raise LabError("which lab? e.g. conclab grade 01 (make grade LAB=01)")
    lab = find_lab(key, labs_dir)
    if importlib.util.find_spec("pytest") is None:
        raise LabError("grading needs pytest: install the dev extra (make setup does)")
    folder = Path(submission) if submission else lab
    if not folder.is_dir():
        raise LabError(f"submission folder not found: {submission} (give the lab folder, e.g. dist/handout/{lab.name})")
    folder = folder.resolve()
    print(f"Grading {lab.name}: {folder}", flush=True)
    command = [
        sys.executable, "-m", "pytest", "-c", str(lab.parent / "pytest.ini"),
        "-p", "conclab.labs", str(lab / "grader"),
    ]
    env = dict(os.environ, CONCLAB_SUBMISSION=str(folder), CONCLAB_LAB=str(lab), PYTHONUNBUFFERED="1")
    # A session of its own, so that a hung grader can be stopped as one group.
    proc = subprocess.Popen(command, cwd=lab, env=env, start_new_session=True)
    try:
        code = proc.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        _stop_group(proc)
        print(f"score: 0 - the grader did not finish within {timeout:g} s (an endless loop?)", flush=True)
        return 1
    except KeyboardInterrupt:
        _stop_group(proc)
        raise
    return 0 if code == 0 else 1


def _stop_group(proc):
    """TERM, then KILL, the grader's own process group (never anything else)."""
    for sig, wait in ((signal.SIGTERM, 5), (signal.SIGKILL, 5)):
        try:
            os.killpg(proc.pid, sig)
        except ProcessLookupError:
            return
        try:
            proc.wait(timeout=wait)
            return
        except subprocess.TimeoutExpired:
            continue


def add_cli(subparsers):
    """Register `conclab handout` and `conclab grade`."""
    p = subparsers.add_parser("handout", help="write student copies of the labs, solutions removed")
    p.add_argument("--out", default="dist/handout", help="folder to write (default dist/handout)")
    p.set_defaults(func=_cmd_handout)

    p = subparsers.add_parser("grade", help="grade a lab: conclab grade 01 [--submission FOLDER]")
    p.add_argument("lab", nargs="?", help="lab number, e.g. 01")
    p.add_argument("--submission", help="a student's copy of the lab folder (default: labs/NN-*/ itself)")
    p.set_defaults(func=_cmd_grade)


def _cmd_handout(args):
    from .cli import CliError

    try:
        for folder in write_handout(args.out):
            print(f"wrote {folder}")
        print(f"wrote {Path(args.out) / 'README.md'} (the index)")
    except (MarkerError, OSError) as err:
        raise CliError(str(err)) from None
    return 0


def _cmd_grade(args):
    from .cli import CliError

    try:
        return grade(args.lab, args.submission)
    except LabError as err:
        raise CliError(str(err)) from None


# --- helpers for grader tests ----------------------------------------------------
# pytest is imported only inside these functions: `conclab serve` and friends
# import this module too, and need no test framework.


def student_file(folder, name):
    """The path of a file the student hands in; a clear failure if it is missing."""
    import pytest

    path = Path(folder) / name
    if not path.is_file():
        pytest.fail(f"{name} is missing from {folder}: hand in the whole lab folder.", pytrace=False)
    return path


def import_student(folder, name):
    """Import the student's module `name`.py from the submission folder, by path."""
    import pytest

    path = student_file(folder, f"{name}.py")
    spec = importlib.util.spec_from_file_location(f"student_{name}", path)
    module = importlib.util.module_from_spec(spec)
    try:
        spec.loader.exec_module(module)
    except Exception as err:  # any error in student code is a finding, not a crash
        line = getattr(err, "lineno", None)
        where = f"{path.name} line {line}" if line else path.name
        pytest.fail(f"{where} could not be imported: {type(err).__name__}: {err}", pytrace=False)
    return module


EXCEPTION_LINE = re.compile(r"^\s*\w[\w.]*(Error|Exception|Exit)\b")


def start_failure(err, folder, what):
    """A short reason for a server that did not start: the traceback from the
    first line in the student's own files down to the exception; failing that,
    the launcher's summary and the exception lines of the server's output."""
    lines = str(err).splitlines()
    first = next((i for i, line in enumerate(lines) if "File " in line and str(folder) in line), None)
    if first is not None:
        end = next((i for i in range(first, len(lines)) if EXCEPTION_LINE.match(lines[i])), len(lines) - 1)
        shown = lines[first:end + 1]
    else:
        shown = lines[:1] + [line for line in lines if EXCEPTION_LINE.match(line)][-3:]
    return f"{what} did not start:\n" + "\n".join(line.strip() for line in shown)


# --- the pytest plugin: one line per check --------------------------------------


def pytest_configure(config):
    """`-p conclab.labs` loads this module; the real plugin is built here, lazily."""
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
            passed = sum(ok for ok, _ in self.results.values())
            total = len(self.results)
            _say(f"score: {passed}/{total}")
            if total and passed == total:
                _say("all checks passed")
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
