"""Grade a submission: run the repository's grader for a lab, in a fresh Python process.

It always runs the repository's own copy of ``labs/NN-topic/grader/`` - never the
one inside the submission - against the student files of the submission folder,
so a student who edits their copy of the grader gains nothing.
"""

from __future__ import annotations

import importlib.util
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from ..base.errors import LabError
from .handout import find_lab
from .markers import solution_lines
from .results import CheckResult, Grade

GRADER_TIMEOUT = 150.0  # seconds for a whole grader run; each lab aims for under 60
MAX_LOG_CHARS = 200_000  # of a grader's log kept when it is not shown live


def grade(
    key: str | None,
    submission: str | Path | None = None,
    labs_dir: Path | None = None,
    timeout: float = GRADER_TIMEOUT,
    check: str | None = None,
    live: bool = True,
    env: dict[str, str] | None = None,
    popen: dict | None = None,
) -> Grade:
    """Grade one lab: run its grader in a fresh process; return the :class:`Grade`.

    ``live``: the grader's PASS/FAIL lines go to stdout as each check ends
    (else they are kept in the log). ``check``: run only that check. ``env`` and
    ``popen`` (extra Popen arguments) are how a batch bounds a grader.
    """
    lab, folder = _lab_and_folder(key, submission, labs_dir)
    if live:
        print(f"Grading {lab.name}: {folder}", flush=True)
    started = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="conclab-grade-") as scratch:
        results_file = Path(scratch) / "results.json"
        env = dict(
            os.environ,
            **(env or {}),
            CONCLAB_SUBMISSION=str(folder),
            CONCLAB_LAB=str(lab),
            CONCLAB_RESULTS=str(results_file),
            PYTHONUNBUFFERED="1",
        )
        env.pop("CONCLAB_CHECK", None)
        if check:
            env["CONCLAB_CHECK"] = check
        error, log = _run_grader(lab, env, timeout, live, popen or {})
        checks = _read_results(results_file)
    if check and not checks:
        raise LabError(
            log.strip().splitlines()[-1] if log.strip() else f"no check {check!r} in lab {lab.name}"
        )
    for result in checks:
        if result.output == "did not run" and result.status == "failed":
            result.output = f"did not run: {error}" if error else "did not run"
    return Grade(lab.name, checks, time.monotonic() - started, error)


def collect_checks(key: str | None, labs_dir: Path | None = None) -> list[CheckResult]:
    """The lab's checks, with their points and visibility, without running them."""
    lab = find_lab(key, labs_dir)
    with tempfile.TemporaryDirectory(prefix="conclab-collect-") as scratch:
        results_file = Path(scratch) / "results.json"
        env = dict(os.environ, CONCLAB_RESULTS=str(results_file), CONCLAB_LAB=str(lab))
        env.pop("CONCLAB_CHECK", None)
        done = subprocess.run(
            [*_pytest_command(lab), "--collect-only", "-q"],
            cwd=lab,
            env=_pytest_env(env),
            capture_output=True,
            text=True,
            timeout=120,
        )
        checks = _read_results(results_file)
    if done.returncode != 0 or not checks:
        raise LabError(
            f"could not list the checks of {lab.name}: {(done.stdout + done.stderr).strip()[-500:]}"
        )
    return checks


def _lab_and_folder(key, submission, labs_dir):
    if not key:
        raise LabError("which lab? e.g. conclab grade 01 (make grade LAB=01)")
    lab = find_lab(key, labs_dir)
    if importlib.util.find_spec("pytest") is None:
        raise LabError("grading needs pytest: install the dev extra (make setup does)")
    folder = check_submission(lab, submission) if submission else lab.resolve()
    return lab, folder


def _pytest_command(lab):
    # Only the plugins a grader uses: every other plugin installed beside pytest would be
    # imported at each start (nbmake's notebook schema alone takes over a second).
    return [
        sys.executable,
        "-m",
        "pytest",
        "-c",
        str(lab.parent / "pytest.ini"),
        "-p",
        "pytest_timeout",
        "-p",
        "conclab.labs.plugin",
        str(lab / "grader"),
    ]


def _pytest_env(env: dict[str, str]) -> dict[str, str]:
    """The grader's environment: ``env`` with pytest's plugin autoloading turned off."""
    return dict(env, PYTEST_DISABLE_PLUGIN_AUTOLOAD="1")


def _run_grader(lab, env, timeout, live, popen):
    """Run the grader; return (an error that stopped it, or "", its log when not live)."""
    # A session of its own, so that a hung grader can be stopped as one group.
    with tempfile.TemporaryFile("w+", encoding="utf-8", errors="replace") as log:
        proc = subprocess.Popen(
            _pytest_command(lab),
            cwd=lab,
            env=_pytest_env(env),
            start_new_session=True,
            stdout=None if live else log,
            stderr=None if live else subprocess.STDOUT,
            **popen,
        )
        error = ""
        try:
            proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            error = f"the grader did not finish within {timeout:g} s (an endless loop?)"
        except KeyboardInterrupt:
            stop_group(proc)
            raise
        finally:
            stop_group(proc)  # the servers of a grader that ended, too
        log.seek(0)
        return error, log.read(MAX_LOG_CHARS)


def _read_results(path):
    try:
        data = json.loads(Path(path).read_text())
    except (OSError, ValueError):
        return []
    return [CheckResult(**c) for c in data.get("checks", [])]


def student_files(lab: Path) -> list[str]:
    """The files a student hands in: the lab's top-level files that hold a solution block."""
    names = []
    for path in sorted(lab.iterdir()):
        if path.is_file():
            try:
                text = path.read_text(encoding="utf-8")
            except UnicodeDecodeError:
                continue
            if solution_lines(text, str(path)):
                names.append(path.name)
    return names


def check_submission(lab: Path, submission: str | Path, what: str = "grade") -> Path:
    """The submission folder, resolved; one clear LabError if it is not a copy of this lab."""
    folder = Path(submission)
    example = f"dist/handout/{lab.name}"
    if not folder.is_dir():
        raise LabError(
            f"submission folder not found: {submission} (give "
            f"your copy of the lab folder, e.g. {example})"
        )
    missing = [name for name in student_files(lab) if not (folder / name).is_file()]
    if missing:
        raise LabError(
            f"{folder.resolve()} does not hold "
            f"{', '.join(missing)}, the file(s) lab {lab.name[:2]} "
            f"needs: give your copy of the {lab.name} folder to {what}, e.g. {example}"
        )
    return folder.resolve()


def stop_group(proc):
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


IGNORED_FOLDERS = {"__MACOSX", "__pycache__", ".git"}


def find_submission(folder: Path, files: list[str]) -> Path | None:
    """The folder holding the lab's files: ``folder`` itself, or one folder down
    (a student who uploads or zips the whole lab folder); None if neither does."""
    folder = Path(folder)
    if all((folder / name).is_file() for name in files):
        return folder
    inside = (
        sorted(p for p in folder.iterdir() if p.is_dir() and p.name not in IGNORED_FOLDERS)
        if folder.is_dir()
        else []
    )
    return next((p for p in inside if all((p / name).is_file() for name in files)), None)
