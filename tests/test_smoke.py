"""The smoke set that `make test-pythons` runs under each Python names tests that exist:
a test renamed or removed must not leave the matrix failing only in CI's last stage."""

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def test_every_test_the_smoke_set_names_exists():
    ids = [
        line.strip()
        for line in (ROOT / "tests" / "smoke.txt").read_text().splitlines()
        if line.strip() and not line.startswith("#")
    ]
    assert ids, "tests/smoke.txt names no test"
    done = subprocess.run(
        [sys.executable, "-m", "pytest", "--collect-only", "-q", "-p", "no:cacheprovider", *ids],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
