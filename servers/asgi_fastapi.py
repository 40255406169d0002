"""FastAPI on Uvicorn: the same routes, written the way FastAPI users write them.

Run it yourself:
    uvicorn --app-dir servers --port 8000 asgi_fastapi:app
    THREADPOOL_SIZE=80 uvicorn --app-dir servers --port 8000 asgi_fastapi:app
    gunicorn --chdir servers --bind 127.0.0.1:8000 -k uvicorn_worker.UvicornWorker asgi_fastapi:app

FastAPI's one rule decides everything here (fastapi.tiangolo.com/async/):
an `async def` endpoint runs on the event loop, so it must never block; a
plain `def` endpoint runs in a thread of AnyIO's pool, which the loop awaits.
That pool has 40 tokens by default, shared by every `def` endpoint, `def`
dependency and sync background task of the process: the 41st waits.
"""

import asyncio
import itertools
import os
import time
from contextlib import asynccontextmanager
from typing import Annotated

import anyio.to_thread
from fastapi import Depends, FastAPI, HTTPException, Request
from fastapi.responses import JSONResponse, PlainTextResponse
from stamps import ServerStamps, ran_at, reports_its_thread, timed
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException as StarletteHTTPException
from workload import BadRequest, burn_cpu, hash_cpu, interpreter_report, parse_ms, process_pool

THREADPOOL_SIZE = int(os.environ.get("THREADPOOL_SIZE", "40"))
_counter = itertools.count(1)  # one per process, like the other two apps


@asynccontextmanager
async def lifespan(app):
    # The limiter belongs to the running event loop, so it is set once the
    # loop runs: here. loop.set_default_executor() would change nothing -
    # FastAPI never uses asyncio's executor (fastapi#4221).
    anyio.to_thread.current_default_thread_limiter().total_tokens = THREADPOOL_SIZE
    with process_pool() as processes:
        yield {"processes": processes}  # handlers find it in request.state


# redirect_slashes=False: /hello/ is an unknown path (404), as on the other servers.
app = FastAPI(lifespan=lifespan, default_response_class=PlainTextResponse, redirect_slashes=False)
# Every response says which process and thread ran it, and when (stamps.py).
app.add_middleware(ServerStamps)


async def query_ms(request: Request) -> int:
    # `async def` on purpose: a plain `def` dependency would borrow a pool
    # token too, and /io would queue behind 40 slow `def` requests. Our own
    # parser, not `ms: int`: the same 400 and reason as the other servers.
    try:
        return parse_ms(request.query_params.getlist("ms"))
    except BadRequest as err:
        raise HTTPException(400, str(err)) from None


Ms = Annotated[int, Depends(query_ms)]


@app.exception_handler(StarletteHTTPException)  # Starlette's: it raises the 404s
async def http_error(request, exc):  # 400, 404, 405: one line of text, not JSON
    return PlainTextResponse(f"{exc.detail}\n", exc.status_code, exc.headers)


@app.get("/health")
async def health():
    return "ok\n"


@app.get("/interpreter")
async def interpreter():
    # Which Python serves, and is its GIL on right now (see workload.py).
    return JSONResponse(interpreter_report())


@app.get("/hello")
async def hello():
    return "hello\n"


@app.get("/io")
async def io(ms: Ms):
    await asyncio.sleep(ms / 1000)  # gives the loop back while it waits
    return f"slept {ms} ms\n"


@app.get("/blocking-io")
async def blocking_io(ms: Ms):
    # THE MISTAKE (fastapi#2484): `async def` promises "safe on the loop", then
    # time.sleep freezes the loop, and every request of this process waits.
    time.sleep(ms / 1000)
    return f"blocked the loop for {ms} ms\n"


@app.get("/offload-io")
async def offload_io(ms: Ms):
    # The fix inside `async def`: by hand, what FastAPI does for a `def` endpoint.
    await run_in_threadpool(reports_its_thread(time.sleep), ms / 1000)
    return f"slept {ms} ms in a pool thread\n"


@app.get("/def-io")
@reports_its_thread
def def_io(ms: Ms):
    time.sleep(ms / 1000)  # fine in a plain `def`: it blocks a pool thread only
    return f"slept {ms} ms in a pool thread\n"


@app.get("/def-health")
@reports_its_thread
def def_health():
    return "ok\n"  # no work, yet it needs a token: behind 40 slow `def`s it waits


@app.get("/pool")
async def pool():
    # `async def`, so it answers even when every token is taken.
    limiter = anyio.to_thread.current_default_thread_limiter()
    return JSONResponse({"borrowed": limiter.borrowed_tokens, "total": limiter.total_tokens})


@app.get("/cpu")
async def cpu(ms: Ms):
    burn_cpu(ms)  # CPU work blocks the loop just like time.sleep does
    return f"computed {ms} ms on the loop\n"


@app.get("/offload-cpu")
async def offload_cpu(ms: Ms):
    # Frees the loop, but pool threads take turns holding the GIL.
    await run_in_threadpool(reports_its_thread(burn_cpu), ms)
    return f"computed {ms} ms in a pool thread\n"


@app.get("/hash-cpu")
async def hash_in_pool(ms: Ms):
    # C code that lets go of the GIL: pool threads DO share the cores.
    await run_in_threadpool(reports_its_thread(hash_cpu), ms)
    return f"hashed {ms} ms in a pool thread\n"


@app.get("/process-cpu")
async def process_cpu(ms: Ms, request: Request):
    # A process per core, each with its own GIL; ms and the answer cross a pipe.
    loop = asyncio.get_running_loop()
    ran_at(*await loop.run_in_executor(request.state.processes, timed, burn_cpu, ms))
    return f"computed {ms} ms in a pool process\n"


@app.get("/state")
async def state():
    return JSONResponse({"pid": os.getpid(), "count": next(_counter)})
