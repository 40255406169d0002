# ---
# jupyter:
#   jupytext:
#     formats: ipynb,py:percent
#     notebook_metadata_filter: -jupytext.text_representation.jupytext_version
#     text_representation:
#       extension: .py
#       format_name: percent
#       format_version: '1.3'
#   kernelspec:
#     display_name: Python 3 (ipykernel)
#     language: python
#     name: python3
# ---

# %% tags=["setup", "parameters"]
# Setup - run this cell first: imports and parameters.
# %matplotlib inline
import asyncio
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Annotated

import anyio.to_thread
import httpx
from fastapi import Depends, FastAPI

from conclab.base.paths import SERVERS_DIR, quick_mode
from conclab.figures.experiment import figure
from conclab.figures.fastapi import DEF_SLEEP, DEFAULT_TOKENS, RAISED_TOKENS
from conclab.figures.registry import REGISTRY
from conclab.measuring.theory import parse_route
from conclab.teaching import teach

QUICK = quick_mode()                   # CONCLAB_QUICK=1: fewer points, shorter runs
RESULTS_DIR = teach.results_dir("05")  # the experiments' per-point files (git-ignored)
# slow requests in flight, one point each
CLIFF_NS = [39, 40, 49, 50] if QUICK else [30, 35, 39, 40, 41, 45, 49, 50, 51, 55]
CALLS = 100                            # blocking calls started at once in section 4
CALL_S = 0.2                           # each of them sleeps this long (seconds)
HOLD_S = 0.5                           # section 5: how long the pool stays full (seconds)

# %% [markdown]
# # 05 · FastAPI: `def` or `async def`?
#
# **Question.** FastAPI lets you write every endpoint either as `def` or as `async def`. Which
# should you choose - and what happens to a server when you choose wrong?
#
# ## 1. One rule, three endpoints
#
# FastAPI's rule ([FastAPI: Concurrency and async / await](https://fastapi.tiangolo.com/async/)):
#
# - an **`async def`** path operation is called on the event loop. FastAPI trusts it to `await`
#   whatever it waits for; a blocking call inside it blocks the whole worker (notebook 03);
# - a plain **`def`** path operation is run "in an external threadpool that is then awaited":
#   the loop stays free while a pool thread blocks.
#
# That pool is AnyIO's. Starlette, under FastAPI, sends every sync endpoint, sync background
# task, `FileResponse` and `UploadFile` through `anyio.to_thread.run_sync`, whose default
# limiter has **40 tokens** - 40 threads at once per process, shared by all of them <!-- claim: 40 = pkg:anyio.thread_tokens -->
# ([Starlette: Thread Pool](https://www.starlette.io/threadpool/)).
#
# The lab's FastAPI app (`servers/asgi_fastapi.py`) has the same 100 ms wait written three <!-- claim: 100 = file:src/conclab/figures/fastapi.py -->
# ways:

# %%
source = (SERVERS_DIR / "asgi_fastapi.py").read_text()
for route in ("/io", "/def-io", "/blocking-io"):
    handler = source.split(f'@app.get("{route}")')[1].split("\n\n\n")[0]
    print(f'@app.get("{route}"){handler}\n')

# %% [markdown]
# (`@reports_its_thread` only adds the response headers that name the pool thread; `Ms` parses
# `?ms=`.) Each style has a slot count c for Little's law, X = min(N, c) / S:
#
# | endpoint | where it waits | slots c |
# | --- | --- | --- |
# | `async def` + `await asyncio.sleep` | on the loop, which serves others meanwhile | no limit |
# | `def` + `time.sleep` | in a pool thread, holding one of AnyIO's tokens | 40 (the tokens) <!-- claim: 40 = pkg:anyio.thread_tokens --> |
# | `async def` + `time.sleep` | on the loop, which it blocks | 1 <!-- claim: 1 = given --> |
#
# ## 2. Predict, then measure: 100 ms of waiting, three ways <!-- claim: 100 = file:src/conclab/figures/fastapi.py -->
#
# The `fastapi` experiment of `make charts` sends `N` closed-loop users at each endpoint, each
# request waiting 100 ms; one more series raises AnyIO's limit to 50 tokens <!-- claim: 100 = file:src/conclab/figures/fastapi.py --> <!-- claim: 50 = file:src/conclab/figures/fastapi.py -->
# (`THREADPOOL_SIZE=50`, see section 4). **Predict** first:
#
# - the `def` endpoint with **64 users**: how many requests per second? <!-- claim: 64 = given -->
# - the `async def` + `time.sleep` endpoint with **4 users**: how many requests per second? <!-- claim: 4 = given -->

# %%
teach.plan(REGISTRY["fastapi"])

# %%
my_guess_def_64 = None       # requests per second
my_guess_blocking_4 = None   # requests per second


# %%
def pick(data, series, x):
    """The measured point of ``series`` at ``x``."""
    return next(p for p in data["points"] if p["series"] == series and p["x"] == x)

data = teach.measure(REGISTRY["fastapi"], results_dir=RESULTS_DIR, fresh=True)
def_64 = pick(data, DEF_SLEEP.format(DEFAULT_TOKENS), 64)
blocking_4 = pick(data, "async def + time.sleep (/blocking-io)", 4)
teach.check_guess(my_guess_def_64, def_64["summary"].throughput_rps, what="def, 64 users",
                  theory=def_64["prediction"]["throughput_rps"])
teach.check_guess(my_guess_blocking_4, blocking_4["summary"].throughput_rps,
                  what="async def + time.sleep, 4 users",
                  theory=blocking_4["prediction"]["throughput_rps"])
figure(REGISTRY["fastapi"], data)

# %%
teach.littles_law_table(data)

# %% [markdown]
# **Reading the chart.** Below 40 users the `def` and the `async def` + `await` endpoints are
# the same: every request gets its own slot and takes 100 ms. Above 40 the `def` endpoint stops <!-- claim: 40 = pkg:anyio.thread_tokens --> <!-- claim: 100 = file:src/conclab/figures/fastapi.py -->
# at 40 tokens / 0.1 s = 400 req/s - extra users only queue for a token, and its latency grows <!-- claim: 40 = pkg:anyio.thread_tokens --> <!-- claim: 0.1 = calc:100 / 1000 --> <!-- claim: 400 = calc:40 / 0.1 -->
# as N / 400 req/s. `async def` + `await` has no such limit: on the full sweep <!-- claim: 400 = calc:40 / 0.1 -->
# (`figures/fastapi.png`) it stops only where the server's CPU runs out. `async def` + `time.sleep` is a single slot: 1 / 0.1 s = 10 req/s <!-- claim: 0.1 = calc:100 / 1000 --> <!-- claim: 10 = calc:1 / 0.1 --> <!-- claim: 1 = given -->
# whatever the number of users, each waiting N x 100 ms. The dashed lines are Little's law <!-- claim: 100 = file:src/conclab/figures/fastapi.py -->
# with the server's own overhead measured once (the footer gives it), not fitted to the points.
#
# So a plain `def` is the *safe* choice FastAPI's docs recommend when in doubt - it cannot
# freeze the loop - but it is not free: it has a ceiling of its own.
#
# ## 3. Predict, then measure: the 41st request <!-- claim: 41 = calc:40 + 1 -->
#
# Forty tokens are shared by *every* `def` endpoint of the process. Our app has a `def`
# health check, `/def-health`, that does no work at all - yet it needs a token to run. The
# `threadpool_cliff` experiment keeps exactly N slow `def` requests in flight (N users in a
# closed loop on a long `/def-io`), then probes `/def-health` and the `async def` `/health`
# ten times a second. The server's own `/pool` route reports how many tokens are borrowed, so
# we know the N is exact.
#
# **Predict** the `/def-health` latency (p50) with 39 slow requests in flight, and with 40. <!-- claim: 39 = given --> <!-- claim: 40 = given -->

# %%
cliff_40 = teach.only(REGISTRY["threadpool_cliff"], series=[f"{DEFAULT_TOKENS} tokens"], x=CLIFF_NS)
teach.plan(cliff_40)

# %%
my_guess_39_ms = None   # /def-health p50 with 39 slow def requests in flight (ms)
my_guess_40_ms = None   # ... with 40 (ms)


# %%
def probe_p50(data, tokens, n, path="/def-health"):
    point = next(p for p in data["points"] if p["tokens"] == tokens and p["x"] == n)
    return point["probes"][path].latency_ms.p50

cliff = teach.measure(cliff_40, results_dir=RESULTS_DIR, fresh=True)
slow_ms = parse_route(cliff["points"][0]["load"]["path"])[1] * 1000
teach.check_guess(my_guess_39_ms, probe_p50(cliff, DEFAULT_TOKENS, 39),
                  what="/def-health, 39 in flight", unit="ms")
teach.check_guess(my_guess_40_ms, probe_p50(cliff, DEFAULT_TOKENS, 40),
                  what="/def-health, 40 in flight", unit="ms", theory=slow_ms / 2)
figure(REGISTRY["threadpool_cliff"], cliff)

# %% [markdown]
# **Reading the chart.** With 39 slow requests in flight one token is free, and the health check <!-- claim: 39 = calc:40 - 1 -->
# answers at once. With 40 every token is held (the right panel: the server's own count), so <!-- claim: 40 = pkg:anyio.thread_tokens -->
# the health check is the 41st and waits until one of the slow requests ends - anything from <!-- claim: 41 = calc:40 + 1 -->
# 0 to the slow request's full length, half of it on average (the theory printed above). It <!-- claim: 0 = given -->
# does no work; it just queues. The `async def` `/health` next to it needs no token and never
# notices.
#
# A load balancer that probes a `def` health endpoint can therefore declare a busy but healthy
# worker dead. The same queue holds every other sync piece of work of that process: sync
# background tasks, `FileResponse`, `UploadFile`
# ([Starlette: Thread Pool](https://www.starlette.io/threadpool/)).
#
# ## 4. Raising the limit: the setting that does nothing, and the one that works
#
# A common first attempt is asyncio's own knob, `loop.set_default_executor(ThreadPoolExecutor(...))`.
# FastAPI never uses that executor: it goes through AnyIO, whose limiter is separate
# ([fastapi#4221](https://github.com/fastapi/fastapi/issues/4221)). The documented setting is
# AnyIO's limiter, `anyio.to_thread.current_default_thread_limiter().total_tokens = N`, set at
# startup ([Starlette: Thread Pool](https://www.starlette.io/threadpool/)) - which is what our
# app does with `THREADPOOL_SIZE` in its lifespan.
#
# Both on a fresh event loop: 100 blocking calls of 0.2 s each, all at once, through <!-- claim: 100 = cell --> <!-- claim: 0.2 = cell -->
# `anyio.to_thread.run_sync` (what Starlette does for a `def` endpoint). **Predict** how long
# the batch takes after each setting. (40 tokens, 100 calls: 40, then 40, then 20.) <!-- claim: 40 = pkg:anyio.thread_tokens --> <!-- claim: 100 = cell --> <!-- claim: 20 = calc:100 - 2 * 40 -->

# %%
my_guess_executor_s = None   # seconds, after loop.set_default_executor(ThreadPoolExecutor(100))
my_guess_tokens_s = None     # seconds, after total_tokens = 100


# %%
def on_a_fresh_loop(make_coroutine):
    """Run a coroutine on a new event loop in its own thread: its settings end with it."""
    with ThreadPoolExecutor(1) as runner:
        return runner.submit(asyncio.run, make_coroutine()).result()

async def blocking_calls(setting=None, through="anyio"):
    if setting is not None:
        setting()
    run = anyio.to_thread.run_sync if through == "anyio" else asyncio.to_thread
    start = time.perf_counter()
    await asyncio.gather(*(run(time.sleep, CALL_S) for _ in range(CALLS)))
    return time.perf_counter() - start

def bigger_default_executor():
    asyncio.get_running_loop().set_default_executor(ThreadPoolExecutor(CALLS))

def more_tokens():
    anyio.to_thread.current_default_thread_limiter().total_tokens = CALLS

took = {
    "anyio, as it comes (40 tokens)": on_a_fresh_loop(lambda: blocking_calls()),
    "anyio, after set_default_executor(100 threads)":
        on_a_fresh_loop(lambda: blocking_calls(bigger_default_executor)),
    "asyncio.to_thread, after set_default_executor(100 threads)":
        on_a_fresh_loop(lambda: blocking_calls(bigger_default_executor, through="asyncio")),
    "anyio, after total_tokens = 100": on_a_fresh_loop(lambda: blocking_calls(more_tokens)),
}
for setting, seconds in took.items():
    print(f"{setting:60} {seconds:.2f} s")
teach.check_guess(my_guess_executor_s, took["anyio, after set_default_executor(100 threads)"],
                  what="set_default_executor", unit="s", theory=3 * CALL_S)
teach.check_guess(my_guess_tokens_s, took["anyio, after total_tokens = 100"],
                  what="total_tokens = 100", unit="s", theory=CALL_S)

# %% [markdown]
# The bigger executor is real - `asyncio.to_thread` uses it - but AnyIO never asks for it, so
# the batch still runs 40 at a time. Only the limiter's `total_tokens` changes what FastAPI does. <!-- claim: 40 = pkg:anyio.thread_tokens -->
#
# On the server: `THREADPOOL_SIZE=50` makes our app set `total_tokens = 50` at startup.
# **Predict**: with 50 tokens, at how many slow `def` requests in flight does `/def-health` <!-- claim: 50 = file:src/conclab/figures/fastapi.py -->
# start to wait?

# %%
my_guess_cliff_n = None   # slow def requests in flight


# %%
cliff_50 = teach.only(REGISTRY["threadpool_cliff"], series=[f"{RAISED_TOKENS} tokens"], x=CLIFF_NS)
raised = teach.measure(cliff_50, results_dir=RESULTS_DIR, fresh=True)
waited = [p["x"] for p in sorted(raised["points"], key=lambda p: p["x"])
          if p["probes"]["/def-health"].latency_ms.p50 > slow_ms / 10]
teach.check_guess(my_guess_cliff_n, waited[0] if waited else float("nan"),
                  what="where the cliff starts", unit="in flight", theory=RAISED_TOKENS)
both = {**cliff, "points": cliff["points"] + raised["points"]}
figure(REGISTRY["threadpool_cliff"], both)

# %% [markdown]
# The cliff moved with the tokens, and so did the `def` plateau in section 2 (the 50-token <!-- claim: 50 = file:src/conclab/figures/fastapi.py -->
# series, at 50 / 0.1 s = 500 req/s). Raising the limit is a trade, not a fix: every token can <!-- claim: 50 = file:src/conclab/figures/fastapi.py --> <!-- claim: 0.1 = calc:100 / 1000 --> <!-- claim: 500 = calc:50 / 0.1 -->
# become a thread with its own stack, and pure-Python work in those threads still shares one
# GIL (notebook 04). It buys room for *waiting* calls.
#
# ## 5. Sync dependencies take a token too
#
# FastAPI applies the same rule to dependencies: a `def` dependency runs in the threadpool,
# even when the endpoint that uses it is `async def`
# ([FastAPI: Concurrency and async / await - Dependencies](https://fastapi.tiangolo.com/async/#dependencies)).
# That is why our app's `ms` parser is an `async def` dependency - its comment says so.
#
# Below, a tiny FastAPI app with two `async def` endpoints, one of them using a `def`
# dependency that does no work. We hold all 40 tokens with blocking calls for 0.5 s and send <!-- claim: 40 = pkg:anyio.thread_tokens --> <!-- claim: 0.5 = cell -->
# one request to each, in-process (`httpx.ASGITransport`). **Predict** how long the endpoint
# with the `def` dependency takes.

# %%
my_guess_dependency_ms = None   # ms, the async def endpoint with a def dependency, pool full

# %%
demo = FastAPI()

def settings():              # a plain `def` dependency that does no work at all
    return {"region": "eu"}

@demo.get("/with-def-dependency")
async def with_def_dependency(s: Annotated[dict, Depends(settings)]):
    return s

@demo.get("/plain")
async def plain():
    return {"region": "eu"}

async def ask_while_the_pool_is_full(path, busy=DEFAULT_TOKENS):
    """Time one request to ``path`` while ``busy`` blocking calls hold the pool's tokens."""
    blockers = [asyncio.create_task(anyio.to_thread.run_sync(time.sleep, HOLD_S))
                for _ in range(busy)]
    await asyncio.sleep(0.05)  # let them take their tokens
    transport = httpx.ASGITransport(app=demo)
    async with httpx.AsyncClient(transport=transport, base_url="http://demo") as client:
        start = time.perf_counter()
        await client.get(path)
        took_ms = (time.perf_counter() - start) * 1000
    await asyncio.gather(*blockers)
    return took_ms

plain_ms = on_a_fresh_loop(lambda: ask_while_the_pool_is_full("/plain"))
dependency_ms = on_a_fresh_loop(lambda: ask_while_the_pool_is_full("/with-def-dependency"))
print(f"async def, no dependency:       {plain_ms:6.1f} ms")
print(f"async def, one def dependency:  {dependency_ms:6.1f} ms")
teach.check_guess(my_guess_dependency_ms, dependency_ms, what="with a def dependency", unit="ms",
                  theory=(HOLD_S - 0.05) * 1000)

# %% [markdown]
# One `def` in the chain is enough: the `async def` endpoint waited for a token like a `def`
# endpoint would. Make dependencies that only compute or read memory `async def`; keep `def`
# for the ones that really block.
#
# ## 6. So: `def` or `async def`?
#
# - **`async def`** when everything it waits for is awaited (an async database driver,
#   `httpx.AsyncClient`, `asyncio.sleep`). No slot limit - and one blocking call freezes the
#   worker.
# - **`def`** when it calls a blocking library (a sync database driver, `requests`, file I/O).
#   Safe for the loop, but capped at 40 at once per process, shared with every other sync <!-- claim: 40 = pkg:anyio.thread_tokens -->
#   endpoint, dependency and background task.
# - **`async def` with a blocking call inside**: never. If one `async def` must call something
#   blocking, offload that call (`await run_in_threadpool(...)`, as our `/offload-io` does).
# - Keep health checks `async def`, so a full pool cannot make a busy worker look dead.

# %% [markdown]
# ## Takeaway
#
# - FastAPI runs `async def` endpoints on the event loop and plain `def` endpoints (and `def`
#   dependencies) in AnyIO's threadpool, which lets 40 run at once per process. <!-- claim: 40 = pkg:anyio.thread_tokens -->
# - Little's law gives each style its ceiling: unbounded for `async def` + `await`,
#   tokens / S for `def`, 1 / S for `async def` + `time.sleep`. <!-- claim: 1 = given -->
# - When slow `def` work holds every token, any other sync work - even a trivial `def` health
#   check - waits for one: the cliff sits exactly at the token count.
# - `loop.set_default_executor` does not change FastAPI's pool; AnyIO's
#   `current_default_thread_limiter().total_tokens` does, and it moves both the plateau and
#   the cliff.

# %% [markdown]
# ## Exercises
#
# 1. With Little's law, how many tokens does one worker need to serve 1,000 req/s of a `def` <!-- claim: 1,000 = given -->
#    endpoint that waits 100 ms? Check it with `serve(ServerSpec("fastapi", threadpool=...))` <!-- claim: 100 = given -->
#    and `run_load(server.url, path="/def-io?ms=100", concurrency=..., duration=2, warmup=0.5)`.
# 2. In section 5, make `settings` an `async def` and run the cell again. Then put the pool
#    under 39 blockers instead of 40 (`busy=39`): what changes, and why? <!-- claim: 40 = pkg:anyio.thread_tokens --> <!-- claim: 39 = given -->
# 3. Gunicorn can run FastAPI as several Uvicorn worker processes:
#    `ServerSpec("fastapi", manager="gunicorn", workers=2)`. Each process has its own 40 tokens. <!-- claim: 40 = pkg:anyio.thread_tokens -->
#    Predict the `def` plateau with 160 users on `/def-io?ms=100`, then measure it. Why might a <!-- claim: 160 = given -->
#    `def` health check still wait with only 60 slow requests in flight? <!-- claim: 60 = given -->
