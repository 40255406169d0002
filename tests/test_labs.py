"""The homework graders can be trusted.

Each grader passes its lab's solution, fails the untouched handout on exactly
the checks a student has to fix, and gives the verdict its instructor/checks.toml
promises for known-wrong (and alternative right) answers. The handout carries no
solution text and no instructor-only file. Real servers, real sockets: every
grader run here is `conclab grade`, exactly what an instructor or student runs.
"""

import contextlib
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import tomllib
from pathlib import Path

import pytest

from conclab.base.errors import LabError, MarkerError
from conclab.labs import handout as handouts
from conclab.labs import markers, tracebacks

CONCLAB = str(Path(sys.executable).with_name("conclab"))
LABS = handouts.all_labs()
LAB_IDS = [lab.name for lab in LABS]
CHECK_LINE = re.compile(r"^  (PASS|FAIL)  (\S+) .*\[([\d.]+)/([\d.]+)\]$", re.MULTILINE)


def conclab(*args, timeout=180):
    return subprocess.run([CONCLAB, *args], capture_output=True, text=True, timeout=timeout)


def grade(lab, submission=None):
    """Run `conclab grade`; return (exit code, {check: passed}, output, seconds)."""
    args = ["grade", lab.name[:2]] + (["--submission", str(submission)] if submission else [])
    start = time.monotonic()
    done = conclab(*args)
    seconds = time.monotonic() - start
    output = done.stdout + done.stderr
    checks = {name: verdict == "PASS" for verdict, name, _, _ in CHECK_LINE.findall(done.stdout)}
    return done.returncode, checks, output, seconds


def points(output):
    """(points earned, points possible) summed over
    the check lines: what the score line must say."""
    lines = CHECK_LINE.findall(output)
    return f"{sum(float(got) for *_, got, _ in lines):g}/{sum(float(most) for *_, most in lines):g}"


def expectations(lab):
    return tomllib.loads((lab / "instructor" / "checks.toml").read_text())


def skip_unless_buildable(lab):
    """A lab whose checks.toml says `needs = "freethreaded"` is proven only where that build
    exists; elsewhere skipped with the command that builds it (under CI=true: failed)."""
    if expectations(lab).get("needs") == "freethreaded":
        from conclab.processes.interpreters import freethreaded_missing

        why = freethreaded_missing()
        if why:
            pytest.skip(why)


@pytest.fixture(scope="session")
def handout(tmp_path_factory):
    """The student handout, written by the real command (`make handout` runs it)."""
    out = tmp_path_factory.mktemp("dist") / "handout"
    done = conclab("handout", "--out", str(out))
    assert done.returncode == 0, done.stderr
    return out


def submission_from_handout(handout, lab, tmp_path, replace_from=None):
    """A student's copy of the lab: the handout's folder, optionally with files replaced."""
    folder = tmp_path / lab.name
    shutil.copytree(handout / lab.name, folder)
    if replace_from:
        for path in Path(replace_from).iterdir():
            shutil.copy(path, folder / path.name)
    return folder


# --- the graders ------------------------------------------------------------------


@pytest.mark.labs
@pytest.mark.parametrize("lab", LABS, ids=LAB_IDS)
def test_grader_passes_the_solution(lab):
    skip_unless_buildable(lab)
    code, checks, output, seconds = grade(lab)
    assert code == 0 and checks and all(checks.values()), output
    score = points(output)
    assert score.split("/")[0] == score.split("/")[1], output
    assert re.search(rf"^score: {score}$", output, re.MULTILINE), output
    assert seconds < 60, f"{lab.name}: the grader took {seconds:.0f} s (budget 60 s)"


@pytest.mark.labs
@pytest.mark.parametrize("lab", LABS, ids=LAB_IDS)
def test_grader_fails_the_untouched_starter(lab, handout, tmp_path):
    skip_unless_buildable(lab)
    code, checks, output, seconds = grade(lab, submission_from_handout(handout, lab, tmp_path))
    failed = {name for name, ok in checks.items() if not ok}
    assert code != 0, output
    assert failed == set(expectations(lab)["starter_fails"]), output
    # Each failed check says under its line why it failed and where to look.
    hinted = re.findall(r"^  FAIL  (\S+) - .*\n {8}\S", output, re.MULTILINE)
    assert set(hinted) == failed, output
    assert re.search(rf"^score: {points(output)}$", output, re.MULTILINE), output
    assert seconds < 60, f"{lab.name}: the grader took {seconds:.0f} s (budget 60 s)"


MUTANTS = [
    pytest.param(lab, name, id=f"{lab.name}-{name}")
    for lab in LABS
    for name in sorted(expectations(lab).get("mutants", {}))
]


@pytest.mark.labs
@pytest.mark.parametrize(("lab", "mutant"), MUTANTS)
def test_grader_gives_the_promised_verdict_on_known_answers(lab, mutant, handout, tmp_path):
    """Every check can fail (a mutant proves it), and a right answer written differently passes."""
    skip_unless_buildable(lab)
    replacement = lab / "instructor" / "mutants" / mutant
    code, checks, output, _ = grade(
        lab, submission_from_handout(handout, lab, tmp_path, replacement)
    )
    failed = {name for name, ok in checks.items() if not ok}
    assert failed == set(expectations(lab)["mutants"][mutant]["fails"]), output
    assert (code == 0) == (not failed), output


def test_every_check_is_shown_failing_by_the_starter_or_a_mutant():
    """A check that nothing ever fails proves nothing: the starter or a mutant must fail it."""
    for lab in LABS:
        grader_text = "\n".join(p.read_text() for p in (lab / "grader").glob("test_*.py"))
        checks = set(re.findall(r"^def test_(\w+)", grader_text, re.MULTILINE))
        promised = expectations(lab)
        failing = set(promised["starter_fails"])
        for mutant in promised.get("mutants", {}).values():
            failing |= set(mutant["fails"])
        base = {name.split("[")[0] for name in failing}
        assert checks <= base, f"{lab.name}: never shown failing: {sorted(checks - base)}"


@pytest.mark.labs
def test_editing_the_graders_copy_in_a_submission_changes_nothing(handout, tmp_path):
    lab = handouts.find_lab("02")
    folder = submission_from_handout(
        handout, lab, tmp_path, lab / "instructor" / "mutants" / "broken-config"
    )
    for test in (folder / "grader").glob("test_*.py"):
        test.write_text("def test_everything_passes():\n    pass\n")
    code, checks, output, _ = grade(lab, folder)
    promised = expectations(lab)["mutants"]["broken-config"]["fails"]
    assert code != 0, output
    assert {n for n, ok in checks.items() if not ok} == set(promised), output


def test_a_gunicorn_config_file_decides_workers_and_threads(tmp_path):
    """Lab 02 relies on it: ServerSpec(config=...) runs Gunicorn with the file's settings."""
    from conclab.base.specs import ServerSpec
    from conclab.processes.launcher import serve

    conf = tmp_path / "gunicorn.conf.py"
    conf.write_text("workers = 2\nthreads = 3\n")
    spec = ServerSpec("wsgi", config=str(conf))
    command = spec.command(8000)
    assert "--config" in command and "--workers" not in command and "--threads" not in command
    with serve(spec) as server:
        deadline = time.monotonic() + 15
        while len(server.worker_pids) < 2 and time.monotonic() < deadline:
            time.sleep(0.1)
        assert len(server.worker_pids) == 2
    with pytest.raises(ValueError, match="config"):
        ServerSpec("asgi", config=str(conf))


# --- the command line ---------------------------------------------------------------


@pytest.mark.parametrize("args", [["grade", "99"], ["grade", "x1"], ["grade"]])
def test_grade_with_a_bad_lab_is_one_line_and_exit_2(args):
    done = conclab(*args, timeout=60)
    assert done.returncode == 2
    assert done.stderr.startswith("conclab: error: ") and done.stderr.count("\n") == 1, done.stderr
    assert "Traceback" not in done.stderr


def test_grade_with_a_missing_submission_is_one_line_and_exit_2(tmp_path):
    done = conclab("grade", "01", "--submission", str(tmp_path / "nope"), timeout=60)
    assert done.returncode == 2
    assert "submission folder not found" in done.stderr and done.stderr.count("\n") == 1, (
        done.stderr
    )


def test_lab_numbers_are_found_in_any_spelling():
    first = LABS[0]
    assert (
        handouts.find_lab("1") == handouts.find_lab("01") == handouts.find_lab(first.name) == first
    )
    with pytest.raises(LabError, match="the labs are 01"):
        handouts.find_lab("7")


# --- the handout -----------------------------------------------------------------------


def solution_and_public_lines(text):
    """(lines inside solution blocks, lines outside them), found by a parser of its
    own - not the one that writes the handout."""
    inside, secret, public = False, set(), set()
    for line in text.splitlines():
        words = line.strip().lstrip("#").strip()
        if words in ("BEGIN SOLUTION", "END SOLUTION"):
            inside = words == "BEGIN SOLUTION"
            continue
        body = line.strip()
        if inside:
            secret.add(body)
        else:
            public |= {body, body.lstrip("#").strip()}  # a starter line, once made live
    return secret, public


def test_handout_contains_no_solution_text(handout):
    leaks = []
    for lab in LABS:
        secret, public = set(), set()
        for path in lab.rglob("*"):
            if (
                path.is_file()
                and "instructor" not in path.name.lower()
                and "instructor" not in path.parts
            ):
                inside, outside = solution_and_public_lines(path.read_text(errors="replace"))
                secret, public = secret | inside, public | outside
        # Lines that also occur outside the solutions (`import asyncio`) give nothing away.
        secret = {s for s in secret - public if len(s) >= 8 and re.search(r"[A-Za-z]{3}", s)}
        assert secret, f"{lab.name}: no solution blocks found - nothing to hide?"
        for path in (handout / lab.name).rglob("*"):
            if path.is_file():
                text = path.read_text(errors="replace")
                lines = {line.strip() for line in text.splitlines()}
                leaks += [f"{path}: {line}" for line in sorted(lines & secret)]
                if re.search(r"(BEGIN|END) (SOLUTION|STARTER)", text):
                    leaks.append(f"{path}: a marker line")
    assert not leaks, "\n".join(leaks)


def test_handout_leaves_out_instructor_files(handout):
    for lab in LABS:
        names = [p.relative_to(handout) for p in (handout / lab.name).rglob("*")]
        assert not [
            n for n in names if any(part.lower().startswith("instructor") for part in n.parts)
        ]
        assert not [n for n in names if "__pycache__" in n.parts]
        assert (handout / lab.name / "README.md").is_file()
        assert sorted((handout / lab.name / "grader").glob("test_*.py")), "graders are handed out"


def test_handout_has_an_index_linking_every_lab_with_its_goal(handout):
    index = (handout / "README.md").read_text(encoding="utf-8")
    for lab in LABS:
        assert f"]({lab.name}/README.md): " in index, f"{lab.name} missing from the handout index"
    assert "make grade LAB=" in index and "SUBMISSION=" in index


def test_handout_code_compiles_and_passes_the_linter(handout):
    for path in handout.rglob("*.py"):
        compile(path.read_text(), str(path), "exec")
    root = Path(__file__).resolve().parents[1]
    ruff = Path(sys.executable).with_name("ruff")
    done = subprocess.run(
        [str(ruff), "check", "--no-cache", "--config", str(root / "pyproject.toml"), str(handout)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stdout + done.stderr


def test_handout_is_rewritten_not_merged(handout):
    stale = handout / LABS[0].name / "stale.txt"
    stale.write_text("left over from an older handout")
    assert conclab("handout", "--out", str(handout)).returncode == 0
    assert not stale.exists()


# --- the markers -------------------------------------------------------------------------


def test_markers_cut_solutions_and_make_starters_live():
    source = (
        "def f(ms):\n"
        "    ### BEGIN SOLUTION\n"
        "    await asyncio.sleep(ms)\n"
        "    ### END SOLUTION\n"
        "    ### BEGIN STARTER\n"
        "    # time.sleep(ms)\n"
        "    #\n"
        "    # # a comment stays a comment\n"
        "    ### END STARTER\n"
        "    return ms\n"
    )
    assert markers.student_version(source) == (
        "def f(ms):\n    time.sleep(ms)\n\n    # a comment stays a comment\n    return ms\n"
    )
    assert markers.solution_lines(source) == ["    await asyncio.sleep(ms)\n"]


@pytest.mark.parametrize(
    ("source", "problem"),
    [
        ("# BEGIN SOLUTION\nx = 1\n", "x.py:1: BEGIN SOLUTION is never closed"),
        ("x = 1\n# END SOLUTION\n", "x.py:2: END SOLUTION without a matching BEGIN SOLUTION"),
        (
            "# BEGIN SOLUTION\n# BEGIN STARTER\n",
            "x.py:2: BEGIN STARTER inside the SOLUTION block opened at line 1",
        ),
        ("# BEGIN STARTER\nx = 1\n# END STARTER\n", "x.py:2: a STARTER line must be commented out"),
        ("x = 1  # BEGIN SOLUTION\n", "x.py: solution marker words left outside a marker line"),
    ],
)
def test_a_malformed_marker_is_an_error_naming_file_and_line(source, problem):
    with pytest.raises(MarkerError) as caught:
        markers.student_version(source, "x.py")
    assert str(caught.value).startswith(problem)


def test_a_marker_error_leaves_the_previous_handout_in_place(tmp_path):
    source = tmp_path / "labs" / "01-demo"
    (source / "grader").mkdir(parents=True)
    (source / "app.py").write_text("x = 1\n")
    (source / "instructor_notes.md").write_text("hidden\n")
    (source / "grader" / "instructor_test_hidden.py").write_text("def test_x():\n    pass\n")
    out = tmp_path / "out"
    handouts.write_handout(out, labs_dir=tmp_path / "labs")
    assert sorted(p.name for p in (out / "01-demo").rglob("*")) == ["app.py", "grader"]
    (source / "app.py").write_text("# BEGIN SOLUTION\nx = 2\n")
    with pytest.raises(MarkerError):
        handouts.write_handout(out, labs_dir=tmp_path / "labs")
    assert (out / "01-demo" / "app.py").read_text() == "x = 1\n"
    assert sorted(p.name for p in out.iterdir()) == [
        "01-demo",
        "README.md",
    ]  # no half-written staging folder


# --- what a student meets: commands as written, their own traceback, the wrong folder --------

ROOT = Path(__file__).resolve().parents[1]
SH_BLOCK = re.compile(r"^( *)```sh\n(.*?)^\1```", re.MULTILINE | re.DOTALL)
ANOTHER_TERMINAL = "# in another terminal:"
# what `make try` prints once its servers are up (conclab.labs.trying)
READY = "Serving until Ctrl-C"
PLACEHOLDER = re.compile(r"path/to/your/(\d\d-[a-z0-9-]+)")
BROKEN = re.compile(
    r"command not found|No such file or directory|No rule to make target|conclab: error:"
    r"|Traceback \(most recent call last\)"
)


def readme_blocks(readme):
    """The README's ```sh blocks: (server, clients) - the part before '# in another terminal:'
    runs until the rest has run; a block without that line is all clients, and if it talks to
    127.0.0.1:8000, it runs against the server of the block before."""
    blocks = []
    for indent, body in SH_BLOCK.findall(readme.read_text(encoding="utf-8")):
        lines = [line[len(indent) :] for line in body.splitlines()]
        if ANOTHER_TERMINAL in [line.strip() for line in lines]:
            at = [line.strip() for line in lines].index(ANOTHER_TERMINAL)
            blocks.append(("\n".join(lines[:at]), "\n".join(lines[at + 1 :])))
        elif "127.0.0.1:8000" in body and blocks and blocks[-1][0]:
            # Talks to the server the block before started: runs while that one runs again.
            blocks.append((blocks[-1][0], "\n".join(lines)))
        else:
            blocks.append((None, "\n".join(lines)))
    return blocks


def as_written(command, copies, port):
    """The command with the student's folder and port filled in: nothing else changes."""
    command = PLACEHOLDER.sub(lambda m: str(copies[m.group(1)]), command)
    return command.replace("127.0.0.1:8000", f"127.0.0.1:{port}")


def port_open(port):
    with socket.socket() as s:
        return s.connect_ex(("127.0.0.1", port)) == 0


def run_server_then_clients(server, clients, env):
    """Start `server` in a session of its own, wait for its port, run `clients`, stop the server."""
    port = int(env["PORT"])
    with tempfile.TemporaryFile(mode="w+") as log:
        proc = subprocess.Popen(
            ["bash", "-c", server],
            cwd=ROOT,
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        try:
            # Ready: listening, and for `make try` every worker booted (it says "Serving").
            deadline = time.monotonic() + 60
            while not (port_open(port) and ("make try" not in server or READY in read_log(log))):
                assert proc.poll() is None and time.monotonic() < deadline, (
                    f"`{server}` did not listen on {port}:\n{read_log(log)}"
                )
                time.sleep(0.2)
            done = subprocess.run(
                ["bash", "-c", clients],
                cwd=ROOT,
                env=env,
                capture_output=True,
                text=True,
                timeout=120,
            )
        finally:
            for sig in (signal.SIGTERM, signal.SIGKILL):  # its servers go with it (the guard)
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(proc.pid, sig)
                try:
                    proc.wait(timeout=15)
                    break
                except subprocess.TimeoutExpired:
                    continue
        deadline = time.monotonic() + 15
        while port_open(port) and time.monotonic() < deadline:
            time.sleep(0.2)
        assert not port_open(port), f"`{server}` left a server on port {port}"
        return read_log(log) + done.stdout + done.stderr


def read_log(log):
    log.flush()
    log.seek(0)
    return log.read()


@pytest.mark.labs
@pytest.mark.parametrize("lab", LABS, ids=LAB_IDS)
def test_every_readme_command_runs_as_written_from_a_handout_copy(lab, handout, tmp_path):
    """Each ```sh block of the handout's README, run from the repository root with the
    student's folder and a free port filled in; `make try` shows the problem the lab is about.
    A `make grade` block is run by make as a dry run: it must run `conclab grade` on the copy,
    whose verdict on the untouched handout test_grader_fails_the_untouched_starter checks."""
    skip_unless_buildable(lab)
    from conclab.processes.launcher import free_port

    if subprocess.run(["make", "-q", ".venv/.installed"], cwd=ROOT).returncode != 0:
        pytest.skip(
            "the venv is older than pyproject.toml: `make setup` first (make would reinstall it)"
        )
    copies = {
        name: submission_from_handout(handout, handouts.find_lab(name), tmp_path / name)
        for name in {m for m in PLACEHOLDER.findall((handout / lab.name / "README.md").read_text())}
    }
    blocks = readme_blocks(handout / lab.name / "README.md")
    assert blocks, f"{lab.name}: its README has no ```sh block to try"
    tried = ""
    for server, clients in blocks:
        port = free_port()
        env = dict(os.environ, PORT=str(port))
        clients = as_written(clients, copies, port)
        grades = server is None and all(
            line.startswith("make grade ") for line in clients.splitlines() if line.strip()
        )
        if grades:
            # The grading itself is test_grader_fails_the_untouched_starter's (the same
            # `conclab grade` on the same untouched copy): here make only says what it runs.
            done = subprocess.run(
                ["bash", "-c", clients],
                cwd=ROOT,
                env=dict(env, MAKEFLAGS="n"),
                capture_output=True,
                text=True,
                timeout=60,
            )
            output = done.stdout + done.stderr
            assert done.returncode == 0, output
            for folder in (f for f in copies.values() if str(f) in clients):
                lab_no = folder.name[:2]
                assert re.search(
                    rf"/conclab grade {lab_no} --submission {re.escape(str(folder))}\s", output
                ), f"{lab.name}: `{clients}` does not run `conclab grade` on the copy:\n{output}"
            continue
        if server is None:
            done = subprocess.run(
                ["bash", "-c", clients],
                cwd=ROOT,
                env=env,
                capture_output=True,
                text=True,
                timeout=180,
            )
            output = done.stdout + done.stderr
        else:
            output = run_server_then_clients(as_written(server, copies, port), clients, env)
        assert not BROKEN.search(output), (
            f"{lab.name}: `{server or ''}\n{clients}` did not run as written:\n{output}"
        )
        tried += output
    shows = expectations(lab).get("readme", {}).get("shows")
    assert shows, (
        f"{lab.name}: instructor/checks.toml needs [readme] shows = '<regex>' (what make try shows)"
    )
    assert re.search(shows, tried), (
        f"{lab.name}: trying the untouched handout did not show {shows!r}:\n{tried}"
    )


def test_lab_readmes_name_only_what_a_handout_copy_or_the_repository_has(handout):
    """A relative link must resolve inside the student's
    copy; a notebook is named by its repository path."""
    link = re.compile(r"\]\(([^)#\s]+)")
    for lab in LABS:
        copy = handout / lab.name
        for page in copy.rglob("*.md"):
            text = page.read_text(encoding="utf-8")
            for target in link.findall(text):
                if not re.match(r"https?://", target):
                    resolved = (page.parent / target).resolve()
                    assert resolved.is_relative_to(copy.resolve()) and resolved.exists(), (
                        f"{page}: the link {target} does not work from a copy of the lab folder"
                    )
            for name in re.findall(r"notebooks/[\w.-]+", text):
                assert (ROOT / name).exists(), (
                    f"{page}: names {name}, which the repository does not have"
                )


def test_grading_or_trying_a_folder_without_the_labs_file_says_so_in_one_line(handout):
    for command in ("grade", "try"):
        done = conclab(
            command, "03", "--submission", str(handout / "01-unblock-the-loop"), timeout=60
        )
        assert done.returncode == 2, done.stdout + done.stderr
        assert done.stderr.count("\n") == 1 and "does not hold fanout.py" in done.stderr, (
            done.stderr
        )
        assert "FAIL" not in done.stdout


@pytest.mark.labs
def test_a_submission_that_crashes_shows_the_student_its_own_traceback(handout, tmp_path):
    lab = handouts.find_lab("01")
    folder = submission_from_handout(handout, lab, tmp_path)
    app = folder / "app.py"
    text = (lab / "app.py").read_text()  # the solution (its markers are comments)
    assert "asyncio.to_thread(slow_hash, text, rounds)" in text
    # A plausible slip: the hash is called, and its result handed to to_thread.
    app.write_text(
        text.replace(
            "asyncio.to_thread(slow_hash, text, rounds)",
            "asyncio.to_thread(slow_hash(text, rounds))",
        )
    )
    code, checks, output, _ = grade(lab, folder)
    assert checks["route_still_does_its_job[hash]"] is False, output
    failure = output.split("FAIL  route_still_does_its_job[hash]")[1].split("  FAIL ")[0]
    assert "/hash answered 500" in failure, output
    assert (
        'File "app.py", line' in failure and "asyncio.to_thread(slow_hash(text, rounds))" in failure
    ), output
    assert "TypeError: 'str' object is not callable" in failure, output


def test_a_traceback_in_a_server_log_is_cut_to_the_students_frames(tmp_path):
    folder = tmp_path / "my-lab"
    log = (
        "INFO:     Started server process [1]\n"
        "ERROR:    Exception in ASGI application\n"
        "Traceback (most recent call last):\n"
        '  File "/venv/uvicorn/protocols/http/httptools_impl.py", line 409, in run_asgi\n'
        "    result = await app(\n"
        f'  File "{folder}/app.py", line 134, in app\n'
        "    status, body = 200, await route(query)\n"
        f'  File "{folder}/app.py", line 88, in hash_text\n'
        "    return await asyncio.to_thread(slow_hash(text, rounds))\n"
        "                                   ^^^^^^^^^^^^^^^^^^^^^^\n"
        "TypeError: 'str' object is not callable\n"
        "Traceback (most recent call last):\n"
        '  File "/venv/gunicorn/workers/sync.py", line 1, in handle\n'
        "    raise OSError\n"
        "OSError: not the student's\n"
    )
    assert tracebacks.last_in_log(log, folder) == [
        'File "app.py", line 134, in app',
        "  status, body = 200, await route(query)",
        'File "app.py", line 88, in hash_text',
        "  return await asyncio.to_thread(slow_hash(text, rounds))",
        "                                 ^^^^^^^^^^^^^^^^^^^^^^",
        "TypeError: 'str' object is not callable",
    ]
    assert tracebacks.last_in_log("no traceback here\n", folder) == []


def test_trying_a_taken_port_or_a_broken_app_says_which_in_one_error(tmp_path):
    from conclab.base.specs import ServerSpec
    from conclab.labs.trying import serve_for_trying

    (tmp_path / "broken.py").write_text("def app(:\n    pass\n")
    with (
        pytest.raises(LabError) as info,
        serve_for_trying(
            ServerSpec("asgi", app="broken:app", app_dir=str(tmp_path)), "your app", quiet=True
        ),
    ):
        pytest.fail("a broken app must not start")
    assert str(info.value).startswith("your app did not start:\n") and "SyntaxError" in str(
        info.value
    )
    assert "command:" not in str(
        info.value
    )  # the server's output alone, not the launcher's summary
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        with (
            pytest.raises(LabError, match=f"port {port} is taken"),
            serve_for_trying(ServerSpec("asgi", port=port), "your app", quiet=True),
        ):
            pytest.fail("the port was taken")


def test_a_failed_start_is_cut_to_the_students_traceback():
    from conclab.base.errors import ServerStartError
    from conclab.labs.helpers import start_failure

    output = (
        "Traceback (most recent call last):\n"
        '  File "/venv/lib/uvicorn/importer.py", line 19, in import_from_string\n'
        '  File "/home/me/lab/app.py", line 3, in <module>\n'
        "    import nothing_here\n"
        "ModuleNotFoundError: No module named 'nothing_here'\n"
        "Some later line"
    )
    err = ServerStartError(
        "uvicorn 1w exited while starting (code 1).", output=output, command=("uvicorn", "app:app")
    )
    assert start_failure(err, "/home/me/lab", "your app") == (
        "your app did not start:\n"
        'File "/home/me/lab/app.py", line 3, in <module>\nimport nothing_here\n'
        "ModuleNotFoundError: No module named 'nothing_here'"
    )
    no_frames = ServerStartError(
        "uvicorn 1w exited while starting (code 1).", output="OSError: boom\nbye"
    )
    assert start_failure(no_frames, "/home/me/lab", "your app") == (
        "your app did not start:\nuvicorn 1w exited while starting (code 1).\nOSError: boom"
    )
