"""Find the labs, and write the student handout: solutions cut, instructor files left behind."""

from __future__ import annotations

import re
import shutil
import tempfile
from pathlib import Path

from ..base.errors import LabError
from ..base.files import atomic_write
from ..base.paths import LABS_DIR
from .markers import student_version

SKIPPED_NAMES = {"__pycache__", ".pytest_cache", ".ruff_cache", ".DS_Store"}


def all_labs(labs_dir: Path | None = None) -> list[Path]:
    """labs/NN-topic/ folders, in order."""
    root = Path(labs_dir or LABS_DIR).resolve()  # graders run with the lab as cwd
    return sorted(
        p for p in root.iterdir() if p.is_dir() and re.fullmatch(r"\d\d-[a-z0-9-]+", p.name)
    )


def find_lab(key: str, labs_dir: Path | None = None) -> Path:
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


def handed_out(path: Path) -> bool:
    """Instructor-only files (instructor*, caches) stay behind."""
    return not (
        path.name in SKIPPED_NAMES
        or path.name.lower().startswith("instructor")
        or path.suffix == ".pyc"
    )


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


def write_handout(out: str | Path, labs_dir: Path | None = None) -> list[Path]:
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


def handout_index(folders: list[Path]) -> str:
    """The handout's front page: each lab's title and goal, and how to grade it."""
    lines = [
        "# Concurrency Lab - homework labs",
        "",
        "One folder per lab; start with its README. Work in your copy of the folder;",
        "run it by hand and grade it from the root of the Concurrency Lab repository",
        "(after `make setup`, which creates the `.venv` these commands use):",
        "",
        "```sh",
        "make try LAB=01 SUBMISSION=path/to/your/01-unblock-the-loop",
        "make grade LAB=01 SUBMISSION=path/to/your/01-unblock-the-loop",
        "```",
        "",
        "`make try` runs your copy as the grader does, until Ctrl-C. `make grade` prints a",
        "PASS/FAIL line per check, why a check failed, and your score.",
        "",
    ]
    for folder in folders:
        readme = folder / "README.md"
        text = readme.read_text(encoding="utf-8") if readme.is_file() else folder.name
        title = (text.strip().splitlines() or [folder.name])[0].lstrip("# ").strip()
        goal = re.search(r"^\*\*Goal:\*\*\s*(.+?)(?:\n\n|\Z)", text, re.M | re.S)
        lines.append(
            f"- [{title}]({folder.name}/README.md)"
            + (f": {' '.join(goal.group(1).split())}" if goal else "")
        )
    return "\n".join(lines) + "\n"
