"""How long the test suite takes, test by test, kept as data: a pytest plugin.

    CONCLAB_TEST_DURATIONS=figures/data/test_durations.json make test

writes every test's seconds (setup, call and teardown together) and outcome,
slowest first, with the whole run's seconds and the machine's 1-minute load
average at its start and end: seconds measured beside other work are inflated,
and whoever reads them must be able to tell. `make timing` runs the suite so,
and docs/timing.md's tables are generated from the file
(:mod:`conclab.figures.timing_doc`). Without the variable the plugin does
nothing, so `make test` leaves the committed file alone; pytest's own
``--durations`` table is printed either way.

tests/conftest.py loads it (``pytest_plugins``).
"""

from __future__ import annotations

import os
import time
from collections import Counter
from pathlib import Path

ENV = "CONCLAB_TEST_DURATIONS"


def load_avg() -> float:
    """The 1-minute load average: how many processes wanted a core, on average."""
    return round(os.getloadavg()[0], 2)


class Recorder:
    """Sums each test's phases and keeps its outcome; writes the file when the session ends."""

    def __init__(self, path: Path, args: list[str]):
        self.path = path
        self.args = args
        self.tests: dict[str, dict] = {}
        self.started = time.monotonic()
        self.load_start = load_avg()

    def pytest_runtest_logreport(self, report) -> None:
        test = self.tests.setdefault(
            report.nodeid, {"id": report.nodeid, "seconds": 0.0, "outcome": "passed"}
        )
        test["seconds"] += report.duration
        xfail = hasattr(report, "wasxfail")
        if report.when == "call":
            test["outcome"] = (
                ("xfailed" if report.skipped else "xpassed") if xfail else report.outcome
            )
        elif report.failed:  # a fixture that broke, before or after the test
            test["outcome"] = "error"
        elif report.skipped:  # a skip (or an expected failure) decided before the test ran
            test["outcome"] = "xfailed" if xfail else "skipped"

    def pytest_sessionfinish(self, session, exitstatus) -> None:
        from ..measuring import results

        tests = sorted(self.tests.values(), key=lambda t: -t["seconds"])
        for test in tests:
            test["seconds"] = round(test["seconds"], 2)
        results.write_json(
            self.path,
            {
                "args": self.args,
                "time": results.now_iso(),
                "seconds": round(time.monotonic() - self.started, 1),
                "exit_status": int(exitstatus),
                "load_avg": {"start": self.load_start, "end": load_avg()},
                "outcomes": dict(Counter(t["outcome"] for t in tests)),
                "machine": results.machine(),
                "tests": tests,
            },
        )


def pytest_configure(config) -> None:
    # Taken out of the environment: a pytest run that a test starts (a lab's grader)
    # must not write over the suite's file.
    path = os.environ.pop(ENV, None)
    if path and not hasattr(config, "workerinput"):
        config.pluginmanager.register(
            Recorder(Path(path), list(config.invocation_params.args)), "conclab-durations"
        )
