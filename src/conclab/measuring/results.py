"""Saving and loading runs: raw records as CSV, a JSON summary beside them.

Every write is atomic (conclab.base.files.atomic_write), so an interrupted run
never leaves half a file, and a reader never sees one.
"""

from __future__ import annotations

import csv
import io
import json
import math
import os
import platform
import time
from importlib import metadata
from pathlib import Path

from ..base import system
from ..base.cores import cgroup_quota, placement, usable_cores
from ..base.files import atomic_write
from ..base.specs import FIELDS
from .summary import Summary

PACKAGES = (
    "gunicorn",
    "uvicorn",
    "uvicorn-worker",
    "granian",
    "flask",
    "fastapi",
    "starlette",
    "httpx",
    "httpx-aiohttp",
    "aiohttp",
    "uvloop",
    "httptools",
    "anyio",
)


def machine() -> dict:
    """What the numbers were measured on: they mean little without it."""
    versions = {}
    for name in PACKAGES:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            versions[name] = None
    return {
        "cores": os.cpu_count(),
        "affinity_cores": len(system.cpu_ids()),
        "cgroup_cpu_quota": cgroup_quota() if system.has_cgroups() else None,
        "usable_cores": usable_cores(),
        "python": platform.python_version(),
        "platform": platform.platform(),
        "os": system.os_name(),
        "pinning": placement(),
        "memory": system.memory_kind(),
        "packages": versions,
        # One line per number this system measures differently (none on Linux).
        **({"notes": system.notes()} if system.notes() else {}),
    }


def now_iso() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%S%z")


def _clean(obj):
    """JSON has no NaN or infinity: write them as null. A Summary is written as its dict."""
    if isinstance(obj, Summary):
        return _clean(obj.to_dict())
    if isinstance(obj, float) and not math.isfinite(obj):
        return None
    if isinstance(obj, dict):
        return {str(k): _clean(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [_clean(v) for v in obj]
    return obj


def to_json(obj) -> str:
    return json.dumps(_clean(obj), indent=2, sort_keys=False) + "\n"


def write_json(path: str | Path, obj: object) -> None:
    atomic_write(Path(path), to_json(obj))


def read_json(path: str | Path) -> dict:
    return json.loads(Path(path).read_text())


def records_csv(records) -> str:
    buf = io.StringIO()
    writer = csv.writer(buf)
    writer.writerow(FIELDS)
    writer.writerows(records)
    return buf.getvalue()


def write_records(path: str | Path, records: list[tuple]) -> None:
    atomic_write(Path(path), records_csv(records))


def read_records(path) -> list[tuple]:
    """Records back from CSV, as the driver's tuples."""
    out = []
    with open(path, newline="") as f:
        reader = csv.reader(f)
        header = next(reader)
        if tuple(header) != FIELDS:
            raise ValueError(f"{path}: not a records file (columns {header})")
        for row in reader:
            out.append(
                tuple(
                    v if name in ("error", "path") else int(v)
                    for name, v in zip(FIELDS, row, strict=True)
                )
            )
    return out


def run_document(result, server: dict | None = None, extra: dict | None = None) -> dict:
    """The JSON summary of one run: spec, load, machine, time and the numbers."""
    doc = {
        **result.summary.to_dict(),
        "url": result.url,
        "load": result.load.to_dict(),
        "server": server,
        "machine": machine(),
        "time": now_iso(),
        "status": "failed"
        if result.failed
        else "interrupted"
        if result.interrupted
        else "complete",
    }
    if extra:
        doc.update(extra)
    return doc


def save_run(result, json_path=None, records_path=None, server=None, extra=None) -> dict:
    """Write the records (CSV) first, then the summary (JSON). Returns the summary document."""
    doc = run_document(result, server, extra)
    if records_path:
        write_records(records_path, result.records)
        doc["records_file"] = str(records_path)
    if json_path:
        write_json(json_path, doc)
    return doc
