"""The suite's seconds, test by test, as data
(conclab.figures.suite_timing): a real pytest run records them."""

import json
import os
import subprocess
import sys
import textwrap

from conclab.figures.suite_timing import ENV

SUITE = textwrap.dedent(f"""
    import os
    import time

    import pytest


    @pytest.fixture
    def broken():
        raise RuntimeError("setup fails")


    def test_slow():
        time.sleep(0.4)


    def test_quick():
        # Taken out of the environment: a pytest run that
        # this test started would not write over the file.
        assert "{ENV}" not in os.environ


    def test_fails():
        assert False


    def test_skipped():
        pytest.skip("not here")


    def test_errors(broken):
        pass


    @pytest.mark.xfail(reason="known")
    def test_expected_to_fail():
        assert False
""")


def _run(tmp_path, env):
    (tmp_path / "test_sample.py").write_text(SUITE)
    return subprocess.run(
        [
            sys.executable,
            "-m",
            "pytest",
            "-p",
            "conclab.figures.suite_timing",
            "-q",
            "-p",
            "no:cacheprovider",
            "test_sample.py",
        ],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_a_run_records_each_tests_seconds_and_outcome_slowest_first_with_the_load(tmp_path):
    out = tmp_path / "data" / "durations.json"
    run = _run(tmp_path, {**os.environ, ENV: str(out)})
    assert run.returncode == 1, run.stdout + run.stderr  # a test failed: recorded all the same
    doc = json.loads(out.read_text())
    by_id = {t["id"]: t for t in doc["tests"]}
    assert {i: t["outcome"] for i, t in by_id.items()} == {
        "test_sample.py::test_slow": "passed",
        "test_sample.py::test_quick": "passed",
        "test_sample.py::test_fails": "failed",
        "test_sample.py::test_skipped": "skipped",
        "test_sample.py::test_errors": "error",
        "test_sample.py::test_expected_to_fail": "xfailed",
    }
    assert doc["tests"][0]["id"] == "test_sample.py::test_slow"
    assert by_id["test_sample.py::test_slow"]["seconds"] >= 0.4
    assert [t["seconds"] for t in doc["tests"]] == sorted(
        (t["seconds"] for t in doc["tests"]), reverse=True
    )
    assert doc["outcomes"] == {"passed": 2, "failed": 1, "skipped": 1, "error": 1, "xfailed": 1}
    assert doc["seconds"] >= 0.4 and doc["exit_status"] == 1
    assert set(doc["load_avg"]) == {"start", "end"} and all(
        v >= 0 for v in doc["load_avg"].values()
    )
    assert doc["args"][-1] == "test_sample.py"


def test_without_the_variable_nothing_is_written(tmp_path):
    env = {k: v for k, v in os.environ.items() if k != ENV}
    run = _run(tmp_path, env)
    assert run.returncode == 1, run.stdout + run.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == ["test_sample.py"]
