"""Run a server under another Python (``ServerSpec.python``), and ask it about its GIL.

    conclab bench --python ~/.cache/conclab/python3.13t/bin/python3.13t --server asgi ...

The lab's own venv belongs to the lab's Python, so a server on another
interpreter gets a small venv of its own, made once and cached outside the
repository (``~/.cache/conclab/venvs/``, one per interpreter path and version).
It holds only what the server needs (Uvicorn, Flask, Gunicorn, FastAPI ...),
installed from wheels where they exist; a package that cannot be installed
stops the start with one sentence naming it.

On a free-threaded build (``python3.13t``, ``python3.14t``) Uvicorn's "auto"
choices become asyncio and h11: httptools and uvloop are C extensions, and an
extension that does not declare free-threading support turns the GIL back on
when it is imported (with a RuntimeWarning), unless ``PYTHON_GIL=0``.
httptools 0.7.1 does (measured here); 0.8 and later declare support.

What a server really runs on is never assumed: every lab server answers
``/interpreter`` (its version, its build, ``sys._is_gil_enabled()`` right now),
the launcher reads it once the server is up (``Server.interpreter``), and
summaries and figure footers quote it.
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import hashlib
import json
import os
import re
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import httpx

from ..base.errors import UserError
from ..base.system import missing

BUILD_COMMAND = "make freethreaded"


def cache_dir() -> Path:
    """Where the lab keeps what it builds outside the repository: $XDG_CACHE_HOME/conclab."""
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "conclab"


def freethreaded_home() -> Path:
    """Where ``make freethreaded`` installs CPython 3.13t ($CONCLAB_FREETHREADED overrides)."""
    return Path(os.environ.get("CONCLAB_FREETHREADED") or cache_dir() / "python3.13t")


def freethreaded_python() -> Path | None:
    """The free-threaded Python that ``make freethreaded`` built, or None if it is not built.

    ``conclab doctor`` reports it; the free-threaded tests and figures run on it.
    """
    python = freethreaded_home() / "bin" / "python3.13t"
    return python if python.is_file() and os.access(python, os.X_OK) else None


def freethreaded_missing() -> str | None:
    """None when the free-threaded build is there; else one line saying how to build it.

    Under CI (CI=true) a missing build raises instead (``base.system.missing``).
    """
    return missing(
        "a free-threaded Python (3.13t)",
        freethreaded_python(),
        f"build it with `{BUILD_COMMAND}` (a few minutes, into {freethreaded_home()})",
    )


class InterpreterError(UserError, ValueError):
    """A --python that is not a usable interpreter, or a package its venv cannot get."""


@dataclass(frozen=True)
class Interpreter:
    """What an interpreter is, asked of the interpreter itself."""

    path: str
    version: str  # e.g. "3.13.5"
    free_threaded: bool  # built with --disable-gil (Py_GIL_DISABLED)

    @property
    def tag(self) -> str:
        return f"{self.version}{'t' if self.free_threaded else ''}"


_ASK = (
    "import json, platform, sys, sysconfig; print(json.dumps([platform.python_version(), "
    "bool(sysconfig.get_config_var('Py_GIL_DISABLED')), sys.version_info >= (3, 11)]))"
)


@functools.cache
def interpreter(python: str) -> Interpreter:
    """Ask ``python`` what it is; a path that is not a Python 3.11+ is one clear line."""
    try:
        out = subprocess.run(
            [python, "-c", _ASK], capture_output=True, text=True, timeout=60, check=True
        ).stdout
        version, free, recent = json.loads(out.strip().splitlines()[-1])
    except (OSError, subprocess.SubprocessError, ValueError, IndexError) as err:
        raise InterpreterError(
            f"--python {python}: not a Python interpreter that runs here ({err})"
        ) from None
    if not recent:
        raise InterpreterError(
            f"--python {python}: Python {version} is too old; the servers need 3.11+"
        )
    return Interpreter(python, version, free)


def packages_for(spec) -> tuple[str, ...]:
    """What a server of this spec imports beyond the standard library: its app's and
    runner's packages (conclab.base.servers), and the loop and parser it names."""
    needs = list(spec.needs)
    if spec.http == "httptools":
        needs.append("httptools")
    if spec.loop == "uvloop":
        needs.append("uvloop")
    return tuple(needs)


def venv_dir(python: Interpreter) -> Path:
    """One venv per interpreter path and version, in the lab's cache."""
    real = os.path.realpath(python.path)
    key = hashlib.sha1(f"{real}\n{python.tag}".encode()).hexdigest()[:10]
    return cache_dir() / "venvs" / f"python{python.tag}-{key}"


def server_venv(python: Interpreter, packages: tuple[str, ...]) -> Path:
    """The venv for ``python`` holding ``packages`` (made or completed now); returns its python.

    Installed one package at a time, so a failure names its package. A lock
    file keeps two starts from building the same venv at once.
    """
    from tqdm.auto import tqdm

    home = venv_dir(python)
    home.parent.mkdir(parents=True, exist_ok=True)
    venv_python = home / "bin" / "python"
    with open(home.parent / f"{home.name}.lock", "w") as lock:
        import fcntl  # POSIX (macOS and Linux), imported where it is used

        fcntl.flock(lock, fcntl.LOCK_EX)
        stamp = home / "conclab-packages.txt"
        have = set(stamp.read_text().split()) if stamp.exists() and venv_python.exists() else set()
        todo = [p for p in packages if p not in have]
        if not todo:
            return venv_python
        if not venv_python.exists():
            _run(
                [python.path, "-m", "venv", "--clear", str(home)],
                f"cannot make a venv for Python {python.tag} ({python.path})",
            )
        for package in tqdm(
            todo,
            desc=f"server venv for Python {python.tag}",
            unit="package",
            disable=len(todo) < 2 and bool(have),
        ):
            # --prefer-binary: a wheel (even an older one) rather than building from source.
            _run(
                [str(venv_python), "-m", "pip", "install", "--quiet", "--prefer-binary", package],
                f"cannot install {package} for Python {python.tag} ({python.path})",
            )
            have.add(package)
            stamp.write_text("\n".join(sorted(have)) + "\n")
    return venv_python


def _run(cmd: list[str], what: str) -> None:
    done = subprocess.run(cmd, capture_output=True, text=True)
    if done.returncode:
        lines = [line.strip() for line in (done.stderr or done.stdout).splitlines() if line.strip()]
        reason = next(
            (line for line in reversed(lines) if line.startswith("ERROR")),
            lines[-1] if lines else "",
        )
        raise InterpreterError(f"{what}: {reason}")


def prepare(spec):
    """The spec a server really starts with: ``python`` pointed into its venv and, on a
    free-threaded build, Uvicorn's "auto" loop and parser made asyncio and h11.

    A spec without ``python`` runs on the lab's own venv, unchanged.
    """
    if spec.python is None:
        return spec
    python = interpreter(spec.python)
    if python.free_threaded and spec.runner.name == "uvicorn":
        spec = dataclasses.replace(
            spec,
            loop="asyncio" if spec.loop == "auto" else spec.loop,
            http="h11" if spec.http == "auto" else spec.http,
        )
    return dataclasses.replace(spec, python=str(server_venv(python, packages_for(spec))))


# ------------------------------------------------------------ what the server says

GIL_WARNING = re.compile(
    r"The global interpreter lock \(GIL\) has been enabled to load module '([^']+)'"
)


def read_report(url: str, log: str = "") -> dict | None:
    """The server's own ``/interpreter`` answer, or None if it has no such route.

    When the build is free-threaded but the GIL is on, ``gil_enabled_by`` names
    the module that turned it on, from the interpreter's warning in the log.
    """
    with contextlib.suppress(httpx.HTTPError, ValueError):
        r = httpx.get(url + "/interpreter", timeout=5.0, trust_env=False)
        if r.status_code == 200:
            report = r.json()
            if report.get("free_threaded_build") and report.get("gil_enabled"):
                found = GIL_WARNING.findall(log)
                report["gil_enabled_by"] = found[0] if found else None
            return report
    return None


def gil_words(report: dict | None) -> str:
    """'Python 3.13.5, free-threaded, GIL off' and the like; honest when nothing was reported."""
    if not report:
        return "interpreter not reported"
    build = "free-threaded" if report.get("free_threaded_build") else "GIL build"
    state = "GIL on" if report.get("gil_enabled") else "GIL off"
    if report.get("free_threaded_build") and report.get("gil_enabled"):
        by = report.get("gil_enabled_by")
        state = f"GIL re-enabled{f' by {by}' if by else ''}"
    return f"Python {report.get('python', '?')}, {build}, {state}"


def reenabled_warning(report: dict | None) -> str | None:
    """One line when an extension turned the GIL back on in a free-threaded server."""
    if not (report and report.get("free_threaded_build") and report.get("gil_enabled")):
        return None
    by = report.get("gil_enabled_by")
    who = (
        f"the extension module {by} turned it back on"
        if by
        else "an extension module turned it back on"
    )
    return (
        f"the server's Python is free-threaded but its GIL is enabled: {who} "
        "(use --http h11 --loop asyncio, or PYTHON_GIL=0 to keep it off at your own risk)"
    )


def record(summary, server):
    """The run summary with the server's interpreter and GIL state, as it reported them."""
    report = server.interpreter
    return summary.replace(
        server_python=report.get("python") if report else None,
        server_gil_enabled=report.get("gil_enabled") if report else None,
    )


def footer_words(points: list[dict], fallback: str) -> str:
    """The interpreters a figure's servers ran on, for its footer: each distinct
    (version, GIL state) once; points saved before servers reported it say so."""
    seen = []
    for p in points:
        s = p.get("summary")
        if s is None or s.server_python is None:
            words = f"server Python {fallback} (GIL state not recorded)"
        else:
            words = (
                f"server Python {s.server_python}, GIL {'on' if s.server_gil_enabled else 'off'}"
            )
        if words not in seen:
            seen.append(words)
    return "; ".join(seen) or f"Python {fallback}"


def describe(python: str | None = None) -> str:
    """One line for ``conclab doctor`` and humans: is a free-threaded Python built, and where."""
    found = Path(python) if python else freethreaded_python()
    if found is None:
        return (
            f"free-threaded Python: not built (`{BUILD_COMMAND}` builds it into "
            f"{freethreaded_home()})"
        )
    info = interpreter(str(found))
    return f"free-threaded Python: {found} (Python {info.tag})"


if __name__ == "__main__":  # python -m conclab.processes.interpreters: where the build is
    print(describe())
    sys.exit(0 if freethreaded_python() else 1)
