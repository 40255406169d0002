"""System programs the lab uses but pip cannot install (nginx, Chromium): one policy.

Where such a program is missing, whatever needs it skips with one line saying
how to install it. Under CI (``CI=true``) a missing program is an error instead:
CI must run those tests, and ``.ci/run`` installs the programs first.
"""

from __future__ import annotations

import os

from .errors import UserError


class ProgramMissing(UserError, RuntimeError):
    """A system program is missing where it may not be (under CI)."""


def in_ci() -> bool:
    """True when running under CI (the CI environment variable is set to true)."""
    return os.environ.get("CI", "").strip().lower() in ("1", "true", "yes")


def missing(what: str, found: str | None, install_hint: str) -> str | None:
    """None when ``found``; else one line "<what> is not installed: <hint>".

    Under CI it raises :class:`ProgramMissing` instead of returning the line.
    """
    if found:
        return None
    line = f"{what} is not installed: {install_hint}"
    if in_ci():
        raise ProgramMissing(f"{line} (CI=true: a missing {what} fails instead of skipping; .ci/run installs it)")
    return line
