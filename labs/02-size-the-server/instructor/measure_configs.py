"""Measure the configs of NOTES.md's table under the grader's own load and settings.

    .venv/bin/python labs/02-size-the-server/instructor/measure_configs.py

Writes figures/data/lab02_configs.json (about two minutes): for each
(workers, threads), Little's law's prediction and the grader's measurement.
"""

import json
import os
import runpy
import tempfile
from pathlib import Path

from tqdm import tqdm

from conclab.base.paths import FIGURES_DIR
from conclab.base.files import atomic_write
from conclab.measuring.results import machine, now_iso

HERE = Path(__file__).resolve().parent
GRADER = runpy.run_path(str(HERE.parent / "grader" / "test_sizing.py"))
CONFIGS = [(1, 1), (5, 1), (2, 5), (3, 4), (2, 8), (16, 1), (1, 16)]  # (workers, threads)


def main(out: Path = FIGURES_DIR / "data" / "lab02_configs.json") -> None:
    users, service_s = GRADER["USERS"], GRADER["SERVICE_S"]
    rows = []
    load_before = os.getloadavg()[0]  # the machine's other work: these are timings
    with tempfile.TemporaryDirectory(prefix="conclab-lab02-") as folder:
        for workers, threads in tqdm(CONFIGS, desc="lab 02 configs"):
            conf = Path(folder) / f"w{workers}t{threads}" / "gunicorn.conf.py"
            conf.parent.mkdir()
            conf.write_text(f"workers = {workers}\nthreads = {threads}\n")
            summary = GRADER["measure"](conf, threads)
            slots = workers * threads
            rows.append(
                {
                    "workers": workers,
                    "threads": threads,
                    "slots": slots,
                    "predicted_rps": min(users, slots) / service_s,
                    "throughput_rps": summary.throughput_rps,
                    "latency_ms": summary.latency_ms.to_dict(),
                }
            )
    atomic_write(
        out,
        json.dumps(
            {
                "name": "lab02_configs",
                "users": users,
                "service_s": service_s,
                "machine": machine(),
                "time": now_iso(),
                "load_average_1min": [load_before, os.getloadavg()[0]],
                "configs": rows,
            },
            indent=1,
        )
        + "\n",
    )
    for row in rows:
        print(
            row["workers"],
            row["threads"],
            round(row["predicted_rps"], 1),
            round(row["throughput_rps"], 1),
            round(row["latency_ms"]["mean"]),
            round(row["latency_ms"]["p99"]),
        )


if __name__ == "__main__":
    main()
