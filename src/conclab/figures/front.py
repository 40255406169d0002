"""The web server in front: slow clients, and nginx balancing several app servers.

* ``slow_clients`` - a /hello probe's latency over time while slow clients
  connect one after another, each trickling its request header and never
  finishing it. A sync worker is held by the first slow client it reads from;
  gthread by as many as it has threads; an event loop and nginx hold them all
  for the price of a socket. Gunicorn's worker timeout kills the stuck sync
  workers (marked on the figure).
* ``scale_out`` - nginx in front of 1..4 separate app server instances, on an
  I/O route and a CPU route: waiting scales with instances (Little's law), CPU
  work only up to the cores the machine has.

Both need nginx: without it they are skipped with one line saying how to
install it (see conclab.processes.nginx.nginx_missing).
"""

from __future__ import annotations

import hashlib
import json
import math
import threading
import time
from collections import Counter
from dataclasses import dataclass, field

import numpy as np

from ..base.specs import LoadSpec, ServerSpec
from ..measuring.driver import run_load
from ..measuring.slowclients import OUTCOMES, SlowLoad, run_slow_clients
from ..measuring.stats import latency_ns
from ..measuring.theory import slots
from ..processes.nginx import Front, FrontSpec, nginx_missing
from .experiment import Experiment, Job, closed_load, point_doc
from .plotting import COLORS, by_series, plot_throughput

PROBE_RATE = 10  # /hello probes per second, open loop: a stalled server cannot slow them down
LEAD_S = 0.5  # the probe runs alone this long first, to show the server's normal latency


# --------------------------------------------------------------------------- slow clients


@dataclass
class SlowClientsJob(Job):
    """A /hello probe (``load``) while ``slow`` clients trickle their headers."""

    slow: SlowLoad = field(default_factory=SlowLoad)

    def key(self) -> str:
        blob = json.dumps([super().key(), self.slow.to_dict()], sort_keys=True)
        return hashlib.sha1(blob.encode()).hexdigest()[:16]

    def measure(self, server) -> dict:
        """Run the probe, start the slow clients LEAD_S later, and watch for killed workers."""
        box: dict = {}
        done = threading.Event()
        exits: list[tuple[int, int]] = []  # (time_ns, pid) of each worker that went away

        def slow():
            if not done.wait(LEAD_S):
                box["slow"] = run_slow_clients(server.url, self.slow, stop=done)

        def watch():
            seen = _worker_pids(server)
            while not done.wait(0.1):
                now = _worker_pids(server)
                exits.extend((time.monotonic_ns(), pid) for pid in sorted(seen - now))
                seen = now

        helpers = [
            threading.Thread(target=slow, daemon=True),
            threading.Thread(target=watch, daemon=True),
        ]
        for t in helpers:
            t.start()
        try:
            result = run_load(server.url, self.load, progress=False, warn=False)
        finally:
            done.set()
            for t in helpers:
                t.join(self.slow.duration + self.slow.connect_timeout + 10)
        doc = point_doc(self, result)
        slow_result = box.get("slow")
        if slow_result is not None:
            doc["slow"] = slow_result.to_dict()
        doc["worker_exits_ns"] = [t for t, _ in exits]
        doc["worker_timeouts_logged"] = server.log().count("WORKER TIMEOUT")
        held = _held_slots(self.spec)
        doc["held_slots"] = held if math.isfinite(held) else None
        return doc


def _worker_pids(server) -> set[int]:
    """The processes serving requests, masters left out (a master briefly stands in for its
    workers while Gunicorn replaces a killed one)."""
    apps = server.apps if isinstance(server, Front) else [server]
    return {pid for app in apps for pid in app.worker_pids if pid != app.master_pid}


def slow_client_servers(quick: bool) -> list[tuple[str, ServerSpec | FrontSpec]]:
    """(series, spec) for every server the slow clients meet."""
    timeout = 2 if quick else 30  # Gunicorn's worker timeout; 30 s is its default
    sync = ServerSpec("wsgi", workers=2, timeout=timeout)
    out = [
        ("gunicorn sync, 2 workers", sync),
        (
            "gunicorn gthread, 2 workers x 4 threads",
            ServerSpec("wsgi", workers=2, threads=4, timeout=timeout),
        ),
        ("uvicorn (event loop)", ServerSpec("asgi")),
        ("FastAPI on uvicorn", ServerSpec("fastapi")),
        ("nginx -> gunicorn sync, 2 workers", FrontSpec(sync)),
    ]
    return out


def jobs_slow_clients(quick: bool) -> list[Job]:
    duration = 3.5 if quick else 40.0
    # 16 clients: twice gthread's 8 threads, since the
    # kernel rarely spreads them evenly over its workers.
    slow = SlowLoad(
        clients=16, duration=duration - LEAD_S, interval=1.0, stagger=0.12 if quick else 1.0
    )
    probe = LoadSpec(path="/hello", rate=PROBE_RATE, duration=duration, timeout=duration + 10)
    return [
        SlowClientsJob(series, spec, probe, keep_records=True, slow=slow)
        for series, spec in slow_client_servers(quick)
    ]


def _held_slots(spec) -> float:
    """How many slow clients it takes to stall the server: one per thread that reads a request."""
    app = spec.app if isinstance(spec, FrontSpec) else spec
    if isinstance(spec, FrontSpec) or app.interface != "wsgi":
        return math.inf  # nginx and the event loop wait for every client at once
    return slots(app, "/io")[0]


def draw_slow_clients(data: dict, fig) -> None:
    ax, bars = fig.subplots(1, 2, width_ratios=[2.4, 1])
    count_ax = ax.twinx()
    drawn_clients = False
    for i, p in enumerate(data["points"]):
        color = COLORS[i % len(COLORS)]
        recs, t0 = p["records"], p["records"]["t0_ns"]
        order = np.argsort(recs["intended_ns"])  # by when each probe was due, not when it finished
        intended = np.asarray(recs["intended_ns"], dtype=float)[order]
        start = np.asarray(recs["start_ns"], dtype=float)[order]
        end = np.asarray(recs["end_ns"], dtype=float)[order]
        ok = np.asarray(recs["status"])[order] == 200
        ax.plot(
            (intended[ok] - t0) / 1e9,
            latency_ns(intended[ok], start[ok], end[ok]) / 1e6,
            ".-",
            ms=3,
            lw=0.8,
            color=color,
            label=p["series"],
        )
        for k, t in enumerate(p.get("worker_exits_ns", [])):
            ax.axvline((t - t0) / 1e9, color=color, ls="--", lw=1)
            if k == 0:
                ax.annotate(
                    "worker timeout:\nGunicorn kills it",
                    ((t - t0) / 1e9, 1),
                    xycoords=("data", "axes fraction"),
                    fontsize=7,
                    color=color,
                    ha="right",
                    va="top",
                    rotation=90,
                )
        slow = p.get("slow")
        if slow and not drawn_clients:
            # How many slow clients are connected at each
            # moment (the same schedule for every server).
            times = sorted(
                (c["connected_ns"] - t0) / 1e9 for c in slow["connections"] if c["connected_ns"]
            )
            count_ax.step(
                [0, *times],
                range(len(times) + 1),
                where="post",
                color="#888888",
                lw=1.5,
                label="slow clients connected",
            )
            drawn_clients = True
        held = p.get("held_slots")
        if held:
            count_ax.axhline(held, color=color, ls=":", lw=1)
            count_ax.annotate(
                f"{held:g} threads: stalls here",
                (0.01, held),
                xycoords=("axes fraction", "data"),
                fontsize=7,
                color=color,
                va="bottom",
            )
    ax.set_yscale("log")
    ax.set_xlabel("time since the probe started (s)")
    ax.set_ylabel(f"/hello latency, from its intended start (ms, log; {PROBE_RATE} probes/s)")
    ax.set_title("a /hello probe while slow clients connect")
    ax.grid(alpha=0.3)
    count_ax.set_ylabel("slow clients connected (grey)")
    count_ax.set_ylim(0, None)
    handles, labels = ax.get_legend_handles_labels()
    h2, l2 = count_ax.get_legend_handles_labels()
    ax.legend(handles + h2, labels + l2, fontsize=7, loc="upper left", bbox_to_anchor=(0, 0.9))

    # Right: how each server ended the slow connections.
    names = [p["series"] for p in data["points"]]
    bottom = np.zeros(len(names))
    outcome_colors = {
        "answered": "#2ca02c",
        "closed": "#ff7f0e",
        "reset": "#d62728",
        "timed_out": "#bbbbbb",
        "refused": "#000000",
    }
    for outcome in OUTCOMES:
        counts = np.array(
            [(p.get("slow") or {}).get("summary", {}).get(outcome, 0) for p in data["points"]],
            float,
        )
        if counts.any():
            bars.barh(
                range(len(names)),
                counts,
                left=bottom,
                color=outcome_colors[outcome],
                label=outcome.replace("_", " "),
            )
            bottom += counts
    bars.set_yticks(range(len(names)), [n.replace(", ", ",\n", 1) for n in names], fontsize=7)
    bars.invert_yaxis()
    bars.set_xlabel("slow clients")
    bars.set_title("how each slow connection ended")
    bars.legend(fontsize=7)


SLOW_CLIENTS = Experiment(
    "slow_clients",
    "Slow clients: a /hello probe while clients trickle their headers",
    "A sync worker is held by one slow client and gthread by one per thread; the event loop "
    "and nginx wait for all of them at once, so the probe stays fast.",
    jobs_slow_clients,
    draw_slow_clients,
    size=(12, 5),
    needs=nginx_missing,
    note=False,  # latency over time: no throughput bars, no Little's-law line
    shares_servers=False,  # slow clients get workers killed: every server starts fresh
    side_by_side=True,  # they wait on sockets: five servers held at once take one's time
)


# --------------------------------------------------------------------------- scale out


def jobs_scale_out(quick: bool) -> list[Job]:
    counts = [1, 2] if quick else [1, 2, 3, 4]
    users = 8

    def load(path: str) -> LoadSpec:  # the usual closed-loop point, 3 s long in full
        return closed_load(path, users, quick, duration=None if quick else 3.0)

    out = []
    for n in counts:
        # One sync worker per instance: each instance is exactly one slot.
        spec = FrontSpec(ServerSpec("wsgi"), instances=n)
        out.append(
            Job(
                f"I/O: /io?ms=100, {users} users",
                spec,
                load("/io?ms=100"),
                x=n,
                keep_records=True,
            )
        )
        out.append(
            Job(
                f"CPU: /cpu?ms=20, {users} users",
                spec,
                load("/cpu?ms=20"),
                x=n,
                keep_records=True,
            )
        )
    return out


def draw_scale_out(data: dict, fig) -> None:
    ax, share_ax = fig.subplots(1, 2)
    series = by_series(data["points"])
    for i, (name, pts) in enumerate(series.items()):
        plot_throughput(ax, name, pts, COLORS[i % len(COLORS)])
    ax.set_xlabel("app server instances behind nginx (1 sync worker each)")
    ax.set_ylabel("throughput (requests/s)")
    ax.set_xticks(sorted({p["x"] for p in data["points"]}))
    ax.set_title("throughput (dashed: Little's law)")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7)

    # Each instance's share of the I/O requests, from the X-Worker-Pid header.
    io = next((pts for name, pts in series.items() if name.startswith("I/O")), [])
    for p in io:
        pids = Counter(
            pid
            for pid, st in zip(p["records"]["worker_pid"], p["records"]["status"], strict=True)
            if st == 200
        )
        total = sum(pids.values()) or 1
        left = 0.0
        for j, (_, n) in enumerate(sorted(pids.items())):
            share = n / total
            share_ax.barh(
                p["x"],
                share,
                left=left,
                color=COLORS[j % len(COLORS)],
                alpha=0.8,
                edgecolor="white",
            )
            share_ax.annotate(
                f"{share:.0%}", (left + share / 2, p["x"]), ha="center", va="center", fontsize=7
            )
            left += share
    share_ax.set_xlim(0, 1)
    share_ax.set_ylabel("instances")
    share_ax.set_yticks([p["x"] for p in io])
    share_ax.set_xlabel("share of the I/O requests each instance served (X-Worker-Pid)")
    share_ax.set_title("nginx round robin: every instance an equal share")


SCALE_OUT = Experiment(
    "scale_out",
    "Scaling out: nginx balancing separate app server instances",
    "Waiting scales with instances as Little's law says; "
    "CPU work stops at the cores the servers may use.",
    jobs_scale_out,
    draw_scale_out,
    needs=nginx_missing,
)
