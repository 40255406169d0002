"""What a load run returns: one record per request, the summary, and how the run ended."""

from __future__ import annotations

import functools
from dataclasses import dataclass, field

from ..base.specs import LoadSpec
from . import stats
from .summary import Summary


@dataclass
class LoadResult:
    """What a run measured: the records, a summary, and how it ended."""

    url: str
    load: LoadSpec
    records: list = field(repr=False)
    started_ns: int = 0
    window: tuple[int, int] = (0, 0)
    finished_ns: int = 0
    client_cpu_s: float = 0.0
    # ready to run but waiting for its core; None: not measurable here
    client_wait_s: float | None = 0.0
    client_placement: str | None = None  # "pinned to core 1", "unpinned: no CPU affinity on macOS"
    loop_lag_ms: list = field(default_factory=list, repr=False)
    interrupted: bool = False
    failed: str | None = None
    dropped_records: int = 0

    @functools.cached_property
    def summary(self) -> Summary:
        """Computed once, when first asked for - after the run has finished."""
        return stats.summarize(self)

    def columns(self) -> dict:
        """The records as a dict of numpy arrays (see stats.columns)."""
        return stats.columns(self.records)


class Interrupted(KeyboardInterrupt):
    """Ctrl-C during a run. ``.result`` holds what was measured until then."""

    def __init__(self, result):
        super().__init__("load run interrupted")
        self.result = result
