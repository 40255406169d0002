"""A raw ASGI app served by Uvicorn: the async half of the lab. No framework.

Run it yourself:
    uvicorn --app-dir servers --port 8000 asgi_minimal:app
    THREADPOOL_SIZE=4 uvicorn --app-dir servers --port 8000 asgi_minimal:app
    uvicorn --app-dir servers --port 8000 --workers 2 asgi_minimal:app

An ASGI app is a coroutine: app(scope, receive, send). Uvicorn runs all of them
on ONE thread, in an event loop. Every `await` is a point where this coroutine
says "I am waiting, run someone else". So one thread can hold hundreds of
requests at once - as long as nobody blocks without awaiting.
"""

import asyncio
import itertools
import json
import os
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from urllib.parse import parse_qs

from stamps import timed
from workload import (
    BadRequest,
    burn_cpu,
    hash_cpu,
    interpreter_report,
    parse_ms,
    process_pool,
    work_cpu,
)

# The pool for blocking work. Starlette and FastAPI do the same with
# anyio.to_thread.run_sync, whose default limit is 40 threads.
POOL_SIZE = int(os.environ.get("THREADPOOL_SIZE", "40"))
_pool = None
_processes = None  # the process pool (see lifespan), one process per usable core
_counter = itertools.count(1)  # one per process, like the WSGI app


def get_pool():
    global _pool
    if _pool is None:
        _pool = ThreadPoolExecutor(max_workers=POOL_SIZE, thread_name_prefix="offload")
    return _pool


async def offload(work, ms, pool=None):
    # The event loop hands the call to a pool thread and awaits the result.
    # Only POOL_SIZE calls run at once; the rest queue inside the pool.
    return await asyncio.get_running_loop().run_in_executor(pool or get_pool(), timed, work, ms)


def sleep_blocking(ms):
    time.sleep(ms / 1000)


async def handle(path, query):
    """Return (status, body, (thread, start_ns, end_ns) or None)."""
    ms = lambda: parse_ms(query.get("ms", []))  # noqa: E731
    if path == "/health":
        return 200, "ok\n", None
    if path == "/hello":
        return 200, "hello\n", None
    if path == "/interpreter":
        # Which Python serves, and is its GIL on right now (see workload.py).
        return 200, json.dumps(interpreter_report()) + "\n", None
    if path == "/io":
        # Awaiting a sleep gives the loop back: thousands can wait at once.
        n = ms()
        await asyncio.sleep(n / 1000)
        return 200, f"slept {n} ms\n", None
    if path == "/blocking-io":
        # THE ANTI-PATTERN. time.sleep inside `async def` never awaits, so the
        # loop's only thread is stuck here: no other request - not even
        # /health - is served until it returns.
        n = ms()
        time.sleep(n / 1000)
        return 200, f"blocked the loop for {n} ms\n", None
    if path == "/offload-io":
        # The fix when you must call blocking code: run it in a thread.
        n = ms()
        return 200, f"slept {n} ms in a pool thread\n", await offload(sleep_blocking, n)
    if path == "/cpu":
        # CPU work on the loop blocks it just like time.sleep does.
        n = ms()
        burn_cpu(n)
        return 200, f"computed {n} ms on the loop\n", None
    if path == "/offload-cpu":
        # Offloading frees the loop, but pool threads share the GIL: CPU work
        # still runs one thread at a time. More cores need more processes.
        n = ms()
        return 200, f"computed {n} ms in a pool thread\n", await offload(burn_cpu, n)
    if path == "/offload-work":
        # A fixed amount of work (not of CPU time) in a pool thread: how long
        # it takes shows how fast this interpreter runs Python.
        n = parse_ms(query.get("units", []), "units")
        return 200, f"did {n} units of work in a pool thread\n", await offload(work_cpu, n)
    if path == "/hash-cpu":
        # C code that lets go of the GIL: pool threads DO share the cores.
        n = ms()
        return 200, f"hashed {n} ms in a pool thread\n", await offload(hash_cpu, n)
    if path == "/process-cpu":
        # Each process has its own interpreter and its own GIL. The price:
        # arguments and results are pickled and cross a pipe.
        n = ms()
        return 200, f"computed {n} ms in a pool process\n", await offload(burn_cpu, n, _processes)
    if path == "/state":
        body = f'{{"pid": {os.getpid()}, "count": {next(_counter)}}}\n'
        return 200, body, None
    return 404, "not found\n", None


async def lifespan(receive, send):
    global _processes
    with process_pool() as _processes:
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                get_pool()
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                if _pool is not None:
                    _pool.shutdown(wait=False, cancel_futures=True)
                await send({"type": "lifespan.shutdown.complete"})
                return


async def app(scope, receive, send):
    if scope["type"] == "lifespan":
        return await lifespan(receive, send)
    if scope["type"] != "http":
        return  # websockets are not part of this lab
    start = time.monotonic_ns()
    thread = threading.get_native_id()
    query = parse_qs(scope["query_string"].decode("latin-1"), keep_blank_values=True)
    if scope["method"] not in ("GET", "HEAD"):
        status, body, ran = 405, "only GET\n", None
    else:
        try:
            status, body, ran = await handle(scope["path"], query)
        except BadRequest as err:
            status, body, ran = 400, f"{err}\n", None
    if ran is not None:  # work done in a pool thread: report that thread
        thread, start, end = ran
    else:
        end = time.monotonic_ns()
    content_type = (
        b"application/json" if scope["path"] in ("/state", "/interpreter") else b"text/plain"
    )
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [
                (b"content-type", content_type),
                (b"x-worker-pid", str(os.getpid()).encode()),
                (b"x-thread", str(thread).encode()),
                (b"x-start-ns", str(start).encode()),
                (b"x-end-ns", str(end).encode()),
            ],
        }
    )
    await send({"type": "http.response.body", "body": body.encode()})
