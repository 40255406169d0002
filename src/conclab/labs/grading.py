"""Grade a submission: run the repository's grader for a lab, in a fresh Python process.

It always runs the repository's own copy of ``labs/NN-topic/grader/`` - never the
one inside the submission - against the student files of the submission folder,
so a student who edits their copy of the grader gains nothing.
"""

from __future__ import annotations

import importlib.util
import os
import signal
import subprocess
import sys
from pathlib import Path

from ..base.errors import LabError
from .handout import find_lab
from .markers import solution_lines

GRADER_TIMEOUT = 150.0  # seconds for a whole grader run; each lab aims for under 60


def grade(key: str | None, submission: str | Path | None = None, labs_dir: Path | None = None,
          timeout: float = GRADER_TIMEOUT) -> int:
    """Grade one lab; print every check and the score; return the exit code (0 = all passed)."""
    if not key:
        raise LabError("which lab? e.g. conclab grade 01 (make grade LAB=01)")
    lab = find_lab(key, labs_dir)
    if importlib.util.find_spec("pytest") is None:
        raise LabError("grading needs pytest: install the dev extra (make setup does)")
    folder = check_submission(lab, submission) if submission else lab.resolve()
    print(f"Grading {lab.name}: {folder}", flush=True)
    command = [
        sys.executable, "-m", "pytest", "-c", str(lab.parent / "pytest.ini"),
        "-p", "conclab.labs.plugin", str(lab / "grader"),
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
        raise LabError(f"submission folder not found: {submission} (give your copy of the lab folder, e.g. {example})")
    missing = [name for name in student_files(lab) if not (folder / name).is_file()]
    if missing:
        raise LabError(f"{folder.resolve()} does not hold {', '.join(missing)}, the file(s) lab {lab.name[:2]} "
                       f"needs: give your copy of the {lab.name} folder to {what}, e.g. {example}")
    return folder.resolve()


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
