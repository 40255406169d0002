"""Errors a user can cause. The CLI prints any :class:`UserError` as one line and exits 2.

Each also derives from the built-in error it refines (ValueError, RuntimeError),
so ``except ValueError`` around a bad spec keeps working.
"""

from __future__ import annotations


class UserError(Exception):
    """A mistake in what the user asked for, or a server that would not start: one line."""


class SpecError(UserError, ValueError):
    """A server spec that cannot run (bad worker count, unknown kind ...)."""


class LoadError(UserError, ValueError):
    """Bad load parameters or a forbidden target."""


class ServerStartError(UserError, RuntimeError):
    """The server did not come up; the message quotes its own output."""


class LabError(UserError, ValueError):
    """A lab or submission that cannot be found."""


class MarkerError(UserError, ValueError):
    """A solution/starter marker block that is not closed, nested or otherwise malformed."""


class CliError(UserError):
    """A mistake on the command line."""
