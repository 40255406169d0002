"""Solution and starter markers in instructor files, and the student version they imply."""

from __future__ import annotations

import re
from collections.abc import Iterator

from ..base.errors import MarkerError

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


def _uncomment(line, where):
    """'    # code' -> '    code': a starter line is commented out in the instructor file."""
    body = line.rstrip("\r\n")
    if not body.strip():
        return line
    indent = body[: len(body) - len(body.lstrip())]
    rest = body[len(indent) :]
    if not rest.startswith("#"):
        raise MarkerError(
            f"{where}: a STARTER line must be commented out with '#': {body.strip()!r}"
        )
    rest = rest[2:] if rest.startswith("# ") else rest[1:]
    ending = line[len(body) :]
    return indent + rest + ending if rest else ending  # a bare '#' becomes a blank line


def split_blocks(text: str, name: str = "<text>") -> Iterator[tuple[str | None, str, str]]:
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
                raise MarkerError(
                    f"{name}:{number}: BEGIN {kind} inside the "
                    f"{open_kind} block opened at line {opened_at}"
                )
            open_kind, opened_at = kind, number
        else:
            if open_kind != kind:
                raise MarkerError(f"{name}:{number}: END {kind} without a matching BEGIN {kind}")
            open_kind = None
    if open_kind:
        raise MarkerError(f"{name}:{opened_at}: BEGIN {open_kind} is never closed")


def student_version(text: str, name: str = "<text>") -> str:
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


def solution_lines(text: str, name: str = "<text>") -> list[str]:
    """The lines between SOLUTION markers (what must never reach a student)."""
    return [line for kind, line, _ in split_blocks(text, name) if kind == "SOLUTION"]
