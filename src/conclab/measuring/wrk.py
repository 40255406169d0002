"""wrk, the C load generator, run and read in one place.

The lab's own driver is Python; wrk is the native reference it is checked
against (``tests/test_wrk.py``) and drawn beside (the client_ceiling and
cost_per_request figures). wrk is a closed loop like the driver's users: each
of its ``connections`` sends a request, waits for the answer, sends the next.

    result = run_wrk(server.url + "/io?ms=100", connections=64, duration=3)
    result.rps, result.latency_ms["p50"]

wrk is a system program (``apt-get install wrk``): :func:`wrk_missing` says so
in one line, and under CI it is an error instead (see conclab.base.system).
"""

from __future__ import annotations

import re
import shutil
import subprocess
from dataclasses import dataclass, field

from ..base import system
from ..base.cores import client_cpu
from ..base.system import missing

INSTALL_HINT = "apt-get install wrk (Debian/Ubuntu) or brew install wrk (macOS)"
_UNITS = {"us": 1e-3, "ms": 1.0, "s": 1e3, "m": 60e3}
_DONE = re.compile(r"(\d+) requests in ([\d.]+)(us|ms|s|m)\b")
_RPS = re.compile(r"^Requests/sec:\s+([\d.]+)", re.M)
_PERCENTILE = re.compile(r"^\s+(50|75|90|99)(?:\.0+)?%\s+([\d.]+)(us|ms|s|m)\s*$", re.M)
_ERRORS = re.compile(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)")
_NON_2XX = re.compile(r"Non-2xx or 3xx responses: (\d+)")


class WrkError(RuntimeError):
    """wrk ran but its output could not be read (the output's end is in the message)."""


@dataclass
class WrkResult:
    """What one wrk run measured."""

    rps: float  # wrk's Requests/sec: completed requests / seconds
    requests: int  # requests completed
    seconds: float  # how long wrk ran
    latency_ms: dict = field(
        default_factory=dict
    )  # {"p50": ..., "p75", "p90", "p99"} (with --latency)
    errors: int = 0  # socket errors (connect, read, write, timeout) and non-2xx/3xx answers
    text: str = field(default="", repr=False)  # wrk's own output

    def to_dict(self) -> dict:
        return {
            "rps": self.rps,
            "requests": self.requests,
            "seconds": self.seconds,
            "latency_ms": self.latency_ms,
            "errors": self.errors,
        }


def installed() -> bool:
    return shutil.which("wrk") is not None


def wrk_missing() -> str | None:
    """None when wrk is installed; else one line saying how to install it (raises under CI)."""
    return missing("wrk", shutil.which("wrk"), INSTALL_HINT)


def parse(text: str) -> WrkResult:
    """Read wrk's report (with or without ``--latency``)."""
    done, rps = _DONE.search(text), _RPS.search(text)
    if done is None or rps is None:
        raise WrkError(f"could not read wrk's output: {text[-300:]!r}")
    latency = {f"p{p}": float(v) * _UNITS[unit] for p, v, unit in _PERCENTILE.findall(text)}
    sockets, non_2xx = _ERRORS.search(text), _NON_2XX.search(text)
    errors = (sum(map(int, sockets.groups())) if sockets else 0) + (
        int(non_2xx.group(1)) if non_2xx else 0
    )
    seconds = float(done.group(2)) * _UNITS[done.group(3)] / 1e3
    return WrkResult(float(rps.group(1)), int(done.group(1)), seconds, latency, errors, text)


def run_wrk(
    url: str,
    connections: int,
    duration: float,
    threads: int = 1,
    pin: bool = True,
    timeout_s: float = 10.0,
) -> WrkResult:
    """Run wrk against ``url`` for ``duration`` seconds with ``connections`` open at once.

    ``pin``: wrk runs on the load driver's core (conclab.base.cores.client_cpu),
    so a server on the other cores never shares a core with it - the same split
    the driver makes. wrk's per-request ``timeout_s`` counts a slower answer as an
    error.
    """
    wrk = shutil.which("wrk")
    if wrk is None:
        raise FileNotFoundError(f"wrk is not installed: {INSTALL_HINT}")
    cmd = [
        wrk,
        f"-t{threads}",
        f"-c{connections}",
        f"-d{max(1, round(duration))}s",
        f"--timeout={timeout_s:g}s",
        "--latency",
        url,
    ]
    if pin:  # taskset where the system can pin; unpinned (as it is) elsewhere
        cmd = system.pinned_command(client_cpu(), cmd)
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=duration + timeout_s + 30)
    if done.returncode != 0:
        raise WrkError(
            f"wrk failed ({done.returncode}): {(done.stderr or done.stdout).strip()[-300:]}"
        )
    return parse(done.stdout)
