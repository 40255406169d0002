"""The OS's answers (conclab.base.system), and the lab as a Mac or Windows student runs it.

No Mac is at hand, so the "as on macOS" tests run the real `conclab` command in
an interpreter without the Linux-only calls (a sitecustomize deletes
os.sched_getaffinity and os.sched_setaffinity) while $CONCLAB_FAKE_PLATFORM
makes the lab's own OS module answer "darwin". They check the honest labels
the student reads, not only the exit code.
"""

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import psutil
import pytest

from conclab.base import cores, system
from conclab.base.paths import LABS_DIR, ROOT
from conclab.base.specs import ServerSpec

CONCLAB = str(Path(sys.executable).with_name("conclab"))
SITECUSTOMIZE = """\
import os
for name in ("sched_getaffinity", "sched_setaffinity"):  # what macOS's os module lacks
    if hasattr(os, name):
        delattr(os, name)
"""
LAB01 = next(LABS_DIR.glob("01-*"))


@pytest.fixture
def as_macos(monkeypatch):
    monkeypatch.setenv(system.FAKE_PLATFORM_VAR, "darwin")


@pytest.fixture(scope="module")
def mac_env(tmp_path_factory):
    """The environment of a subprocess that behaves as the lab on macOS would."""
    folder = tmp_path_factory.mktemp("macos")
    (folder / "sitecustomize.py").write_text(SITECUSTOMIZE)
    path = os.pathsep.join(p for p in (str(folder), os.environ.get("PYTHONPATH")) if p)
    return dict(
        os.environ,
        PYTHONPATH=path,
        PYTHONUNBUFFERED="1",
        CONCLAB_QUICK="1",
        **{system.FAKE_PLATFORM_VAR: "darwin"},
    )


def run(args, env, timeout=120, **kw):
    done = subprocess.run(args, capture_output=True, text=True, timeout=timeout, env=env, **kw)
    return done.returncode, done.stdout + done.stderr


# --- the answers, in this process ---------------------------------------------------


def test_the_platform_is_linux_here_and_the_variable_overrides_it(monkeypatch):
    assert system.platform() == "linux"
    monkeypatch.setenv(system.FAKE_PLATFORM_VAR, "darwin")
    assert (system.platform(), system.os_name()) == ("darwin", "macOS")
    monkeypatch.setenv(system.FAKE_PLATFORM_VAR, "win32")
    assert system.native_windows()


def test_on_linux_the_driver_is_pinned_and_says_to_which_core():
    if len(os.sched_getaffinity(0)) < 2:
        pytest.skip("pinning the driver apart needs two usable cores")
    assert system.can_pin()
    assert system.pinned_label([1]) == "pinned to core 1"
    assert cores.placement().startswith(f"driver pinned to core {cores.client_cpu()}")
    assert system.pinned_command(1, ["wrk"])[:3] == (
        ["taskset", "-c", "1"] if shutil.which("taskset") else ["wrk"]
    )


def test_on_macos_nothing_is_pinned_and_every_label_says_so(as_macos):
    assert not system.can_pin() and not system.pin([0])
    assert system.pinned_label([1]) == "unpinned: no CPU affinity on macOS"
    assert cores.client_cpu() is None
    assert cores.server_cpus() == system.cpu_ids() == tuple(range(os.cpu_count()))
    assert cores.placement() == "unpinned: no CPU affinity on macOS"
    assert system.pinned_command(1, ["wrk", "-t1"]) == ["wrk", "-t1"]
    assert system.thread_wait_s() is None  # not measured is not zero
    assert system.server_env() == {"OBJC_DISABLE_INITIALIZE_FORK_SAFETY": "YES"}
    assert not system.set_parent_death_signal(15)


def test_memory_is_pss_on_linux_and_rss_labelled_rss_elsewhere(monkeypatch):
    me = psutil.Process()
    assert system.memory_kind() == "PSS"
    pss = system.memory_of(me)
    assert pss == pytest.approx(me.memory_full_info().pss, rel=0.05)
    monkeypatch.setenv(system.FAKE_PLATFORM_VAR, "darwin")
    assert system.memory_label().startswith("RSS, not PSS")
    assert system.memory_of(me) == pytest.approx(me.memory_info().rss, rel=0.05)


def test_server_cpu_time_is_counted_with_or_without_schedstat(monkeypatch):
    # The child spins for 0.3 s of CPU, says so, and waits. (Waiting instead until
    # psutil counts 0.3 s could wait forever: its clock-tick count can stop short.)
    busy = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import time\nt=time.process_time()\nwhile time.process_time()-t<0.3: pass\n"
            "print('spun', flush=True)\ninput()",
        ],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert busy.stdout.readline().strip() == "spun"
        linux = system.process_cpu_ns(busy.pid)
        monkeypatch.setenv(system.FAKE_PLATFORM_VAR, "darwin")
        other = system.process_cpu_ns(busy.pid)
    finally:
        busy.communicate("\n", timeout=10)
    assert linux >= 0.25e9 and other >= 0.25e9
    assert abs(linux - other) < 0.1e9


def test_a_spec_asks_the_system_nothing_until_it_starts(monkeypatch):
    monkeypatch.delattr(os, "sched_getaffinity")
    monkeypatch.setenv(system.FAKE_PLATFORM_VAR, "darwin")
    spec = ServerSpec("asgi", cpus="all")
    assert spec.resolved_cpus() == tuple(range(os.cpu_count()))
    assert ServerSpec("wsgi").resolved_cpus() == tuple(range(os.cpu_count()))


@pytest.mark.parametrize(("hard", "fixed"), [(4096, True), (300, False)])
def test_a_low_open_files_limit_is_raised_or_named(hard, fixed):
    code = (
        "import resource\n"
        f"resource.setrlimit(resource.RLIMIT_NOFILE, (256, {hard}))  # macOS starts at 256\n"
        "from conclab.base import system\n"
        "print(system.raise_open_files_limit(256))\n"
        "print(resource.getrlimit(resource.RLIMIT_NOFILE)[0])\n"
    )
    status, out = run([sys.executable, "-c", code], os.environ)
    note, soft = out.strip().splitlines()
    assert status == 0, out
    if fixed:
        assert note == "None" and int(soft) >= 256 + 64
    else:
        assert "ulimit -n 320" in note and int(soft) == 300


def test_on_macos_servers_start_with_the_fork_safety_variable(as_macos):
    from conclab.processes.launcher import serve

    with serve(ServerSpec("wsgi")) as server:
        envs = [psutil.Process(pid).environ() for pid in server.worker_pids]
    assert envs and all(env.get("OBJC_DISABLE_INITIALIZE_FORK_SAFETY") == "YES" for env in envs)


def test_a_figure_footer_says_unpinned(as_macos):
    from matplotlib.figure import Figure

    from conclab.figures.plotting import footer
    from conclab.measuring.results import machine

    fig = Figure()
    footer(fig, {"machine": machine(), "client_cpu": cores.client_cpu(), "points": []}, note=False)
    text = " ".join(t.get_text() for t in fig.texts)
    assert "unpinned: no CPU affinity on macOS" in text and "spread wider" in text


# --- the lab as on macOS, a real CLI in an interpreter without the Linux calls -------------


def test_the_subprocess_really_lacks_the_linux_calls(mac_env):
    status, out = run(
        [
            sys.executable,
            "-c",
            "import os; print(hasattr(os, 'sched_getaffinity'), hasattr(os, 'sched_setaffinity'))",
        ],
        mac_env,
    )
    assert out.strip() == "False False", out


def test_every_module_a_student_imports_loads_without_the_linux_calls(mac_env):
    modules = [
        "conclab.processes.stack",
        "conclab.teaching.teach",
        "conclab.figures.registry",
        "conclab.measuring.calibrate",
        "conclab.labs.grading",
        "conclab.cli",
    ]
    status, out = run(
        [
            sys.executable,
            "-c",
            "import importlib, sys\nfor m in sys.argv[1:]: importlib.import_module(m)",
            *modules,
        ],
        mac_env,
    )
    assert status == 0, out


def test_bench_runs_unpinned_and_says_so(mac_env):
    status, out = run(
        [
            CONCLAB,
            "bench",
            "--server",
            "wsgi",
            "--path",
            "/io?ms=20",
            "--concurrency",
            "4",
            "--duration",
            "1",
            "--no-progress",
        ],
        mac_env,
    )
    assert status == 0, out
    assert "(unpinned: no CPU affinity on macOS; " in out  # the server's line
    assert "client      unpinned: no CPU affinity on macOS" in out
    assert "waiting for a CPU not measured (no schedstat on macOS)" in out
    assert "0% waiting" not in out


@pytest.mark.labs
def test_grade_gives_the_solution_full_marks(mac_env):
    status, out = run([CONCLAB, "grade", "01"], mac_env, timeout=180)
    assert status == 0, out
    score = re.search(r"^score: (\d+)/(\d+)", out, re.MULTILINE)
    assert score and score[1] == score[2], out  # full marks, in points
    assert "AttributeError" not in out


@pytest.mark.labs
def test_grade_gives_a_broken_copy_its_hint(mac_env, tmp_path):
    copy = tmp_path / LAB01.name
    shutil.copytree(LAB01, copy)
    shutil.copy(LAB01 / "instructor" / "mutants" / "wrong-answers" / "app.py", copy / "app.py")
    status, out = run([CONCLAB, "grade", "01", "--submission", str(copy)], mac_env, timeout=180)
    assert status != 0, out
    score = re.search(r"^score: (\d+)/(\d+)", out, re.MULTILINE)
    assert score and 0 < int(score[1]) < int(score[2]), out  # marked down, not zero
    assert "Look at sleep() in app.py." in out and "AttributeError" not in out


@pytest.mark.slow
def test_a_quick_chart_is_drawn_and_its_data_says_unpinned(mac_env, tmp_path):
    status, out = run(
        [
            CONCLAB,
            "charts",
            "--only",
            "timelines",
            "--out",
            str(tmp_path),
            "--results",
            str(tmp_path / "r"),
        ],
        mac_env,
        timeout=240,
    )
    assert status == 0, out
    assert (tmp_path / "timelines.png").stat().st_size > 10_000
    data = json.loads((tmp_path / "data" / "timelines.json").read_text())
    assert data["machine"]["pinning"] == "unpinned: no CPU affinity on macOS"
    assert data["machine"]["memory"] == "RSS" and data["client_cpu"] is None


# --- native Windows: one sentence, not a traceback --------------------------------------


def test_conclab_refuses_native_windows_in_one_sentence():
    env = dict(os.environ, **{system.FAKE_PLATFORM_VAR: "windows"})
    done = subprocess.run(
        [CONCLAB, "bench", "--server", "asgi", "--path", "/hello"],
        capture_output=True,
        text=True,
        timeout=30,
        env=env,
    )
    assert done.returncode != 0 and done.stdout == ""
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and "WSL2" in lines[0] and "dev container" in lines[0], done.stderr
    assert "Traceback" not in done.stderr


def test_make_refuses_native_windows_in_one_sentence():
    if not shutil.which("make"):
        pytest.skip("make is not installed: apt-get install make")
    done = subprocess.run(
        ["make", "-C", str(ROOT), "OS=Windows_NT", "help"],
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert done.returncode != 0
    assert "WSL2" in done.stderr and "dev container" in done.stderr, done.stderr
    assert "make help" not in done.stdout  # it stopped before listing anything
