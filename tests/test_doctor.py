"""`conclab doctor`: every tool, figure, notebook and
lab, each with a verdict and, when short of full, why."""

import os
import subprocess
import sys
from pathlib import Path

from conclab.base import system
from conclab.base.paths import LABS_DIR
from conclab.figures.registry import EXPERIMENTS
from conclab.teaching import doctor
from conclab.teaching.notebooks import notebook_paths

CONCLAB = str(Path(sys.executable).with_name("conclab"))
VERDICTS = (doctor.FULL, doctor.DEGRADED, doctor.NOT_AT_ALL)


def run_doctor(**env):
    done = subprocess.run(
        [CONCLAB, "doctor"], capture_output=True, text=True, timeout=60, env=dict(os.environ, **env)
    )
    return done.returncode, done.stdout


def verdicts(out):
    """{name: line} for every row that carries a verdict."""
    rows = {}
    for line in out.splitlines():
        parts = line.split()
        if len(parts) >= 2 and any(line.split(None, 1)[1].startswith(v) for v in VERDICTS):
            rows[parts[0]] = line.split(None, 1)[1]
    return rows


def test_doctor_names_the_system_python_cores_and_every_tool():
    code, out = run_doctor()
    assert code == 0, out
    assert "system      Linux" in out
    assert f"python      {sys.version.split()[0]}" in out and ("free-threaded" in out)
    assert "usable (affinity" in out and "open files  soft" in out
    for tool in ("nginx", "Chromium", "wrk"):
        line = next(line for line in out.splitlines() if line.strip().startswith(tool + " "))
        assert ": " in line  # where it is (or MISSING) and what it enables


def test_doctor_gives_every_figure_notebook_and_lab_a_verdict():
    code, out = run_doctor()
    rows = verdicts(out)
    expected = (
        [e.name for e in EXPERIMENTS]
        + [p.stem for p in notebook_paths()]
        + [p.name for p in LABS_DIR.glob("[0-9][0-9]-*") if p.is_dir()]
    )
    assert sorted(rows) == sorted(expected), out


def test_on_a_mac_without_nginx_it_says_what_degrades_and_what_does_not_run(tmp_path):
    code, out = run_doctor(
        CONCLAB_FAKE_PLATFORM="darwin", CONCLAB_NGINX=str(tmp_path / "no-nginx"), CI=""
    )
    rows = verdicts(out)
    assert code == 0, out  # the lab still runs: most of it
    assert "system      macOS" in out
    assert "unpinned: no CPU affinity on macOS" in rows["wsgi_vs_asgi"]
    assert rows["memory"].startswith(doctor.DEGRADED) and "RSS, not PSS" in rows["memory"]
    assert (
        rows["slow_clients"].startswith(doctor.NOT_AT_ALL)
        and "brew install nginx" in rows["slow_clients"]
    )
    assert "nginx cells skip" in rows["07-the-web-server-in-front"]
    assert "nginx     MISSING" in out and "install: `brew install nginx`" in out


def test_it_exits_non_zero_only_when_the_lab_cannot_run_at_all(monkeypatch, capsys):
    assert doctor.report() == 0
    monkeypatch.setattr(doctor, "CORE_MODULES", (*doctor.CORE_MODULES, "no_such_server_package"))
    assert doctor.report() == 1
    assert (
        "the lab cannot run here: no_such_server_package not installed: run make setup"
        in capsys.readouterr().out
    )


def test_free_threading_is_read_from_the_build_and_the_run(monkeypatch):
    monkeypatch.setattr(
        doctor.sysconfig, "get_config_var", lambda name: 1 if name == "Py_GIL_DISABLED" else None
    )
    monkeypatch.setattr(sys, "_is_gil_enabled", lambda: False, raising=False)
    assert "free-threaded build, GIL disabled" in doctor.python_line()
    monkeypatch.setattr(system, "platform", lambda: "darwin")
    assert "no cgroups on macOS" in doctor.cores_line()
