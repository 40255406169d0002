"""Small helpers for the teaching notebooks: tables, guesses, timelines.

They keep the notebooks' cells short. The notebooks measure with the same
experiments, launcher and driver that `make charts` uses, and hand the
results to these functions to show them.

    measure(exp, ...)            an experiment measured as `make charts` does, with a live chart
    LiveChart(title)             `with LiveChart(...): run_load(...)`: the same chart around any run
    point(spec, result)          a LoadResult as a plain dict, like an experiment's points
    summary_table(points)        throughput and latency, one row per run
    littles_law_table(points)    N, X, R and the checks L = X * R and X = min(N, c) / S
    check_guess(guess, measured) "you guessed ..., we measured ..."
    task_timeline(panels)        asyncio tasks as bars (notebook 01)
    run_in_debug_mode(main)      what asyncio's debug mode logs for main()
"""

from __future__ import annotations

import asyncio
import dataclasses
import html
import logging
import math
import shlex
import sys
from pathlib import Path

from matplotlib.figure import Figure

from ..base.paths import ROOT, results_root
from ..base.specs import ServerSpec
from ..figures.experiment import Experiment, Job, point_doc
from ..figures.experiment import measure as measure_experiment
from ..figures.plotting import draw_timelines
from ..measuring.background import Background
from ..measuring.summary import Percentiles
from .live import LiveChart  # also for notebooks: teach.LiveChart


def measure(exp: Experiment, **options) -> dict:
    """Measure an experiment exactly as `make charts` does (``options`` as in
    figures.experiment.measure), while a live chart shows each run second by
    second: throughput, p50/p99 latency, requests in flight. In a notebook it
    redraws in place about once a second; its last frame stays in the output.
    """
    with LiveChart(exp.title):
        return measure_experiment(exp, **options)


def results_dir(notebook: str) -> Path:
    """Where a notebook's experiments keep their per-point files (git-ignored).

    Under ``results_root()``, so $CONCLAB_RESULTS moves them too (the tests do).
    """
    path = results_root() / "notebooks" / notebook
    path.mkdir(parents=True, exist_ok=True)
    return path


def only(exp: Experiment, *, x=None, series=None, route=None, where=None, extra=True) -> Experiment:
    """The same experiment with only some of its points (all of them when no filter is given).

    ``x``: keep points whose x is in this list; ``series``: whose series name is;
    ``route``: whose path (before ``?``) is; ``where``: a predicate on the Job.
    ``extra=False`` skips the experiment's extra measurement (e.g. wrk's ceiling).
    The points kept are measured exactly as `make charts` measures them.
    """

    def keep(job):
        return (
            (x is None or job.x in x)
            and (series is None or job.series in series)
            and (route is None or job.load.path.split("?")[0] == route)
            and (where is None or where(job))
        )

    return dataclasses.replace(
        exp,
        jobs=lambda quick: [job for job in exp.jobs(quick) if keep(job)],
        extra=exp.extra if extra else None,
    )


def plan(exp: Experiment, quick: bool | None = None) -> Table:
    """What an experiment will measure - one row per series - so students can predict first."""
    from ..base.paths import quick_mode

    quick = quick_mode() if quick is None else quick
    series: dict = {}
    for job in exp.jobs(quick):
        row = series.setdefault(
            job.series, {"servers": [], "routes": [], "loads": [], "xs": [], "time": []}
        )
        load = job.load
        users = f"{load.concurrency} users" if load.concurrency else f"{load.rate:g} req/s"
        if load.requests and not load.duration:
            users = (
                f"{load.requests} at once"
                if load.requests == load.concurrency
                else f"{load.requests} requests, {load.concurrency} at a time"
            )
        timing = (
            f"{load.warmup:g} s warm-up + {load.duration:g} s" if load.duration else "until done"
        )
        for key, value in (
            ("servers", job.spec.label),
            ("routes", load.path),
            ("loads", users),
            ("time", timing),
        ):
            if value not in row[key]:
                row[key].append(value)
        if job.x is not None and job.x not in row["xs"]:
            row["xs"].append(job.x)

    def joined(values):
        values = [str(v) for v in values]
        return ", ".join(values) if len(values) <= 3 else f"{values[0]}, ..., {values[-1]}"

    rows = [
        [
            name,
            joined(r["servers"]),
            joined(r["routes"]),
            joined(r["loads"]),
            joined(r["xs"]) or "-",
            joined(r["time"]),
        ]
        for name, r in series.items()
    ]
    mode = "quick mode" if quick else "full mode"
    return Table(
        ["series", "server", "route", "load", "x (points)", "per point"],
        rows,
        f"{exp.name} ({mode}): {exp.title}",
    )


def command_line(spec: ServerSpec, port: int = 8000) -> str:
    """The command a student would type to start this server by hand."""
    cmd = spec.command(port)
    cmd[0] = "python"
    return shlex.join(cmd).replace(str(ROOT) + "/", "")


def point(spec: ServerSpec, result, label: str | None = None) -> dict:
    """A LoadResult as a dict shaped like an experiment's points (plus its records)."""
    load = result.load
    job = Job(
        label or f"{spec.label}: {load.path}",
        spec,
        load,
        x=load.concurrency or load.rate,
        keep_records=True,
    )
    return point_doc(job, result)


class Table:
    """Rows of values shown as an HTML table in a notebook and as aligned text elsewhere."""

    def __init__(self, columns, rows, note=""):
        self.columns = list(columns)
        self.rows = [list(r) for r in rows]
        self.note = note

    @staticmethod
    def _fmt(value):
        if value is None or (isinstance(value, float) and math.isnan(value)):
            return "-"
        if isinstance(value, float):
            if math.isinf(value):
                return "unbounded"
            return (
                f"{value:,.0f}"
                if abs(value) >= 100
                else f"{value:.1f}"
                if abs(value) >= 10
                else f"{value:.2f}"
            )
        return str(value)

    def __repr__(self):
        cells = [self.columns] + [[self._fmt(v) for v in row] for row in self.rows]
        widths = [max(len(r[i]) for r in cells) for i in range(len(self.columns))]
        lines = [
            "  ".join(
                c.rjust(w) if i else c.ljust(w)
                for i, (c, w) in enumerate(zip(r, widths, strict=True))
            )
            for r in cells
        ]
        lines.insert(1, "  ".join("-" * w for w in widths))
        return "\n".join(lines + ([self.note] if self.note else []))

    def _repr_html_(self):
        head = "".join(f"<th>{html.escape(c)}</th>" for c in self.columns)
        body = "".join(
            "<tr>" + "".join(f"<td>{html.escape(self._fmt(v))}</td>" for v in row) + "</tr>"
            for row in self.rows
        )
        note = f"<p><small>{html.escape(self.note)}</small></p>" if self.note else ""
        return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>{note}"


def _points(points_or_data):
    return points_or_data["points"] if isinstance(points_or_data, dict) else list(points_or_data)


def _load_label(p):
    load = p["load"]
    return f"{load['concurrency']} users" if load.get("concurrency") else f"{load['rate']:g} req/s"


def summary_table(points) -> Table:
    """One row per run: load, throughput, latency percentiles, errors, the client's CPU."""
    rows = []
    saturated = False
    for p in _points(points):
        s = p["summary"]
        lat = s.latency_ms
        saturated |= s.client_saturated
        rows.append(
            [
                p["series"],
                p["load"]["path"],
                _load_label(p),
                s.throughput_rps,
                lat.p50,
                lat.p99,
                lat.mean,
                s.error_count,
                f"{s.client_cpu:.0%}" + (" SATURATED" if s.client_saturated else ""),
            ]
        )
    note = (
        "SATURATED: the load driver was the bottleneck - its numbers understate the server."
        if saturated
        else ""
    )
    return Table(
        ["run", "route", "load", "req/s", "p50 ms", "p99 ms", "mean ms", "errors", "client CPU"],
        rows,
        note,
    )


def littles_law_table(points) -> Table:
    """Little's law, checked twice: L = X * R (measured) and X = min(N, c) / S (predicted)."""
    rows = []
    for p in _points(points):
        s = p["summary"]
        pred = p.get("prediction") or {}
        slots = pred.get("slots")
        rows.append(
            [
                p["series"],
                _load_label(p),
                float(slots) if slots is not None else (math.inf if pred else None),
                s.throughput_rps,
                pred.get("throughput_rps"),
                s.latency_ms.mean,
                pred.get("latency_ms"),
                s.throughput_rps * s.latency_ms.mean / 1000 if s.completed else None,
                s.mean_in_flight,
            ]
        )
    return Table(
        ["run", "load", "slots c", "X req/s", "X theory", "R ms", "R theory", "X*R", "L measured"],
        rows,
        "X: throughput; R: mean latency; L: mean requests in flight. "
        "Theory: X = min(N, c)/S, R = N/X. Little's law "
        "says L = X*R - the last two columns should agree.",
    )


def latency_table(points) -> Table:
    """Mean vs percentiles vs max, per run - and, for open loops, the uncorrected view."""
    rows = []
    for p in _points(points):
        lat = p["summary"].latency_ms
        rows.append([p["series"], lat.mean, lat.p50, lat.p90, lat.p99, lat.max])
        if p["load"].get("rate"):
            svc = p["summary"].service_ms
            rows.append(
                [
                    "  ...measured from the send (uncorrected)",
                    svc.mean,
                    svc.p50,
                    svc.p90,
                    svc.p99,
                    svc.max,
                ]
            )
    return Table(["run", "mean ms", "p50 ms", "p90 ms", "p99 ms", "max ms"], rows)


def probe_table(points) -> Table:
    """Throughput of each run beside the latency of the /health probe sent during it."""
    rows = []
    for p in _points(points):
        probe = p.get("probe")
        lat = probe.latency_ms if probe else Percentiles(None, None, None, None, None)
        rows.append([p["series"], p["summary"].throughput_rps, lat.p50, lat.p99, lat.max])
    return Table(
        ["route under load", "req/s", "/health p50 ms", "/health p99 ms", "/health max ms"], rows
    )


def check_guess(
    guess: float | None,
    measured: float,
    *,
    what: str = "throughput",
    unit: str = "req/s",
    theory: float | None = None,
) -> None:
    """Print the student's guess beside the measurement (and the theory, if given)."""

    def show(value):
        return f"{Table._fmt(float(value))}{' ' + unit if unit else ''}"

    theory_text = f" (theory: {show(theory)})" if theory is not None else ""
    if guess is None or isinstance(guess, str | bool) or not isinstance(guess, int | float):
        print(
            f"{what}: measured {show(measured)}{theory_text}. "
            f"No guess yet - write a number in the guess cell above and run both cells again."
        )
        return
    ratio = guess / measured if measured else math.inf
    if 0.8 <= ratio <= 1.25:
        verdict = "close - well reasoned!"
    elif ratio > 1:
        verdict = f"{ratio:.1f}x too high"
    else:
        verdict = f"{1 / ratio:.1f}x too low" if ratio > 0 else "too low"
    print(
        f"{what}: you guessed {show(guess)}, we measured {show(measured)}{theory_text} -> {verdict}"
    )


def timeline_figure(points, height_per_panel=2.4) -> Figure:
    """Request timelines (one bar per request, one lane per worker thread) for runs from point()."""
    pts = _points(points)
    fig = Figure(figsize=(10, height_per_panel * len(pts) + 0.6), layout="constrained")
    draw_timelines({"points": pts}, fig)
    return fig


def task_timeline(panels: dict, title: str = "", max_rows: int = 30) -> Figure:
    """asyncio tasks as bars: one panel per scenario, one row per task.

    Each panel is a list of ``(name, start, end)`` tuples of ``time.perf_counter()``
    values, optionally ``(name, start, end, busy_start, busy_end)`` where the task
    kept the thread busy (a blocking call) - drawn dark red. Rows are in order
    of start; a panel shows at most ``max_rows`` tasks.
    """
    fig = Figure(figsize=(10, 1.0 + 2.2 * len(panels)), layout="constrained")
    axes = fig.subplots(len(panels), 1, squeeze=False, sharex=True)[:, 0]
    for ax, (name, spans) in zip(axes, panels.items(), strict=True):
        if not spans:
            ax.set_title(f"{name} (nothing recorded)")
            continue
        t0 = min(s[1] for s in spans)
        order = sorted(spans, key=lambda s: s[1])[:max_rows]
        if len(spans) > max_rows:
            name = f"{name} (first {max_rows} of {len(spans)} tasks)"
        for row, span in enumerate(order):
            start, end = (span[1] - t0) * 1000, (span[2] - t0) * 1000
            ax.broken_barh([(start, end - start)], (row + 0.15, 0.7), color="#b0c4de")
            if len(span) == 5:
                b0, b1 = (span[3] - t0) * 1000, (span[4] - t0) * 1000
                ax.broken_barh([(b0, b1 - b0)], (row + 0.15, 0.7), color="#a01c1c")
        total = (max(s[2] for s in spans) - t0) * 1000
        ax.set_yticks([r + 0.5 for r in range(len(order))])
        ax.set_yticklabels([s[0] for s in order], fontsize=7)
        ax.set_ylim(len(order), 0)
        ax.set_title(f"{name} - all done after {total:.0f} ms", fontsize=9)
        ax.grid(axis="x", alpha=0.3)
    axes[-1].set_xlabel("time since the first task started (ms)")
    fig.legend(
        handles=[
            _patch("#b0c4de", "task alive (mostly paused at an await)"),
            _patch("#a01c1c", "task blocking the thread (time.sleep)"),
        ],
        fontsize=7,
        loc="outside upper right",
        ncols=2,
    )
    if title:
        fig.suptitle(title, fontsize=11)
    return fig


def _patch(color, label):
    from matplotlib.patches import Patch

    return Patch(color=color, label=label)


class _Collect(logging.Handler):
    def __init__(self):
        super().__init__(level=logging.WARNING)
        self.messages = []

    def emit(self, record):
        self.messages.append(record.getMessage())


def run_in_debug_mode(main, slow_callback_duration: float = 0.1) -> list[str]:
    """Run ``main()`` with ``asyncio.run(..., debug=True)`` and return what asyncio logged.

    It runs in a fresh thread with its own event loop, because a notebook's
    thread already has one running. In debug mode asyncio logs every callback
    or task step that kept the loop busy longer than ``slow_callback_duration``.
    """
    handler = _Collect()
    logger = logging.getLogger("asyncio")
    logger.addHandler(handler)
    propagate, logger.propagate = logger.propagate, False

    async def wrapper():
        asyncio.get_running_loop().slow_callback_duration = slow_callback_duration
        await main()

    thread = Background(lambda: asyncio.run(wrapper(), debug=True), name="debug-mode-demo")
    try:
        thread.start().wait()
    finally:
        logger.removeHandler(handler)
        logger.propagate = propagate
    thread.result()
    return handler.messages


def gil_status() -> str:
    """One line on this interpreter's GIL (free-threaded builds exist from Python 3.13)."""
    check = getattr(sys, "_is_gil_enabled", None)
    enabled = True if check is None else check()
    return (
        f"Python {sys.version.split()[0]}: the GIL is "
        f"{'ON' if enabled else 'OFF (free-threaded build)'}; a thread running Python code "
        f"is asked to let others in every {sys.getswitchinterval() * 1000:g} ms"
    )
