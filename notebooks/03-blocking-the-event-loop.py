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

from conclab.base.paths import quick_mode
from conclab.figures.experiment import figure
from conclab.figures.registry import REGISTRY
from conclab.teaching import teach

QUICK = quick_mode()                   # CONCLAB_QUICK=1: fewer points, shorter runs
RESULTS_DIR = teach.results_dir("03")  # the experiments' per-point files (git-ignored)
BLOCK_S = 0.25                         # how long the demo handler blocks the loop (seconds)
SLOW_CALLBACK_S = 0.1                  # asyncio debug mode's threshold (0.1 s is its default)

# %% [markdown]
# # 03 · Blocking the event loop
#
# **Question.** What happens to an async server when one handler calls `time.sleep`? How
# would you notice in production, and how do you fix it?
#
# ## 1. The anti-pattern
#
# Notebook 01 showed that a running task keeps the loop's only thread until it reaches an
# `await`. In an ASGI server every request is such a task. Our ASGI app has a route that
# makes the classic mistake on purpose - a blocking call inside `async def`
# (`servers/asgi_minimal.py`):
#
# ```python
# if path == "/blocking-io":
#     n = ms()
#     time.sleep(n / 1000)        # never awaits: the loop's only thread is stuck here
#     return 200, f"blocked the loop for {n} ms\n", None
# ```
#
# In real code it is rarely `time.sleep`. It is `requests.get(...)`, a synchronous database
# driver, reading a big file, hashing a password, serialising a huge JSON document:
# anything that takes a while and does not await.
#
# The same app has two healthy versions of that route:
#
# - `/io` **awaits** a non-blocking wait: `await asyncio.sleep(n / 1000)`;
# - `/offload-io` runs the blocking call **in a thread pool** and awaits the result:
#   `await loop.run_in_executor(pool, ...)`.

# %% [markdown]
# ## 2. Predict, then measure
#
# 10 users send `GET /blocking-io?ms=50` to one Uvicorn process. Meanwhile a monitor sends <!-- claim: 10 = file:src/conclab/figures/io_wait.py -->
# `GET /health` 20 times a second, as a load balancer's health check would; `/health` does <!-- claim: 20 = file:src/conclab/figures/io_wait.py -->
# no work at all. This is the `blocking` experiment of `make charts`, which runs the two
# healthy routes beside it, and runs `/blocking-io` a second time with a different monitor:
# one user who sends `/health` on one kept-alive connection, the next as soon as the last
# is answered. Here is its plan:

# %%
teach.plan(REGISTRY["blocking"])

# %% [markdown]
# - What throughput does `/blocking-io` reach?
# - What is the typical (p50) latency of `/health` meanwhile?

# %%
my_guess_rps = None         # requests per second on /blocking-io
my_guess_health_ms = None   # p50 latency of /health, in milliseconds

# %%
data = teach.measure(REGISTRY["blocking"], results_dir=RESULTS_DIR, fresh=True)
blocking = next(p for p in data["points"] if p["series"] == "/blocking-io")
teach.check_guess(my_guess_rps, blocking["summary"].throughput_rps, what="/blocking-io throughput",
                  theory=blocking["prediction"]["throughput_rps"])
teach.check_guess(my_guess_health_ms, blocking["probe"].latency_ms.p50,
                  what="/health p50 meanwhile", unit="ms")
figure(REGISTRY["blocking"], data)

# %%
teach.probe_table(data)

# %% [markdown]
# **Reading the chart.** `/io` and `/offload-io` reach what Little's law predicts for
# 10 users who each wait 50 ms: 10 / 0.05 s = 200 req/s. `/blocking-io` is stuck at <!-- claim: 10 = file:src/conclab/figures/io_wait.py --> <!-- claim: 50 = file:src/conclab/figures/io_wait.py --> <!-- claim: 0.05 = calc:50 / 1000 --> <!-- claim: 200 = calc:10 / 0.05 -->
# 1 / 0.05 s = 20 req/s: one request at a time, like a sync worker. Worse than a sync <!-- claim: 0.05 = calc:50 / 1000 --> <!-- claim: 1 = given --> <!-- claim: 20 = calc:1 / 0.05 -->
# worker, in fact: while the loop is blocked, this process cannot accept connections, read
# requests or answer anything - so the `/health` probe, which needs no work at all, waits
# for the blocking handlers ahead of it (right panel, log scale).
#
# **How long does the probe wait?** The naive answer - ten handlers of 50 ms ahead of it, <!-- claim: 50 = file:src/conclab/figures/io_wait.py -->
# so 0.5 s - holds only for the kept-alive monitor. The loop works in *turns*: it asks the <!-- claim: 0.5 = calc:10 * 50 / 1000 -->
# kernel which sockets are ready, then runs every callback and task that is ready, one
# after another. With `/blocking-io`, each of the 10 users' handlers holds the loop for <!-- claim: 10 = file:src/conclab/figures/io_wait.py -->
# 50 ms when its turn comes, so one turn lasts up to 10 × 50 ms = 0.5 s (the dashed line). <!-- claim: 10 = file:src/conclab/figures/io_wait.py --> <!-- claim: 50 = file:src/conclab/figures/io_wait.py --> <!-- claim: 0.5 = calc:10 * 50 / 1000 -->
#
# - A probe on an **open connection** waits at most about one turn - users × handler time:
#   the `probe kept alive` bar, under the dashed line.
# - A probe on a **new connection** waits much longer. Before its request can even be read,
#   the connection must be *accepted*, and Uvicorn's default loop, uvloop, accepts one new
#   connection per turn: it uses libuv, which stopped accepting connections in a loop
#   ([libuv#3696](https://github.com/libuv/libuv/pull/3696)). A trace of the server's system
#   calls (`strace -f -e epoll_pwait,accept4,clock_nanosleep`) shows it: one `accept4` after
#   each `epoll_pwait`, then the users' 50 ms sleeps. The monitor opens 20 connections a second
#   and the loop turns about twice a second (10 users × 50 ms = 0.5 s a turn), so the
#   monitor's connections pile up in the
#   <!-- claim: 50 = file:src/conclab/figures/io_wait.py; 20 = file:src/conclab/figures/io_wait.py;
#   10 = file:src/conclab/figures/io_wait.py; 0.5 = calc:10 * 50 / 1000 -->
#   listen queue, and each probe waits behind every probe that came before it. Its wait
#   grows for as long as the load lasts - the p50 and p99 of that bar say how long the run
#   was, not a property of the server (the open loop above capacity of notebook 08 again).
#
# A prediction that holds for a blocked loop: a health check on a kept-alive connection
# waits about users × the blocking time; health checks that open new connections faster
# than the loop turns wait without bound - so a monitor that opens a new connection for
# each check can time out, and report dead, a worker that is merely blocked.

# %% [markdown]
# ## 3. See it: timelines
#
# The Uvicorn cases of the `timelines` experiment: 12 requests of 100 ms each, sent at once. <!-- claim: 12 = file:src/conclab/figures/io_wait.py --> <!-- claim: 100 = file:src/conclab/figures/io_wait.py -->
# Light: the client's view; dark: the handler running; one lane per thread.

# %%
data = teach.measure(teach.only(REGISTRY["timelines"], where=lambda job: job.spec.kind == "asgi"),
                     results_dir=RESULTS_DIR, fresh=True)
teach.timeline_figure(data)


# %% [markdown]
# **Reading the chart.** `/io`: one lane (the loop's thread) and all twelve handlers overlap,
# done in about 100 ms. `/blocking-io`: the same single lane, but the handlers run one after <!-- claim: 100 = file:src/conclab/figures/io_wait.py -->
# another - 1.2 s in all. `/offload-io` with a pool of 4 threads: four lanes (the pool's <!-- claim: 1.2 = calc:12 * 100 / 1000 --> <!-- claim: 4 = file:src/conclab/figures/io_wait.py -->
# threads), three rounds.

# %% [markdown]
# ## 4. How to detect it
#
# ### a) asyncio debug mode
#
# asyncio has a debug mode, switched on by `PYTHONASYNCIODEBUG=1` in the environment, by
# `python -X dev`, or by `asyncio.run(main(), debug=True)`. Among other checks, it logs every
# callback or task step that held the loop for longer than `loop.slow_callback_duration`
# - 0.1 s by default ([Developing with asyncio: debug mode](https://docs.python.org/3/library/asyncio-dev.html#debug-mode)). <!-- claim: 0.1 = pkg:asyncio.slow_callback_s -->
# So a blocked loop names its culprit:

# %%
async def handler_that_blocks():
    time.sleep(BLOCK_S)          # the bug
    return "done"

async def handler_that_awaits():
    await asyncio.sleep(BLOCK_S)
    return "done"

async def main():
    await asyncio.gather(handler_that_blocks(), handler_that_awaits())

for line in teach.run_in_debug_mode(main, slow_callback_duration=SLOW_CALLBACK_S):
    print(line)

# %% [markdown]
# Only `handler_that_blocks` is reported, with how long it held the loop. Debug mode costs
# speed, so it is for development and tests, not production.
#
# Two things we found when trying this with a real server. First, Uvicorn on Python 3.11
# starts its loop with debug mode explicitly off, so `PYTHONASYNCIODEBUG=1` has no effect
# there (Python 3.12 and later honour it); switching it on from the app itself -
# `asyncio.get_running_loop().set_debug(True)` in the lifespan startup - works with both
# the asyncio and the uvloop loop. Second, under a server the warning names the server's
# task for the request (Uvicorn's `run_asgi`), not your function: you learn *that* a request
# blocked, and for how long; your logs or a profiler tell you which one.
#
# ### b) The latency of something trivial
#
# A health endpoint that does no work should answer in about a millisecond. If its latency
# jumps to hundreds of milliseconds or more - the blocking handlers queued ahead of it, as
# in section 2 - the loop is blocked. Monitoring tools measure the same thing as *event loop lag*: schedule a 10 ms <!-- claim: 10 = given -->
# sleep and measure how late it wakes up. (The lab's load driver watches its own loop that
# way - notebook 08.)

# %% [markdown]
# ## 5. The fixes
#
# 1. **Await a non-blocking version** of the call: `await asyncio.sleep(...)` instead of
#    `time.sleep`, an async HTTP client (`httpx.AsyncClient`, aiohttp) instead of
#    `requests`, an async database driver. The best fix: waiting then costs no thread at all.
# 2. **Run the blocking call in a thread pool** when no async version exists:
#    `await asyncio.to_thread(func, ...)`, `await loop.run_in_executor(pool, func, ...)`, or
#    AnyIO's `await anyio.to_thread.run_sync(func, ...)` (what Starlette uses). The loop stays
#    free; the call occupies one pool thread. Pools are bounded - notebook 04 measures what
#    happens when one is full.
# 3. **CPU-heavy work** is different, because a thread needs the GIL to compute. In a thread,
#    pure-Python work is asked to hand the GIL over every `sys.getswitchinterval()` (5 ms by <!-- claim: 5 = pkg:python.switch_interval_ms -->
#    default), so the loop still gets turns, only slower; one long C call that holds the GIL
#    (built-in `sum` over a big `range`) freezes the loop as if it ran on it; C code that
#    releases the GIL (hashlib on large data) leaves the loop free. Notebook 01 (section 6)
#    measured the loop's stall in each case, and notebook 04 measures what each does to a
#    server's throughput and to `/health`. Pure-Python threads add no computing capacity:
#    that takes processes (notebooks 04 and 06).

# %% [markdown]
# ## 6. Why FastAPI runs plain `def` endpoints in a threadpool
#
# FastAPI (built on Starlette) lets you declare a path operation either way
# ([FastAPI: Concurrency and async / await](https://fastapi.tiangolo.com/async/)):
#
# - `async def`: called directly on the event loop. FastAPI trusts you not to block; if you
#   do, you block the whole worker, exactly like `/blocking-io` above.
# - plain `def`: FastAPI cannot know whether it blocks, so it assumes it does. It runs the
#   function in an external threadpool and awaits the result, like `/offload-io`. Starlette
#   does this with `anyio.to_thread.run_sync`
#   ([Starlette: Thread Pool](https://www.starlette.io/threadpool/)).
#
# That is why FastAPI's docs advise plain `def` when you are not sure: a blocking `def`
# endpoint costs one pool thread, while a blocking `async def` endpoint freezes every request
# on that worker.
#
# And Flask? For each request to an `async def` view, Flask starts an event loop in a thread,
# runs the view there and returns the result. The view can await several things at once,
# but the WSGI worker is tied up for the whole request, so it still serves one request at a
# time ([Flask: Using async and await](https://flask.palletsprojects.com/en/stable/async-await/)).

# %% [markdown]
# ## Takeaway
#
# - A blocking call inside `async def` freezes the whole event loop: every request on that
#   worker - even `/health` - waits, and the server serves one request at a time.
# - Detect it with asyncio debug mode's slow-callback warnings in development and tests, and
#   with the latency of a trivial endpoint (or event loop lag) in production.
# - Fix it by awaiting a non-blocking call, or by running the blocking call in a thread pool.
#   FastAPI does the latter for you when an endpoint is a plain `def`.

# %% [markdown]
# ## Exercises
#
# 1. In section 4a, set `SLOW_CALLBACK_S = 0.01` and make `handler_that_blocks` sleep 0.02 s. <!-- claim: 0.02 = given -->
#    Is it caught now? What threshold would you pick for a test suite, and why not 0? <!-- claim: 0 = given -->
# 2. The ASGI app also has `/cpu?ms=N` (CPU work on the loop) and `/offload-cpu?ms=N` (the
#    same work in its pool). Predict the throughput of each with 4 users and `ms=20`, then <!-- claim: 4 = given -->
#    measure both with `serve(ServerSpec("asgi"))` and `run_load`. Explain the result with
#    notebook 04.
# 3. With `loop="asyncio"`, Uvicorn runs on CPython's own selector event loop, which accepts
#    up to `backlog` waiting connections each time the listening socket is ready
#    (`_accept_connection` in CPython's `Lib/asyncio/selector_events.py`); Uvicorn passes
#    its `--backlog`, 2048 by default. Under uvloop (Uvicorn's default loop when it is
#    installed) this does not apply: libuv accepts in its own way.
#    <!-- claim: 2048 = pkg:uvicorn.backlog -->
#    Predict the `/health` p50 of section 2's new-connection probe on
#    `ServerSpec("asgi", loop="asyncio")`. Then measure it: inside `with serve(spec) as
#    server:`, start `run_load(server.url, path="/health", rate=20, duration=4)` in a
#    `threading.Thread`, and run the 10 users of `/blocking-io?ms=50` for 4 s meanwhile. <!-- claim: 10 = given --> <!-- claim: 4 = given -->
