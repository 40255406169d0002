"""`conclab doctor`: what of the lab runs on this machine, and how to fix the rest.

It reads the lab's own registries - the figures (each Experiment's ``needs`` and
``uses``), the notebooks (which figures each shows, whether it needs nginx) and
the labs - and the operating system's answers (``base.system``), and sorts
every figure, notebook and lab into: runs fully, degraded (and how), or not at
all (and the fix). Its exit code is non-zero only when the lab cannot run at all.
"""

from __future__ import annotations

import importlib.util
import re
import shutil
import sys
import sysconfig
from dataclasses import dataclass

from ..base import system
from ..base.cores import cgroup_quota, placement, usable_cores
from ..base.paths import LABS_DIR
from ..figures.registry import EXPERIMENTS
from ..processes.nginx import find_nginx
from .notebooks import notebook_paths

FULL, DEGRADED, NOT_AT_ALL = "runs fully", "degraded", "not at all"
# What the servers and the driver import: without them nothing runs.
CORE_MODULES = (
    "gunicorn",
    "uvicorn",
    "flask",
    "fastapi",
    "httpx",
    "aiohttp",
    "psutil",
    "matplotlib",
)


@dataclass(frozen=True)
class Tool:
    name: str
    path: str | None
    enables: str
    fix: str


def tools() -> list[Tool]:
    """The system programs pip cannot install: found or missing, and what each one enables."""
    wrk = shutil.which("wrk")
    return [
        Tool(
            "nginx",
            find_nginx(),
            "nginx in front: figures slow_clients and scale_out, notebook 07, make serve-nginx",
            system.install_hint("nginx", "nginx"),
        ),
        Tool(
            "Chromium",
            system.find_chromium(),
            "the browser tests (every notebook run in JupyterLab in a real browser)",
            system.install_hint("chromium", "--cask chromium")
            + f", or set {system.CHROMIUM_VAR}=/path/to/chromium",
        ),
        Tool(
            "wrk",
            wrk,
            "a native (C) client as the reference in figures client_ceiling and cost_per_request",
            system.install_hint("wrk", "wrk"),
        ),
    ]


def gaps(found: dict[str, str | None]) -> dict[str, str]:
    """What this machine lacks, by the key an Experiment's
    ``uses`` names, and how that degrades it."""
    out = {}
    if not found.get("wrk"):
        out["wrk"] = "no wrk reference line (install wrk)"
    if system.memory_kind() != "PSS":
        out["pss"] = f"memory as {system.memory_label()}"
    if not system.has_schedstat():
        out["schedstat"] = (
            f"server CPU from psutil's clock ticks, not schedstat (coarser on {system.os_name()})"
        )
    return out


def unpinned() -> list[str]:
    """Every figure degrades the same way when nothing can be pinned."""
    return (
        [] if system.can_pin() else [f"unpinned: {system.unpinned_reason()} (points spread wider)"]
    )


def figure_status(exp, found_gaps: dict[str, str]) -> tuple[str, list[str]]:
    """(status, reasons) of one figure, leaving out what every figure shares (unpinned)."""
    try:
        missing = exp.missing()
    except system.ProgramMissing as err:  # CI=true raises: here a missing program is a finding
        missing = str(err).split(" (CI=true")[0]
    if missing:
        return NOT_AT_ALL, [missing]
    how = [found_gaps[key] for key in exp.uses if key in found_gaps]
    return (DEGRADED if how else FULL), how


def notebook_status(
    path, figures: dict[str, tuple[str, list[str]]], nginx: str | None
) -> tuple[str, list[str]]:
    """(status, reasons) of one notebook: its nginx cells, and the figures it shows."""
    text = path.with_suffix(".py").read_text(encoding="utf-8")
    how = []
    if "nginx_missing" in text and not nginx:
        how.append("its nginx cells skip (install nginx)")
    for name in dict.fromkeys(re.findall(r'REGISTRY\["([a-z_]+)"\]', text)):
        status, why = figures.get(name, (FULL, []))
        if status != FULL:
            # a skipped figure's reason is in the figures section above
            how.append(
                f"figure {name} skipped"
                if status == NOT_AT_ALL
                else f"figure {name}: {'; '.join(why)}"
            )
    return (DEGRADED if how else FULL), how


def lab_status(folder) -> tuple[str, list[str]]:
    if not (folder / "grader").is_dir():
        return NOT_AT_ALL, ["no grader/ folder"]
    if importlib.util.find_spec("pytest") is None:
        return NOT_AT_ALL, ["grading needs pytest: make setup installs it"]
    return FULL, []


def cannot_run() -> str | None:
    """Why nothing of the lab can run here, or None."""
    if system.native_windows():
        return system.WINDOWS_REFUSAL
    absent = [m for m in CORE_MODULES if importlib.util.find_spec(m) is None]
    if absent:
        return f"{', '.join(absent)} not installed: run make setup"
    return None


def python_line() -> str:
    built = bool(sysconfig.get_config_var("Py_GIL_DISABLED"))
    enabled = getattr(sys, "_is_gil_enabled", lambda: True)()
    if built:
        gil = "free-threaded build, GIL " + (
            "re-enabled (an extension asked for it)" if enabled else "disabled"
        )
    else:
        gil = "GIL build (not free-threaded)"
    return f"{sys.version.split()[0]} ({sys.executable}), {gil}"


def cores_line() -> str:
    affinity = system.affinity()
    aff = f"affinity {len(affinity)}" if affinity is not None else system.unpinned_reason()
    if system.has_cgroups():
        quota = cgroup_quota()
        quota_text = "no cgroup CPU quota" if quota is None else f"cgroup CPU quota {quota:g}"
    else:
        quota_text = f"no cgroups on {system.os_name()}"
    return f"{usable_cores()} usable ({aff}; {quota_text}); {placement()}"


def files_line() -> str:
    limits = system.open_files_limit()
    if limits is None:
        return f"no open-files limit to read on {system.os_name()}"
    soft, hard = limits
    need = 256 + 64  # a 256-user run's sockets, and some to spare
    advice = (
        "enough for a 256-user run"
        if soft >= need
        else (
            f"below the {need} a 256-user run needs: the lab raises it when it starts a server"
            if hard >= need
            else f"below the {need} a 256-user run needs: run `ulimit -n {need}` first"
        )
    )
    return f"soft {soft}, hard {hard} ({advice})"


def report(out=None) -> int:
    """Print the whole report to ``out`` (stdout);
    return 1 when the lab cannot run at all, else 0."""
    out = out or sys.stdout

    def say(text=""):
        print(text, file=out)

    fatal = cannot_run()
    say("Concurrency Lab doctor")
    say(f"  system      {system.os_name()} ({system.platform()})")
    say(f"  python      {python_line()}")
    say(f"  cores       {cores_line()}")
    say(f"  open files  {files_line()}")
    for note in system.notes():
        say(f"  note        {note}")
    say()
    say("system tools")
    found = {}
    for tool in tools():
        found[tool.name.lower()] = tool.path
        where = tool.path or "MISSING"
        fix = "" if tool.path else f" - install: {tool.fix}"
        say(f"  {tool.name:<9} {where}: {tool.enables}{fix}")
    found_gaps = gaps(found)
    counts = {FULL: 0, DEGRADED: 0, NOT_AT_ALL: 0}

    def row(name, status, why, pinned=True):
        if status != NOT_AT_ALL and pinned:
            why = why + unpinned()
            status = DEGRADED if why else FULL
        counts[status] += 1
        say(f"  {name:<32} {status}" + (f": {'; '.join(why)}" if why else ""))

    say()
    say("figures (make charts)")
    figures = {}
    for exp in EXPERIMENTS:
        figures[exp.name] = figure_status(exp, found_gaps)
        row(exp.name, *figures[exp.name])
    say()
    say("notebooks (make jupyter, make notebooks)")
    for path in notebook_paths():
        row(path.stem, *notebook_status(path, figures, found.get("nginx")))
    say()
    say("labs (make grade LAB=NN)")
    for folder in sorted(LABS_DIR.glob("[0-9][0-9]-*")):
        if folder.is_dir():
            row(
                folder.name, *lab_status(folder), pinned=False
            )  # graders check behaviour, not spread
    say()
    if fatal:
        say(f"the lab cannot run here: {fatal}")
        return 1
    say(
        f"the lab runs here: {counts[FULL]} fully, "
        f"{counts[DEGRADED]} degraded, {counts[NOT_AT_ALL]} not at all"
    )
    return 0
