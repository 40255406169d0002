"""Grade a whole class: ``conclab grade LAB --batch DIR [--jobs N] [--out DIR]``.

DIR holds one folder per student (the student's copy of the lab folder, or a
folder holding it); a Gradescope export ("Download submissions") also holds
``submission_metadata.yml``, which names the students behind each
``submission_NNN`` folder. Each submission is graded in a keeper process
(``conclab.labs.sandbox``) that bounds its time, memory, disk, output and
processes, and kills whatever it left running; N keepers run at once, each
pinned to cores of its own, so parallel grading gives the verdicts of serial
grading. Written to OUT (default DIR-grades/):

    grades.csv            student, folder, points per check, total, max, seconds, error
    feedback/STUDENT.txt  what the student would see from `make grade`
"""

from __future__ import annotations

import csv
import io
import json
import re
import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from ..base import system
from ..base.errors import LabError
from ..base.files import atomic_write
from .grading import GRADER_TIMEOUT, collect_checks, find_submission, student_files
from .handout import find_lab
from .results import CheckResult, Grade, format_text

MEMORY_MB = 768  # Gradescope's default autograder memory
SLACK = 30.0  # seconds past the grader's own timeout before its keeper stops it
METADATA = "submission_metadata.yml"
BOUNDS: set[str] = set()  # the bounds the keepers held, as they reported them


def submissions(folder: Path) -> list[tuple[str, Path]]:
    """(student, folder) for every submission under
    ``folder``, names from a Gradescope export if any."""
    names = _gradescope_names(folder / METADATA)
    found = []
    for path in sorted(
        p for p in folder.iterdir() if p.is_dir() and not p.name.startswith((".", "__"))
    ):
        found.append((names.get(path.name, path.name), path))
    if not found:
        raise LabError(f"{folder} holds no submission folders (one folder per student)")
    return found


def _gradescope_names(path: Path) -> dict[str, str]:
    if not path.is_file():
        return {}
    import yaml

    data = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    names = {}
    for key, entry in data.items():
        submitters = (entry or {}).get(":submitters") or []
        who = " & ".join(
            str(s.get(":name") or s.get(":email") or "") for s in submitters if isinstance(s, dict)
        )
        if who.strip():
            names[str(key)] = who
    return names


def core_sets(jobs: int) -> list[list[int]]:
    """Cores of its own for each of ``jobs`` graders (jobs is at most the cores)."""
    cpus = list(system.cpu_ids())
    size = len(cpus) // jobs
    return [cpus[i * size : (i + 1) * size] for i in range(jobs)]


def grade_batch(
    key: str | None,
    batch: str | Path,
    out: str | Path | None = None,
    jobs: int = 1,
    timeout: float = GRADER_TIMEOUT + SLACK,
    memory_mb: int = MEMORY_MB,
) -> int:
    """Grade every submission under ``batch``; ``timeout`` bounds each one, all included."""
    if not key:
        raise LabError("which lab? e.g. conclab grade 01 --batch submissions/")
    lab = find_lab(key, None)
    batch = Path(batch)
    if not batch.is_dir():
        raise LabError(f"batch folder not found: {batch}")
    out = Path(out) if out else batch.with_name(batch.name + "-grades")
    (out / "feedback").mkdir(parents=True, exist_ok=True)
    students = submissions(batch)
    checks = collect_checks(lab.name)
    usable = len(system.cpu_ids())
    if jobs > usable:
        print(
            f"{jobs} graders asked, {usable} cores here: "
            f"running {usable}, each on a core of its own",
            flush=True,
        )
        jobs = usable
    files = student_files(lab)
    free = list(core_sets(jobs))
    lock = threading.Lock()

    def one(item):
        student, folder = item
        with lock:
            cores = free.pop()
        try:
            return _grade_one(lab, student, folder, files, out, cores, timeout, memory_mb)
        finally:
            with lock:
                free.append(cores)

    from tqdm.auto import tqdm

    grades = []
    with ThreadPoolExecutor(jobs) as pool:
        results = pool.map(one, students)
        for (student, _), grade in tqdm(
            zip(students, results, strict=True),
            total=len(students),
            unit="student",
            desc=f"grading {lab.name}",
        ):
            grades.append((student, grade))
            atomic_write(out / "feedback" / f"{_safe(student)}.txt", format_text(grade))
    atomic_write(out / "grades.csv", grades_csv(checks, grades))
    print(
        f"graded {len(grades)} submission(s) of {lab.name}: "
        f"{out / 'grades.csv'}, feedback in {out / 'feedback'}"
    )
    if BOUNDS:
        print(
            f"each submission was bounded by: {', '.join(sorted(BOUNDS))} "
            "(docs/grading.md says which hold where)"
        )
    return 0


def _grade_one(lab, student, folder, files, out, cores, timeout, memory_mb) -> Grade:
    started = time.monotonic()
    found = find_submission(folder, files)
    if found is None:
        return Grade(
            lab.name, [], 0.0, f"no {', '.join(files)} in the submission (nor one folder down)"
        )
    name = _safe(student)
    result = out / ".running" / f"{name}.json"
    result.parent.mkdir(parents=True, exist_ok=True)
    result.unlink(missing_ok=True)
    grade_command = [
        sys.executable,
        "-c",
        "import sys; from conclab.cli import main; sys.exit(main())",
        "grade",
        lab.name,
        "--submission",
        str(found),
        "--format",
        "json",
        "--out",
        str(result),
    ]
    command = [
        sys.executable,
        "-m",
        "conclab.labs.sandbox",
        "--timeout",
        str(timeout),
        "--memory-mb",
        str(memory_mb),
        "--cpus",
        ",".join(map(str, cores)),
        "--scratch",
        str(out / ".scratch" / name),
        "--name",
        re.sub(r"\W", "", name)[:40] or "student",
        "--",
        *grade_command,
    ]
    done = subprocess.run(
        command, capture_output=True, text=True, errors="replace", timeout=timeout + SLACK
    )
    BOUNDS.update(
        done.stdout.rsplit("[bounds: ", 1)[-1].rstrip("]\n ").split(", ")
        if "[bounds: " in done.stdout
        else []
    )
    seconds = time.monotonic() - started
    try:
        grade = Grade.from_dict(json.loads(result.read_text()))
    except (OSError, ValueError):
        tail = [line for line in done.stdout.strip().splitlines() if line.strip()][-3:]
        why = (
            f"stopped after {timeout:g} s (a hang?)"
            if done.returncode == 124
            else f"the grader ended without a grade (exit {done.returncode}): " + " / ".join(tail)
        )
        grade = Grade(lab.name, [], seconds, why)
    finally:
        result.unlink(missing_ok=True)
        for empty in (result.parent, out / ".scratch"):
            try:
                empty.rmdir()
            except OSError:
                pass
    grade.seconds = seconds
    return grade


def grades_csv(checks: list[CheckResult], grades: list[tuple[str, Grade]]) -> str:
    """One row per student: points per check (blank:
    skipped, not counted), total, max, seconds, error."""
    names = [c.name for c in checks]
    buffer = io.StringIO()
    writer = csv.writer(buffer)
    writer.writerow(["student", *names, "total", "max", "seconds", "error"])
    full = sum(c.max_points for c in checks)
    for student, grade in grades:
        by_name = {c.name: c for c in grade.checks}
        row = [student]
        for name in names:
            check = by_name.get(name)
            row.append(
                "" if check and check.status == "skipped" else f"{check.points:g}" if check else "0"
            )
        maximum = grade.max_score if grade.checks else full
        row += [f"{grade.score:g}", f"{maximum:g}", f"{grade.seconds:.1f}", grade.error]
        writer.writerow(row)
    return buffer.getvalue()


def _safe(name: str) -> str:
    return re.sub(r"[^\w.@ -]", "_", name).strip() or "student"
