"""Lab 06 - threads without the GIL. This is the file you hand in.

A raw ASGI app (no framework; see servers/asgi_minimal.py in the repository):

    GET /primes?below=N   counts the primes below N, in pure Python: CPU work
    GET /stats            what every request so far added up to

Run THIS copy the way the grader does - on a free-threaded Python (3.13t),
Uvicorn with 2 pool threads - from the root of the Concurrency Lab repository:

    make freethreaded                                   # once: builds Python 3.13t
    make try LAB=06 SUBMISSION=path/to/this/folder

On the GIL build this file is slow but right. Without the GIL it is fast and
wrong. Make it fast and right.
"""

import asyncio
import json
import os
import threading
from concurrent.futures import ThreadPoolExecutor
from urllib.parse import parse_qs

# The pool the CPU work runs in. With the GIL its threads take turns; on a
# free-threaded Python they compute on several cores at once.
POOL = ThreadPoolExecutor(max_workers=int(os.environ.get("THREADPOOL_SIZE", "2")))

# What every request so far added up to: how many requests, how many numbers
# were checked for primality. Shared by every pool thread.
stats = {"requests": 0, "checked": 0}
stats_lock = threading.Lock()


def is_prime(n):
    if n < 2:
        return False
    d = 2
    while d * d <= n:
        if n % d == 0:
            return False
        d += 1
    return True


def count_primes(below):
    """Runs in a pool thread."""
    primes = 0
    # Right, but the lock is held for the whole computation: one request at a time.
    with stats_lock:
        for n in range(below):
            stats["checked"] += 1
            if is_prime(n):
                primes += 1
        stats["requests"] += 1
    return primes


async def handle(path, query):
    if path == "/primes":
        below = int(query.get("below", ["10000"])[0])
        primes = await asyncio.get_running_loop().run_in_executor(POOL, count_primes, below)
        return 200, {"below": below, "primes": primes}
    if path == "/stats":
        with stats_lock:  # a copy taken while no thread is half-way through an update
            return 200, dict(stats)
    return 404, {"error": "not found"}


async def app(scope, receive, send):
    if scope["type"] != "http":
        return
    query = parse_qs(scope["query_string"].decode("latin-1"))
    try:
        status, body = await handle(scope["path"], query)
    except ValueError:
        status, body = 400, {"error": "below must be an integer"}
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [(b"content-type", b"application/json")],
        }
    )
    await send({"type": "http.response.body", "body": json.dumps(body).encode() + b"\n"})
