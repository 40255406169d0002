"""Errors a user can cause. The CLI prints any :class:`UserError` as one line and exits 2
(a :class:`ServerStartError` keeps every line: it quotes the server).

Each also derives from the built-in error it refines (ValueError, RuntimeError),
so ``except ValueError`` around a bad spec keeps working. Callers branch on the
type and its attributes, never on the message's words.

Our exception hierarchy:

* UserError
  + SpecError           (also ValueError)
  + LoadError           (also ValueError)
    - RemoteTargetError
  + ServerStartError    (also RuntimeError)  .output .command .port_in_use
  + LabError            (also ValueError)
  + MarkerError         (also ValueError)
  + CliError
* ProgramMissing        (conclab.base.system: a system program such as nginx is not installed)
"""

from __future__ import annotations

import shlex


class UserError(Exception):
    """A mistake in what the user asked for, or a server that would not start: one line."""


class SpecError(UserError, ValueError):
    """A server spec that cannot run (bad worker count, unknown kind ...)."""


class LoadError(UserError, ValueError):
    """Bad load parameters or a forbidden target."""


class RemoteTargetError(LoadError):
    """Load aimed at an address that is not this machine's (``host``), without permission."""

    def __init__(self, message: str, host: str):
        super().__init__(message)
        self.host = host


class ServerStartError(UserError, RuntimeError):
    """A server (an app server or nginx) did not come up.

    ``reason``: one line, what happened ("uvicorn 1w exited while starting (code 1)");
    ``output``: the end of the server's own output (its log); ``command``: the
    command line that was run; ``port_in_use``: True when its port was taken by
    another program - decided by binding the port ourselves after the failed
    start, never by reading the server's words. The message quotes all of them.
    """

    def __init__(
        self,
        reason: str,
        output: str = "",
        command: tuple[str, ...] = (),
        port_in_use: bool = False,
    ):
        self.reason = reason
        self.output = output
        self.command = tuple(command)
        self.port_in_use = port_in_use
        lines = [reason]
        if command:
            lines.append(f"command: {shlex.join(command)}")
        if output:
            lines += ["--- its output ---", output]
        super().__init__("\n".join(lines))


class LabError(UserError, ValueError):
    """A lab or submission that cannot be found."""


class MarkerError(UserError, ValueError):
    """A solution/starter marker block that is not closed, nested or otherwise malformed."""


class CliError(UserError):
    """A mistake on the command line."""
