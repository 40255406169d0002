"""Two measurements behind docs/reliability.md's slow-client rows.

    python -m conclab.figures.slow_limits        # or: make slow-limits

1. ``slow_limit.json``: K slow clients (``conclab slowclients``) against Uvicorn
   started with ``--limit-concurrency N``, then normal ``/hello`` requests. Uvicorn
   counts every open connection against the limit, finished header or not, and it
   has no header-read timeout: slow clients hold the slots and the normal clients
   get 503. Then the same behind nginx, whose ``client_header_timeout`` drops the
   slow clients and which forwards only complete requests.
2. ``nginx_memory.json``: the PSS of nginx's processes with 0, 1,000 and 2,000 idle
   slow clients held open, with the template's buffers (``servers/nginx.conf``).

Both run on loopback, bounded in clients and seconds (about two minutes in all).
"""

from __future__ import annotations

import json
import re
import threading
import time
from collections import Counter
from pathlib import Path

import httpx

from ..base.files import atomic_write
from ..base.paths import FIGURES_DIR, SERVERS_DIR
from ..base.specs import ServerSpec
from ..measuring.results import machine, now_iso
from ..measuring.slowclients import SlowLoad, run_slow_clients
from ..processes.launcher import serve
from ..processes.nginx import FrontSpec, serve_front

LIMIT = 10  # Uvicorn's --limit-concurrency in part 1
NORMAL = 20  # normal /hello requests per case, one connection each
HOLD_S = 3.0  # seconds the slow clients get to connect before the normal requests
HEADER_TIMEOUT_S = 5  # nginx's client_header_timeout in part 1
MEMORY_CLIENTS = (0, 1000, 2000)  # 2,000: the most conclab slowclients opens


def _normal_requests(url: str) -> dict:
    statuses: Counter = Counter()
    for _ in range(NORMAL):
        try:
            statuses[str(httpx.get(url + "/hello", timeout=3.0).status_code)] += 1
        except httpx.HTTPError as err:
            statuses[type(err).__name__] += 1
    return dict(sorted(statuses.items()))


def _with_slow_clients(
    url: str, clients: int, duration: float, during
) -> tuple[dict | None, object]:
    """Hold ``clients`` slow connections to ``url``; after HOLD_S call ``during()``."""
    if not clients:
        return None, during()
    out: dict = {}

    def hold():
        out["result"] = run_slow_clients(
            url,
            SlowLoad(
                clients=clients,
                duration=duration,
                interval=1.0,
                stagger=min(0.005, HOLD_S / 2 / clients),
            ),
        )

    thread = threading.Thread(target=hold)
    thread.start()
    time.sleep(HOLD_S)
    value = during()
    thread.join()
    return out["result"].summary(), value


def limit_cases() -> list[dict]:
    """Normal requests' statuses with K slow clients, Uvicorn alone and behind nginx."""
    app = ServerSpec("asgi", limit_concurrency=LIMIT)
    cases = []
    with serve(app) as server:
        for k in (0, LIMIT // 2, LIMIT - 1, LIMIT):
            slow, statuses = _with_slow_clients(
                server.url, k, HOLD_S + 4, lambda: _normal_requests(server.url)
            )
            cases.append(
                {
                    "front": "none",
                    "limit_concurrency": LIMIT,
                    "slow_clients": k,
                    "normal": statuses,
                    "slow": slow,
                }
            )
    front = FrontSpec(app=app, client_header_timeout=HEADER_TIMEOUT_S)
    with serve_front(front) as nginx:
        for k in (LIMIT, 10 * LIMIT):
            # The slow clients would go on for 12 s; nginx drops them after its timeout.
            slow, statuses = _with_slow_clients(
                nginx.url, k, 12.0, lambda: _normal_requests(nginx.url)
            )
            cases.append(
                {
                    "front": "nginx",
                    "client_header_timeout_s": HEADER_TIMEOUT_S,
                    "limit_concurrency": LIMIT,
                    "slow_clients": k,
                    "normal": statuses,
                    "slow": slow,
                }
            )
    return cases


def memory_cases() -> list[dict]:
    """PSS of nginx's processes while K idle slow clients are held open."""
    cases = []
    with serve_front(FrontSpec(app=ServerSpec("asgi"), client_header_timeout=60)) as front:
        for k in MEMORY_CLIENTS:
            slow, pss = _with_slow_clients(front.url, k, HOLD_S + 3, front.nginx.rss_bytes)
            cases.append(
                {
                    "slow_clients": k,
                    "nginx_pss_bytes": pss,
                    "slow": slow,
                    "worker_connections_alert": "worker_connections are not enough"
                    in front.nginx.log(),
                }
            )
    base = cases[0]["nginx_pss_bytes"]
    for case in cases[1:]:
        case["bytes_per_client"] = (case["nginx_pss_bytes"] - base) / case["slow_clients"]
    return cases


def worker_connections() -> int:
    """The template's ``worker_connections``: every client
    connection, and every one to an app, takes one."""
    conf = (SERVERS_DIR / "nginx.conf").read_text()
    return int(re.search(r"^\s*worker_connections\s+(\d+);", conf, re.M).group(1))


def main(out: Path = FIGURES_DIR / "data") -> None:
    common = {"machine": machine(), "time": now_iso()}
    limit = {
        "name": "slow_limit",
        "limit_concurrency": LIMIT,
        "normal_requests": NORMAL,
        **common,
        "cases": limit_cases(),
    }
    atomic_write(Path(out) / "slow_limit.json", json.dumps(limit, indent=1) + "\n")
    memory = {
        "name": "nginx_memory",
        "worker_connections": worker_connections(),
        **common,
        "cases": memory_cases(),
    }
    atomic_write(Path(out) / "nginx_memory.json", json.dumps(memory, indent=1) + "\n")
    for doc in (limit, memory):
        for case in doc["cases"]:
            print(
                doc["name"],
                {k: v for k, v in case.items() if k != "slow"},
                (case.get("slow") or {}).get("statuses"),
            )


if __name__ == "__main__":
    main()
