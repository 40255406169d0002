"""Where things are: the repository's folders, the results cache, quick mode."""

from __future__ import annotations

import os
from pathlib import Path

ROOT = Path(__file__).resolve().parents[3]
SERVERS_DIR = Path(os.environ.get("CONCLAB_SERVERS") or ROOT / "servers")
LABS_DIR = Path(os.environ.get("CONCLAB_LABS") or ROOT / "labs")
NOTEBOOKS_DIR = ROOT / "notebooks"
FIGURES_DIR = ROOT / "figures"
RESULTS_DIR = ROOT / "results"


def results_root() -> Path:
    """Where measured points are cached: $CONCLAB_RESULTS, else results/ in the repo.

    Tests point it at a temporary folder, so they never touch the repo's results/.
    """
    return Path(os.environ.get("CONCLAB_RESULTS") or RESULTS_DIR)


def quick_mode() -> bool:
    """The one switch for quick mode everywhere: CONCLAB_QUICK=1."""
    return os.environ.get("CONCLAB_QUICK", "").strip().lower() not in ("", "0", "false", "no")
