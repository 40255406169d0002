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

import anyio.to_thread

from conclab.base.cores import usable_cores
from conclab.base.paths import quick_mode
from conclab.base.specs import ServerSpec
from conclab.figures.experiment import figure
from conclab.figures.registry import REGISTRY
from conclab.measuring.driver import run_load
from conclab.processes.launcher import serve
from conclab.teaching import teach

QUICK = quick_mode()                    # CONCLAB_QUICK=1: fewer points, shorter runs
RESULTS_DIR = teach.results_dir("04")   # the experiments' per-point files (git-ignored)
CALL_S = 0.1                            # each blocking call in the AnyIO demo (seconds)
CALL_COUNTS = [10, 40, 41, 80, 100]     # how many calls start at once
POOL = 4                                # the ASGI server's offload pool in section 4
USERS = 16                              # users in section 4
DURATION_S = 1.5 if QUICK else 3.0      # seconds measured in section 4

# %% [markdown]
# # 04 · Threadpools and the GIL
#
# **Question.** Threads let a sync server - or an async server's offload pool - do many
# things at once. When does adding threads help, when does it stop helping, and what happens
# when a pool runs out?
#
# ## 1. Threads and the GIL
#
# A thread is a line of execution that the operating system schedules; the threads of a
# process share its memory. CPython has a **global interpreter lock (GIL)**: within one
# process, only one thread at a time executes Python bytecode
# ([Python glossary: GIL](https://docs.python.org/3/glossary.html#term-global-interpreter-lock)).
# Two things follow:
#
# - **Waiting releases the GIL.** `time.sleep`, socket reads and most blocking I/O let go of
#   the GIL while they wait, so many threads can wait at once. For I/O, threads scale.
# - **Computing holds it.** Pure-Python CPU work needs the GIL the whole time, so threads
#   take turns: the running thread is asked to hand over every `sys.getswitchinterval()`,
#   5 ms by default. Two threads computing finish no sooner than one thread doing both
#   jobs. For pure-Python CPU work, threads do not scale - processes do. (C code that
#   releases the GIL, such as hashlib on large data, is the exception; section 7.)
#
# CPython 3.13 added an optional *free-threaded* build without the GIL
# ([PEP 703](https://peps.python.org/pep-0703/)). This lab uses the standard build:

# %%
print(teach.gil_status())


# %% [markdown]
# ## 2. Where the thread pools are
#
# - **Gunicorn gthread** (`--threads N`): each worker process runs N threads, and each thread
#   serves one request at a time. Slots = workers × threads.
# - **An async app's offload pool**: blocking calls run in a pool while the loop stays free
#   (notebook 03). `asyncio.to_thread` uses the loop's default `ThreadPoolExecutor`.
#   Starlette and FastAPI use **AnyIO**'s `anyio.to_thread.run_sync`, whose default
#   *limiter* lets **40** threads run at once. Starlette sends plain `def` endpoints, sync
#   background tasks and file handling (`FileResponse`, `UploadFile`) through it, and
#   FastAPI adds its sync dependencies - all sharing the same 40 tokens
#   ([Starlette: Thread Pool](https://www.starlette.io/threadpool/),
#   [AnyIO: Working with threads](https://anyio.readthedocs.io/en/stable/threads.html)).
#
# Ask AnyIO itself. The limiter belongs to the running event loop, so we ask from inside a
# coroutine:

# %%
async def default_tokens():
    return anyio.to_thread.current_default_thread_limiter().total_tokens

await default_tokens()

# %% [markdown]
# ## 3. Predict, then measure: a full pool
#
# We start `n` blocking calls of 0.1 s at the same moment through `anyio.to_thread.run_sync`,
# for n = 10, 40, 41, 80 and 100. How long does each batch take?

# %%
my_guess_41 = None   # seconds for 41 calls at once
my_guess_100 = None  # seconds for 100 calls at once


# %%
async def blocking_calls(n):
    start = time.perf_counter()
    await asyncio.gather(*(anyio.to_thread.run_sync(time.sleep, CALL_S) for _ in range(n)))
    return time.perf_counter() - start

took = {}
for n in CALL_COUNTS:
    took[n] = await blocking_calls(n)
    print(f"{n:4} calls at once: {took[n]:.2f} s")
teach.check_guess(my_guess_41, took[41], what="41 calls", unit="s", theory=2 * CALL_S)
teach.check_guess(my_guess_100, took[100], what="100 calls", unit="s", theory=3 * CALL_S)

# %% [markdown]
# A full pool does not fail: call 41 simply **waits for a token**, silently. In a Starlette
# or FastAPI app, that means when 40 slow `def` endpoints are running, *all* other sync work
# of that worker - another `def` endpoint, a sync health check, a `FileResponse` - queues
# behind them, while the event loop itself sits idle. You can raise the limit at startup
# (`anyio.to_thread.current_default_thread_limiter().total_tokens = 100`), at some cost in
# memory and thread switching - or, better, make the slow calls async.

# %% [markdown]
# ## 4. Predict, then measure: a small pool on a server
#
# Our ASGI app's `/offload-io` route uses a pool whose size the lab sets:
# `ServerSpec("asgi", threadpool=4)`. `USERS` = 16 users send `/offload-io?ms=100`.
# What throughput, and what mean latency?

# %%
my_guess_rps = None         # requests per second
my_guess_latency_ms = None  # mean latency in milliseconds

# %%
spec = ServerSpec("asgi", threadpool=POOL)
with teach.LiveChart(f"{USERS} users on /offload-io?ms=100, a pool of {POOL} threads"), serve(spec) as server:
    result = run_load(server.url, path="/offload-io?ms=100", concurrency=USERS,
                      duration=DURATION_S, warmup=0.5, progress=True)
run = teach.point(spec, result)
teach.check_guess(my_guess_rps, run["summary"]["throughput_rps"], theory=run["prediction"]["throughput_rps"])
teach.check_guess(my_guess_latency_ms, run["summary"]["latency_ms"]["mean"], what="mean latency", unit="ms",
                  theory=run["prediction"]["latency_ms"])
teach.littles_law_table([run])

# %% [markdown]
# The pool size is the slot count c of Little's law: X = min(16, 4) / 0.1 s = 40 req/s, and
# each request spends R = 16 / 40 req/s = 0.4 s in the server - 0.1 s in a thread and 0.3 s
# queued for one.
#
# ## 5. Threads on I/O: they scale
#
# The `threadpool` experiment of `make charts`: a fixed number of users whose requests each
# wait S milliseconds, against one Gunicorn gthread worker with k threads and against
# Uvicorn with an offload pool of k threads:

# %%
teach.plan(REGISTRY["threadpool"])

# %%
data = teach.measure(REGISTRY["threadpool"], results_dir=RESULTS_DIR, fresh=True)
figure(REGISTRY["threadpool"], data)

# %% [markdown]
# **Reading the chart.** Both grow in step with the threads - k threads, k slots,
# X = min(users, k) / S - until the pool covers all the users. For waiting, a thread is a fine slot:
# it costs some memory (notebook 06) but no CPU while it waits.
#
# ## 6. Threads on CPU work: the GIL caps them
#
# **Predict.** `/cpu?ms=40` burns 40 ms of pure-Python CPU time per request. The `gil`
# experiment sends two users per thread (or per process):
#
# - one gthread worker with **2 threads** - throughput?
# - **2 sync worker processes** - throughput?

# %%
teach.plan(REGISTRY["gil"])

# %%
print(f"usable cores on this machine: {usable_cores()} (the load driver needs some CPU too)")
my_guess_2_threads = None     # requests per second
my_guess_2_processes = None   # requests per second

# %%
data = teach.measure(REGISTRY["gil"], results_dir=RESULTS_DIR, fresh=True)
two = {p["series"]: p for p in data["points"] if p["x"] == 2}
threads, processes = two["threads (gthread, 1 worker)"], two["processes (sync workers)"]
teach.check_guess(my_guess_2_threads, threads["summary"]["throughput_rps"], what="2 threads",
                  theory=threads["prediction"]["throughput_rps"])
teach.check_guess(my_guess_2_processes, processes["summary"]["throughput_rps"], what="2 processes",
                  theory=processes["prediction"]["throughput_rps"])
figure(REGISTRY["gil"], data)

# %% [markdown]
# **Reading the chart.** Threads stay flat at one core's worth - 1 / 40 ms = 25 req/s - however
# many there are: they take turns holding the GIL. Processes each have their own
# interpreter and their own GIL, so they compute on separate cores, up to the usable
# cores (the CPU affinity or the container's CPU quota, whichever is smaller). (The load
# driver runs on these cores too, so on a small or busy machine the processes fall short of
# the dashed theory - the footer says how many cores there were.)
#
# The same holds for an async app's pool: `/offload-cpu` adds no computing capacity, and it
# keeps the loop answering `/health` only to within a few switch intervals - section 7
# measures that.

# %% [markdown]
# ## Takeaway
#
# - For **waiting** (I/O), threads scale: k threads serve k requests at once. The pool size is
#   the slot count in Little's law.
# - For **computing** in pure Python, the threads of one process share one GIL: more threads
#   add no throughput. More processes do, up to the usable cores.
# - AnyIO's default thread limiter - used by Starlette and FastAPI for `def` endpoints, sync
#   background tasks and file handling - has **40** tokens. When all are taken, more sync
#   work queues silently.

# %% [markdown]
# ## Exercises
#
# 1. In section 3, add `anyio.to_thread.current_default_thread_limiter().total_tokens = 100`
#    as the first line of `blocking_calls` and re-run. What changes for 100 calls - and what
#    would the same change cost a real server?
# 2. With Little's law, work out how many gthread threads one worker needs for 200 req/s of
#    `/io?ms=100`. Check it with `serve(ServerSpec("wsgi", threads=...))` and `run_load`.
# 3. Measure `/offload-cpu?ms=20` on `ServerSpec("asgi", threadpool=4)` with 8 users.
#    Predict first: does a pool of 4 threads add throughput over `/cpu?ms=20`?
