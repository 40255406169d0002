"""A chart that moves while the lab measures: throughput, p50/p99, requests in flight, per second.

    with LiveChart("WSGI vs ASGI"):
        data = measure(REGISTRY["wsgi_vs_asgi"])

While the block runs, every load run started from this thread is watched
(``driver.watching``): about once a second the chart is redrawn *in place*
through an IPython display handle (``display(..., display_id=True)`` and
``handle.update``), so the class sees the queue form and the latency climb.
The last frame is an ordinary PNG output, so it stays in the saved notebook
and in its HTML export.

The driver's own thread never draws: the driver hands a read-only view of the
run to the thread that called it (the notebook's), and the drawing happens
there. Outside a Jupyter kernel (a script, `make charts`) nothing is drawn
unless ``show`` is given.
"""

from __future__ import annotations

import io
import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from ..base.specs import FIELDS
from ..measuring import driver
from ..measuring.stats import latency_ns

INTENDED, START, END, STATUS, ERROR = (
    FIELDS.index(n) for n in ("intended_ns", "start_ns", "end_ns", "status", "error")
)
FRAME_INCHES = (9.0, 5.2)
FRAME_DPI = 72  # a small PNG: cheap to draw (tens of ms), sharp enough on a projector


@dataclass
class _Segment:
    """One load run: its per-second bins and the in-flight samples taken while it ran."""

    label: str
    t0_s: float  # when the run's clock started, seconds since the chart began
    warmup_s: float
    seen: int = 0
    latencies: dict = field(
        default_factory=dict
    )  # second -> list of latencies (ms) of answered requests
    errors: dict = field(default_factory=dict)  # second -> failed requests
    in_flight: list = field(
        default_factory=list
    )  # (seconds since the run began, requests in flight)
    end_s: float | None = None  # length of the run, once finished


def _in_kernel() -> bool:
    try:
        from IPython import get_ipython
    except ImportError:
        return False
    shell = get_ipython()
    return shell is not None and getattr(shell, "kernel", None) is not None


def _label(load) -> str:
    who = f"{load.concurrency} users" if load.concurrency else f"{load.rate:g} req/s"
    return f"{load.path}, {who}"


class LiveChart:
    """Watch the load runs started inside ``with`` and redraw their per-second chart in place.

    ``show(png: bytes)`` receives each frame; by default, inside a Jupyter kernel,
    one display handle is created and updated. ``every``: seconds between frames.
    """

    def __init__(
        self, title: str = "", every: float = 1.0, show: Callable[[bytes], None] | None = None
    ):
        self.title = title
        self.every = every
        self._show = show
        self._handle = None
        self.enabled = show is not None or _in_kernel()
        self.segments: list[_Segment] = []
        self.frames = 0
        self._t0_ns = 0
        self._last_draw = 0.0
        self._watch = None

    # -- watching ------------------------------------------------------------
    def __enter__(self) -> LiveChart:
        self._t0_ns = time.monotonic_ns()
        if self.enabled:
            # matplotlib's first render loads fonts and builds the renderer, ~100 ms
            # holding the GIL; the driver's thread needs it too. Pay that now, before
            # any run starts, not in the middle of the first run's measured window.
            self._setup()
            self._fig.savefig(io.BytesIO(), format="png", dpi=FRAME_DPI)
            self._watch = driver.watching(self.update, every=self.every)
            self._watch.__enter__()
        return self

    def __exit__(self, *exc) -> None:
        if self._watch is not None:
            self._watch.__exit__(*exc)
            self._watch = None
        if self.segments:
            last = self.segments[-1]
            if last.end_s is None:  # interrupted: end it where the last sample was taken
                last.end_s = last.in_flight[-1][0]
            self.draw()  # the final frame: it stays in the notebook

    def update(self, run: driver.RunProgress) -> None:
        """Take in what the run measured since the last call; redraw about every ``every`` s."""
        if not run.started_ns:
            return  # the client is still being built
        seg = self.segments[-1] if self.segments else None
        if seg is None or seg.t0_s != (run.started_ns - self._t0_ns) / 1e9:
            seg = _Segment(_label(run.load), (run.started_ns - self._t0_ns) / 1e9, run.load.warmup)
            self.segments.append(seg)
        records = run.records
        count = len(records)
        for rec in records[seg.seen : count]:  # a slice: the driver keeps appending meanwhile
            second = (rec[END] - run.started_ns) // 1_000_000_000
            if rec[ERROR] or not rec[STATUS]:
                seg.errors[second] = seg.errors.get(second, 0) + 1
            else:
                seg.latencies.setdefault(second, []).append(
                    latency_ns(rec[INTENDED], rec[START], rec[END]) / 1e6
                )
        seg.seen = count
        now_s = (time.monotonic_ns() - run.started_ns) / 1e9
        seg.in_flight.append((now_s, run.in_flight))
        if run.finished:
            seg.end_s = now_s
        if time.monotonic() - self._last_draw >= self.every * 0.9 or (
            run.finished and not self.frames
        ):
            self.draw()

    # -- drawing -------------------------------------------------------------
    # One figure for the whole chart, its artists made once and given new data
    # each frame: making fresh axes (ticks, labels) would cost several times more.
    def _series(self, seg: _Segment):
        """Per completed second: x (chart time), answered/s, p50, p99, failed/s."""
        last = (
            math.floor(seg.end_s) if seg.end_s is not None else math.floor(seg.in_flight[-1][0]) - 1
        )
        rows = []
        for second in range(0, last + 1):
            lat = seg.latencies.get(second, [])
            span = 1.0
            if seg.end_s is not None and second + 1 > seg.end_s:
                span = seg.end_s - second  # the run's last, partial second
                if span < 0.25:
                    continue
            p50, p99 = np.percentile(lat, [50, 99]) if lat else (np.nan, np.nan)
            rows.append(
                (
                    seg.t0_s + second + span / 2,
                    len(lat) / span,
                    p50,
                    p99,
                    seg.errors.get(second, 0) / span,
                )
            )
        return np.array(rows).reshape(-1, 5)

    def _setup(self):
        fig = Figure(figsize=FRAME_INCHES)
        FigureCanvasAgg(fig)
        fig.subplots_adjust(left=0.08, right=0.98, top=0.93, bottom=0.1, hspace=0.12)
        axes = fig.subplots(3, 1, sharex=True)
        ax_x, ax_r, ax_l = axes
        self._lines = {
            "answered": ax_x.plot([], [], "o-", color="#1f3b73", ms=3, lw=1.5, label="answered")[0],
            "failed": ax_x.plot([], [], "x-", color="#a01c1c", ms=3, lw=1, label="failed")[0],
            "p50": ax_r.plot([], [], "o-", color="#1f3b73", ms=3, lw=1.5, label="p50")[0],
            "p99": ax_r.plot([], [], "o-", color="#d1700f", ms=3, lw=1.5, label="p99")[0],
            "flight": ax_l.plot([], [], "-", color="#2e7d32", lw=1.5, drawstyle="steps-post")[0],
        }
        ax_x.set_ylabel("answered/s")
        ax_r.set_ylabel("latency ms")
        ax_r.legend(fontsize=7, loc="upper left")
        ax_l.set_ylabel("in flight")
        ax_l.set_xlabel("seconds since the measurement began (grey: warm-up, not counted)")
        for ax in axes:
            ax.grid(alpha=0.3)
        self._title = fig.suptitle("", fontsize=10)
        self._fig, self._axes, self._spans = fig, axes, []

    def figure(self) -> Figure:
        """The chart as it stands: three panels sharing the time axis, one shaded band per run."""
        if not hasattr(self, "_fig"):
            self._setup()
        ax_x, ax_r, ax_l = self._axes
        columns = {name: [] for name in self._lines}
        flight_x, flight_y = [], []
        end = 0.0
        for i, seg in enumerate(self.segments):
            seg_end = seg.t0_s + (seg.end_s if seg.end_s is not None else seg.in_flight[-1][0])
            end = max(end, seg_end)
            if i == len(self._spans):  # a new run: its band, warm-up and label, made once
                bands = [
                    (
                        ax.axvspan(
                            seg.t0_s, seg_end, color="#f3f3f3" if i % 2 else "#e8eef7", zorder=0
                        ),
                        ax.axvspan(seg.t0_s, seg.t0_s, color="#d9d9d9", zorder=0),
                    )
                    for ax in self._axes
                ]
                ax_x.annotate(
                    seg.label,
                    (seg.t0_s, 1),
                    xycoords=("data", "axes fraction"),
                    xytext=(2, -2),
                    textcoords="offset points",
                    va="top",
                    fontsize=7,
                    color="#444",
                )
                self._spans.append(bands)
            for band, warm in self._spans[i]:
                band.set_width(seg_end - seg.t0_s)
                warm.set_width(min(seg.warmup_s, seg_end - seg.t0_s))
            rows = self._series(seg)
            for k, name in enumerate(("answered", "p50", "p99", "failed"), start=1):
                col = rows[:, (1, 2, 3, 4)[k - 1]] if len(rows) else []
                columns[name] += (
                    [*zip(rows[:, 0], col, strict=True), (np.nan, np.nan)] if len(rows) else []
                )
            flight = np.array(seg.in_flight)
            flight_x += [*(seg.t0_s + flight[:, 0]), np.nan]
            flight_y += [*flight[:, 1], np.nan]
        for name in ("answered", "p50", "p99", "failed"):
            pts = np.array(columns[name], dtype=float).reshape(-1, 2)
            self._lines[name].set_data(pts[:, 0], pts[:, 1])
        any_failed = (
            bool(np.nansum(self._lines["failed"].get_ydata())) if len(columns["failed"]) else False
        )
        self._lines["failed"].set_visible(any_failed)
        self._lines["flight"].set_data(flight_x, flight_y)
        for ax in self._axes:  # from 0 to the highest point, with room for the runs' labels
            ys = [y for line in ax.get_lines() if line.get_visible() for y in line.get_ydata()]
            top = (
                np.nanmax(np.asarray(ys, dtype=float))
                if np.isfinite(np.asarray(ys, dtype=float)).any()
                else 0.0
            )
            ax.set_ylim(0, top * 1.25 or 1.0)
        ax_l.set_xlim(self.segments[0].t0_s if self.segments else 0, max(end, 1.0))
        state = "done" if self.segments and self.segments[-1].end_s is not None else "measuring..."
        self._title.set_text(f"{self.title} - {state}" if self.title else state)
        return self._fig

    def png(self) -> bytes:
        buf = io.BytesIO()
        self.figure().savefig(buf, format="png", dpi=FRAME_DPI)
        return buf.getvalue()

    def draw(self) -> None:
        """Draw a frame and show it (in place of the previous one)."""
        self._last_draw = time.monotonic()
        png = self.png()
        self.frames += 1
        if self._show is not None:
            self._show(png)
            return
        from IPython.display import Image, display

        if self._handle is None:
            self._handle = display(Image(data=png, format="png"), display_id=True)
        else:
            self._handle.update(Image(data=png, format="png"))
