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

GRADER_TIMEOUT = 150.0  # seconds for a whole grader run; each lab aims for under 60


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
