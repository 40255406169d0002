"""Every figure the lab draws, in the order `make charts` measures them.

Adding a figure is adding its Experiment to a topic module and one line here.
"""

from __future__ import annotations

from pathlib import Path

from ..base.paths import FIGURES_DIR
from . import cpu_cores, cpu_offload, fastapi, freethreaded, front, honesty, io_wait
from .experiment import Experiment, run_experiment

EXPERIMENTS: list[Experiment] = [
    io_wait.WSGI_VS_ASGI,
    io_wait.TIMELINES,
    io_wait.BLOCKING,
    io_wait.THREADPOOL,
    fastapi.FASTAPI,
    fastapi.THREADPOOL_CLIFF,
    cpu_cores.GIL,
    cpu_cores.WORKERS,
    cpu_cores.MEMORY,
    cpu_offload.CPU_OFFLOAD,
    cpu_offload.COST_PER_REQUEST,
    freethreaded.FREETHREADED,
    honesty.OPEN_VS_CLOSED,
    honesty.CLIENT_CEILING,
    front.SLOW_CLIENTS,
    front.SCALE_OUT,
]
REGISTRY: dict[str, Experiment] = {e.name: e for e in EXPERIMENTS}


def get(name: str) -> Experiment:
    """The experiment called ``name``; a KeyError names the known ones."""
    try:
        return REGISTRY[name]
    except KeyError:
        raise KeyError(f"unknown experiment {name!r}; known: {', '.join(REGISTRY)}") from None


def run(name: str, out_dir: Path = FIGURES_DIR, **kwargs) -> Path:
    """Measure (or, with replot=True, redraw) one experiment by name; return its PNG."""
    return run_experiment(get(name), out_dir=out_dir, **kwargs)
