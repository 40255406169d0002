"""The student's own traceback, shown under the FAIL line it explains.

When the student's app answers 500 or crashes, the cause is in the server's
log, which the student never sees during grading. Graders start the student's
servers with :func:`conclab.labs.helpers.serve_or_fail`, which registers each
one here; when a check fails, the plugin asks :func:`unseen` for the last
traceback in those logs that passes through the student's own files, and
prints its end - the student's frames and the exception - under the reason.
An exception raised in this very process (a function the grader calls) is
trimmed the same way by :func:`of_exception`.
"""

from __future__ import annotations

import traceback
from dataclasses import dataclass, field
from pathlib import Path

MAX_FRAMES = 3  # the student's innermost frames; the exception line comes after them


@dataclass
class Watched:
    """A server running the student's code: its log, live while it runs, kept when it stops."""

    read_log: object  # () -> str
    folder: Path
    final: str | None = None

    def text(self) -> str:
        return self.final if self.final is not None else self.read_log()


@dataclass
class _Registry:
    watched: list[Watched] = field(default_factory=list)
    shown: set[str] = field(default_factory=set)


_REGISTRY = _Registry()


def watch(read_log, folder) -> Watched:
    """Start watching a log (``read_log()`` returns its text) for tracebacks through ``folder``."""
    entry = Watched(read_log, Path(folder).resolve())
    _REGISTRY.watched.append(entry)
    return entry


def unseen() -> list[str]:
    """The end of the newest student traceback in any watched log not shown before; [] if none."""
    for entry in reversed(_REGISTRY.watched):
        try:
            lines = last_in_log(entry.text(), entry.folder)
        except OSError:
            continue
        if lines:
            key = "\n".join(lines)
            if key in _REGISTRY.shown:
                return []
            _REGISTRY.shown.add(key)
            return lines
    return []


def last_in_log(text: str, folder: Path) -> list[str]:
    """The last traceback in ``text`` with a frame in
    ``folder``: those frames and the exception line."""
    folder = str(Path(folder).resolve())
    found: list[str] = []
    lines = text.splitlines()
    for start, line in enumerate(lines):
        if line.strip() != "Traceback (most recent call last):":
            continue
        frames, exception = _parse(lines, start + 1)
        mine = [f for f in frames if folder in f[0]]
        if mine and exception:
            found = _format(mine, exception, folder)
    return found


def _parse(lines, i):
    """Frames [(File line, [code lines])] from line i on, and the exception line that ends them."""
    frames = []
    while i < len(lines):
        line = lines[i]
        if line.startswith("  File "):
            frames.append((line.strip(), []))
        elif line.startswith("    ") and frames:
            frames[-1][1].append(line[4:].rstrip())
        elif line.strip() and not line.startswith(" "):
            return frames, line.strip()
        i += 1
    return frames, None


def _format(frames, exception, folder):
    out = []
    for file_line, code in frames[-MAX_FRAMES:]:
        out.append(file_line.replace(folder + "/", ""))
        out += ["  " + c for c in code]
    return [*out, exception]


def of_exception(exc: BaseException, folder) -> list[str]:
    """The same for an exception raised in this process: the student's frames and the exception."""
    folder = str(Path(folder).resolve())
    frames = [f for f in traceback.extract_tb(exc.__traceback__) if f.filename.startswith(folder)]
    if not frames:
        return []
    out = []
    for f in frames[-MAX_FRAMES:]:
        out.append(f'File "{f.filename.replace(folder + "/", "")}", line {f.lineno}, in {f.name}')
        if f.line:
            out.append(f"  {f.line}")
    message = str(exc).strip().splitlines()
    return [*out, f"{type(exc).__name__}: {message[0]}" if message else type(exc).__name__]
