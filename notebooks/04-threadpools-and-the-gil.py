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
import hashlib
import statistics
import sys
import threading
import time

import anyio.to_thread

from conclab.base.cores import usable_cores
from conclab.base.paths import FIGURES_DIR, quick_mode
from conclab.base.specs import ServerSpec
from conclab.figures import freethreaded
from conclab.figures.experiment import figure, read_data
from conclab.figures.registry import REGISTRY
from conclab.measuring.driver import run_load
from conclab.processes import interpreters
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
#   5 ms by default. Two threads computing finish no sooner than one thread doing both <!-- claim: 5 = pkg:python.switch_interval_ms -->
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
#   *limiter* lets **40** threads run at once. Starlette sends plain `def` endpoints, sync <!-- claim: 40 = pkg:anyio.thread_tokens -->
#   background tasks and file handling (`FileResponse`, `UploadFile`) through it, and
#   FastAPI adds its sync dependencies - all sharing the same 40 tokens <!-- claim: 40 = pkg:anyio.thread_tokens -->
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
# We start `n` blocking calls of 0.1 s at the same moment through `anyio.to_thread.run_sync`, <!-- claim: 0.1 = cell -->
# for n = 10, 40, 41, 80 and 100. How long does each batch take? <!-- claim: 40 = pkg:anyio.thread_tokens --> <!-- claim: 10 = cell --> <!-- claim: 41 = cell --> <!-- claim: 80 = cell --> <!-- claim: 100 = cell -->

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
# A full pool does not fail: call 41 simply **waits for a token**, silently. In a Starlette <!-- claim: 41 = calc:40 + 1 -->
# or FastAPI app, that means when 40 slow `def` endpoints are running, *all* other sync work <!-- claim: 40 = pkg:anyio.thread_tokens -->
# of that worker - another `def` endpoint, a sync health check, a `FileResponse` - queues
# behind them, while the event loop itself sits idle. You can raise the limit at startup
# (`anyio.to_thread.current_default_thread_limiter().total_tokens = 100`), at some cost in
# memory and thread switching - or, better, make the slow calls async.

# %% [markdown]
# ## 4. Predict, then measure: a small pool on a server
#
# Our ASGI app's `/offload-io` route uses a pool whose size the lab sets:
# `ServerSpec("asgi", threadpool=4)`. `USERS` = 16 users send `/offload-io?ms=100`. <!-- claim: 16 = cell -->
# What throughput, and what mean latency?

# %%
my_guess_rps = None         # requests per second
my_guess_latency_ms = None  # mean latency in milliseconds

# %%
spec = ServerSpec("asgi", threadpool=POOL)
with (teach.LiveChart(f"{USERS} users on /offload-io?ms=100, a pool of {POOL} threads"),
      serve(spec) as server):
    result = run_load(server.url, path="/offload-io?ms=100", concurrency=USERS,
                      duration=DURATION_S, warmup=0.5, progress=True)
run = teach.point(spec, result)
teach.check_guess(my_guess_rps, run["summary"].throughput_rps,
                  theory=run["prediction"]["throughput_rps"])
teach.check_guess(my_guess_latency_ms, run["summary"].latency_ms.mean, what="mean latency",
                  unit="ms", theory=run["prediction"]["latency_ms"])
teach.littles_law_table([run])

# %% [markdown]
# The pool size is the slot count c of Little's law: X = min(16, 4) / 0.1 s = 40 req/s, and <!-- claim: 0.1 = cell --> <!-- claim: 16 = cell --> <!-- claim: 4 = cell --> <!-- claim: 40 = calc:min(16, 4) / 0.1 -->
# each request spends R = 16 / 40 req/s = 0.4 s in the server - 0.1 s in a thread and 0.3 s <!-- claim: 0.1 = cell --> <!-- claim: 16 = cell --> <!-- claim: 40 = calc:min(16, 4) / 0.1 --> <!-- claim: 0.4 = calc:16 / 40 --> <!-- claim: 0.3 = calc:0.4 - 0.1 -->
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
# **Predict.** `/cpu?ms=40` burns 40 ms of pure-Python CPU time per request. The `gil` <!-- claim: 40 = given -->
# experiment sends two users per thread (or per process):
#
# - one gthread worker with **2 threads** - throughput? <!-- claim: 2 = given -->
# - **2 sync worker processes** - throughput? <!-- claim: 2 = given -->

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
teach.check_guess(my_guess_2_threads, threads["summary"].throughput_rps, what="2 threads",
                  theory=threads["prediction"]["throughput_rps"])
teach.check_guess(my_guess_2_processes, processes["summary"].throughput_rps, what="2 processes",
                  theory=processes["prediction"]["throughput_rps"])
figure(REGISTRY["gil"], data)

# %% [markdown]
# **Reading the chart.** Threads stay flat at one core's worth - 1 / 40 ms = 25 req/s - however <!-- claim: 1 = given --> <!-- claim: 40 = file:src/conclab/figures/cpu_offload.py --> <!-- claim: 25 = calc:1000 / 40 -->
# many there are: they take turns holding the GIL. Processes each have their own
# interpreter and their own GIL, so they compute on separate cores, up to the usable
# cores (the CPU affinity or the container's CPU quota, whichever is smaller). (The load
# driver runs on these cores too, so on a small or busy machine the processes fall short of
# the dashed theory - the footer says how many cores there were.)
#
# The same holds for an async app's pool: `/offload-cpu` adds no computing capacity, and it
# keeps the loop answering `/health` only after one switch interval or several, as many as
# there are threads computing - section 7 measures that.

# %% [markdown]
# ## 7. Should CPU work go to a thread pool?
#
# A common piece of advice for async servers is "use a threadpool for CPU-bound tasks". A
# pool thread does take the work off the event loop - but the loop's thread still needs the
# GIL for every step of every request, so what the loop gets depends on who holds the GIL
# while the work runs:
#
# - **Pure Python** holds the GIL while it runs bytecode. A thread that has waited for the
#   GIL for one switch interval -
#   [`sys.getswitchinterval()`](https://docs.python.org/3/library/sys.html#sys.setswitchinterval),
#   5 ms by default - asks for it, and the running thread hands it over at its next check
#   between bytecodes. The interval is when the drop is *requested*, not a bound on the wait:
#   with several threads computing, the loop's thread is not always the one that gets the GIL
#   next, and waits several intervals. So a pool thread keeps the loop responsive only to
#   within one switch interval or several per step of a request - and adds no computing
#   capacity. <!-- claim: 5 = pkg:python.switch_interval_ms -->
# - **A long C call that keeps the GIL** - the built-in `sum` over a `range`, for one - is
#   never made to hand over: the interpreter asks between bytecodes, and the whole call is
#   one of them. The loop waits for the whole call, exactly as if it ran on the loop.
# - **C code that releases the GIL** runs beside the loop, on other cores: `hashlib` lets go
#   of the GIL while it hashes more than 2047 bytes at once
#   ([hashlib](https://docs.python.org/3/library/hashlib.html)). <!-- claim: 2047 = pkg:python.hashlib_gil_maxkeep -->
#
# First in this notebook's own process. `beat` is a thread that wants to wake up every
# millisecond - as an event loop with requests to answer does - while this thread computes
# for a while in three ways. **Predict** how late `beat` wakes, typically (median) and at
# worst, during pure Python and during one `sum(range(...))`:

# %%
my_guess_python_ms = None  # typical lateness while pure Python runs (ms)
my_guess_sum_ms = None     # worst lateness during one sum(range(...)) call (ms)

# %%
def lateness_ms(work):
    """Run work() here while a second thread asks to wake every 1 ms: how late it woke (ms)."""
    late, done = [], threading.Event()

    def beat():
        while not done.is_set():
            t0 = time.perf_counter()
            time.sleep(0.001)
            late.append((time.perf_counter() - t0) * 1000 - 1)

    thread = threading.Thread(target=beat)
    thread.start()
    time.sleep(0.01)
    work()
    done.set()
    thread.join()
    return statistics.median(late), max(late)


def pure_python():
    x = 0
    for i in range(5_000_000):
        x += i


def one_long_c_call():
    sum(range(20_000_000))


def hashing():
    block = bytes(256 * 1024)
    for _ in range(200):
        hashlib.sha256(block).digest()


print(f"switch interval: {sys.getswitchinterval() * 1000:g} ms")
late = {name: lateness_ms(work) for name, work in
        (("pure Python", pure_python), ("sum(range(...))", one_long_c_call), ("hashlib", hashing))}
for name, (median, worst) in late.items():
    print(f"{name:16} beat woke late by {median:6.2f} ms typically, {worst:7.1f} ms at worst")
teach.check_guess(my_guess_python_ms, late["pure Python"][0], what="typical lateness, pure Python",
                  unit="ms", theory=sys.getswitchinterval() * 1000)
teach.check_guess(my_guess_sum_ms, late["sum(range(...))"][1],
                  what="worst lateness, sum(range(...))", unit="ms")

# %% [markdown]
# Pure Python: `beat` waits about one switch interval each time. `sum(range(...))`: its
# worst wait is the whole call. `hashlib`: hardly any wait at all.
#
# **Now on a server.** The `cpu_offload` experiment sends 1 to 4 users of 40 ms CPU <!-- claim: 40 = file:src/conclab/figures/cpu_offload.py --> <!-- claim: 1 = file:src/conclab/figures/cpu_offload.py --> <!-- claim: 4 = file:src/conclab/figures/cpu_offload.py -->
# requests to the raw ASGI app four ways: `/cpu` (on the loop), `/offload-cpu` (pure Python
# in the thread pool), `/hash-cpu` (hashlib in the thread pool) and `/process-cpu` (a
# `ProcessPoolExecutor` with one process per usable core, each with its own interpreter and
# GIL) - and `/offload-cpu` once more on a server started with a 1 ms switch interval
# (`SWITCH_INTERVAL_MS=1`, which calls `sys.setswitchinterval(0.001)`). A light `/health`
# probe runs during each load. The server may use every core (the process pool needs them);
# the load driver shares one.
#
# **Predict** for 4 users on this machine: the throughput of each way, and roughly how long <!-- claim: 4 = given -->
# `/health` waits - tens of milliseconds, a few, or none?

# %%
teach.plan(REGISTRY["cpu_offload"])

# %%
print(f"usable cores: {usable_cores()}")
my_guess_threads_rps = None    # /offload-cpu, 4 users (requests per second)
my_guess_processes_rps = None  # /process-cpu, 4 users (requests per second)

# %%
data = teach.measure(REGISTRY["cpu_offload"], results_dir=RESULTS_DIR, fresh=True)
most = {p["series"]: p for p in data["points"] if p["x"] == max(q["x"] for q in data["points"])}
threads = most["pure Python in threads (/offload-cpu)"]
processes = most["process pool (/process-cpu)"]
teach.check_guess(my_guess_threads_rps, threads["summary"].throughput_rps,
                  what="pure Python in threads", theory=threads["prediction"]["throughput_rps"])
teach.check_guess(my_guess_processes_rps, processes["summary"].throughput_rps, what="process pool",
                  theory=processes["prediction"]["throughput_rps"])
figure(REGISTRY["cpu_offload"], data)

# %%
teach.probe_table(list(most.values()))

# %% [markdown]
# **Reading the chart** (the reference run in `figures/cpu_offload.png`, 2 usable cores):
# <!-- claim: 2 = cpu_offload.json:machine.usable_cores -->
#
# - **Throughput.** On the loop (`/cpu`) and in the pure-Python pool (`/offload-cpu`) alike,
#   about 24 requests/s however many users: one core's worth, 1 / 40 ms = 25. hashlib in the
#   pool and the process pool climb to 44-47 requests/s from 2 users on: both cores, close to
#   Little's law's min(users, 2) / 40 ms = 50 (the loop, the probe and the load driver use
#   the rest). <!-- claim: 24 = mean(cpu_offload.json:points[0,1,2,3,4,5,6,7].summary.throughput_rps);
#   1 = calc:1; 40 = file:src/conclab/figures/cpu_offload.py; 25 = calc:1000 / 40;
#   44 = min(cpu_offload.json:points[9,10,11,13,14,15].summary.throughput_rps);
#   47 = max(cpu_offload.json:points[9,10,11,13,14,15].summary.throughput_rps);
#   2 = cpu_offload.json:machine.usable_cores; 50 = calc:2 * 1000 / 40 -->
# - **/health on the loop** waits for the handlers: median 19 ms with one user, 187 ms with
#   four (p99 929 ms). <!-- claim: 19 = cpu_offload.json:points.0.probe.latency_ms.p50;
#   187 = cpu_offload.json:points.3.probe.latency_ms.p50; 929 = cpu_offload.json:points.3.probe.latency_ms.p99 -->
# - **/health beside the pure-Python pool**: median 7 ms with one user - about one 5 ms
#   switch interval - and 41 ms with four, because the loop's thread now competes with four
#   computing threads for the GIL and is not always the one that gets it next. With a 1 ms
#   switch interval the same pool gives 2.9 and 12.7 ms: shorter turns, more hand-overs.
#   <!-- claim: 7 = cpu_offload.json:points.4.probe.latency_ms.p50; 5 = pkg:python.switch_interval_ms;
#   41 = cpu_offload.json:points.7.probe.latency_ms.p50; 1 = file:figures/data/cpu_offload.json;
#   2.9 = cpu_offload.json:points.16.probe.latency_ms.p50; 12.7 = cpu_offload.json:points.19.probe.latency_ms.p50 -->
# - **/health beside hashlib threads and the process pool**: a median of 1.1-1.7 ms at every
#   load - the loop hardly waits at all. (All from `figures/data/cpu_offload.json`.)
#   <!-- claim: 1.1 = min(cpu_offload.json:points[8,9,10,11,12,13,14,15].probe.latency_ms.p50);
#   1.7 = max(cpu_offload.json:points[8,9,10,11,12,13,14,15].probe.latency_ms.p50) -->
#
# **So, should CPU work go to a thread pool?** Only half true:
#
# - For **pure Python**, a thread pool keeps the loop answering - within one to about eight
#   switch intervals here (median 7 to 41 ms) rather than behind whole handlers (19 to
#   187 ms) - but adds no throughput: one GIL, one core.
#   <!-- claim: 7 = cpu_offload.json:points.4.probe.latency_ms.p50; 41 = cpu_offload.json:points.7.probe.latency_ms.p50;
#   19 = cpu_offload.json:points.0.probe.latency_ms.p50; 187 = cpu_offload.json:points.3.probe.latency_ms.p50 -->
#   A smaller switch interval shortens the wait and costs more hand-overs.
# - For a **long C call that keeps the GIL**, a thread pool buys nothing at all.
# - For **throughput**, use a **process pool** (up to the usable cores; the price is
#   pickling the arguments and results, and each process's memory), or C code that
#   **releases the GIL** (hashlib, compression, much of NumPy), which threads can run on
#   several cores at once.

# %% [markdown]
# ## 8. Threads without the GIL
#
# Since Python 3.13 CPython can be built **free-threaded** (`--disable-gil`, [PEP
# 703](https://peps.python.org/pep-0703/)); in 3.14 that build is officially supported ([PEP
# 779](https://peps.python.org/pep-0779/)) and python.org's installers offer it. Without the
# GIL, the threads of one process run Python on several cores at once - and "use a threadpool
# for CPU-bound tasks" becomes true. `make freethreaded` builds CPython 3.13t here once (into
# `~/.cache/conclab/python3.13t`), and every lab server runs on it with `--python`; each
# server reports its own interpreter and whether its GIL is on **right now**
# (`sys._is_gil_enabled()`, on its `/interpreter` route), because a C extension that does not
# declare free-threading support turns the GIL back on when it is imported.
# <!-- claim: 3.14 = https://peps.python.org/pep-0779/ -->
#
# The `freethreaded` experiment sends 1 to 8 users of `/offload-cpu?ms=20` (20 ms of CPU in
# a pool thread) to the raw ASGI server, with pools of 1, 2 and the usable cores, on both
# builds. `burn_cpu` burns a fixed CPU *time*, which hides how fast each interpreter runs
# Python, so the experiment also sends `/offload-work`, a fixed amount of *work*, and reads
# the server's CPU time per request.
# <!-- claim: 1 = min(freethreaded.json:points.*.x); 8 = max(freethreaded.json:points.*.x); 20 = freethreaded.json:points.0.prediction.service_s*1000; 2 = max(freethreaded.json:points.*.tags.threadpool) -->
#
# **Predict** for a pool of 2 on the free-threaded build: the throughput with 2 users
# divided by the throughput with 1 - and the same on the GIL build. And: does the same work
# cost the free-threaded build more CPU time, or less? <!-- claim: 2 = cell; 1 = cell -->

# %%
my_guess_free_speedup = None  # free-threaded, pool of 2: throughput with 2 users / with 1
my_guess_gil_speedup = None   # GIL build, pool of 2: the same ratio
FREE_THREADED = REGISTRY["freethreaded"]
print(interpreters.describe())

# %%
# Measured here: 1 and 2 users, pool of 2 on both builds, and the fixed work (the whole
# figure: make charts ONLY=freethreaded).
why = FREE_THREADED.missing()
if why:
    print(f"skipped: {why}")
else:
    pool_of_two = teach.only(
        FREE_THREADED, x=[1, 2],
        where=lambda job: job.tags["threadpool"] == 2
        and job.tags["route"] in ("/offload-cpu", "/offload-work"),
    )
    mine = teach.measure(pool_of_two, results_dir=RESULTS_DIR, fresh=True)
    ratio = freethreaded.speedups(mine["points"])
    teach.check_guess(my_guess_free_speedup, ratio[freethreaded.FREE],
                      what="free-threaded, 2 users / 1", unit="x", theory=2.0)
    teach.check_guess(my_guess_gil_speedup, ratio[freethreaded.GIL],
                      what="GIL build, 2 users / 1", unit="x", theory=1.0)
    figure(FREE_THREADED, mine)

# %% [markdown]
# **The reference run** (`figures/freethreaded.png`, measured on a quiet machine). The
# numbers below are read from its data, `figures/data/freethreaded.json`:

# %%
reference = read_data(FIGURES_DIR / "data" / "freethreaded.json")
points = reference["points"]
cores = reference["machine"]["usable_cores"]
for build, x in freethreaded.speedups(points).items():
    print(f"{build:14} pool of 2: 2 users give {x:.2f}x the throughput of 1 user")
cost = freethreaded.fixed_work_ms(points)
print(f"fixed work, server CPU per request: GIL build {cost[freethreaded.GIL]:.1f} ms, "
      f"free-threaded {cost[freethreaded.FREE]:.1f} ms "
      f"({cost[freethreaded.FREE] / cost[freethreaded.GIL] - 1:+.0%})")
for build in (freethreaded.GIL, freethreaded.FREE):
    print(f"{build:14} /health median during the load (pool of 2): "
          f"{freethreaded.median_probe_ms(points, build):.1f} ms")
worst = max(freethreaded.off_theory(points, cores), key=lambda row: abs(row[2]))
print(f"farthest from its theory line: {worst[0]}, {worst[1]} users, {worst[2]:+.0%}")
print("servers:", interpreters.footer_words(points, "?"))

# %% [markdown]
# **Reading it.**
#
# - **GIL build:** a bigger pool adds nothing for pure Python - one core's worth, whatever the
#   pool. The process pool and hashlib use both cores, as in section 7.
# - **Free-threaded build:** the pool's threads compute side by side, min(users, threads,
#   cores) / S - the theory line, and the first two printed ratios.
# - **What it costs:** the same work takes the free-threaded 3.13 more CPU time on one
#   thread (the fixed-work line above; 3.13t runs without the specializing interpreter,
#   [says its how-to](https://docs.python.org/3.13/howto/free-threading-python.html), and
#   [What's New in 3.14](https://docs.python.org/3.14/whatsnew/3.14.html) puts 3.14t's cost at
#   roughly 5-10%). With one user the GIL build is faster; from two users on the
#   free-threaded build wins as long as there are cores.
#   <!-- claim: 3.13 = https://docs.python.org/3.13/howto/free-threading-python.html; 3.14 = https://docs.python.org/3.14/whatsnew/3.14.html; 5 = https://docs.python.org/3.14/whatsnew/3.14.html; 10 = https://docs.python.org/3.14/whatsnew/3.14.html -->
# - **What breaks:** an extension that does not declare free-threading support turns the GIL
#   back on at import (the server's report then says so, and names the module: httptools
#   0.7.1 does; 0.8 and later declare support), and code that was thread-safe by accident
#   stops being so - `counter += 1` on shared state loses updates. Lab 06
#   (`labs/06-threads-without-the-gil`) is about exactly that.
#   <!-- claim: 0.8 = https://github.com/MagicStack/httptools/releases -->
# - **Not measured here:** Python 3.14's interpreter pool (`InterpreterPoolExecutor`, one
#   interpreter with its own GIL per thread, [PEP 734](https://peps.python.org/pep-0734/)):
#   no 3.14 runs on this machine outside a chroot. <!-- claim: 3.14 = https://docs.python.org/3.14/whatsnew/3.14.html -->

# %% [markdown]
# ## Takeaway
#
# - For **waiting** (I/O), threads scale: k threads serve k requests at once. The pool size is
#   the slot count in Little's law.
# - For **computing** in pure Python, the threads of one process share one GIL: more threads
#   add no throughput. More processes do, up to the usable cores.
# - On a **free-threaded** Python (3.13t, 3.14t) pool threads do compute on several cores,
#   at a single-thread cost, as long as no extension turns the GIL back on and shared state
#   is locked. <!-- claim: 3.13 = https://docs.python.org/3.13/howto/free-threading-python.html; 3.14 = https://docs.python.org/3.14/howto/free-threading-python.html -->
# - AnyIO's default thread limiter - used by Starlette and FastAPI for `def` endpoints, sync
#   background tasks and file handling - has **40** tokens. When all are taken, more sync <!-- claim: 40 = pkg:anyio.thread_tokens -->
#   work queues silently.

# %% [markdown]
# ## Exercises
#
# 1. In section 3, add `anyio.to_thread.current_default_thread_limiter().total_tokens = 100`
#    as the first line of `blocking_calls` and re-run. What changes for 100 calls - and what <!-- claim: 100 = given -->
#    would the same change cost a real server?
# 2. With Little's law, work out how many gthread threads one worker needs for 200 req/s of <!-- claim: 200 = given -->
#    `/io?ms=100`. Check it with `serve(ServerSpec("wsgi", threads=...))` and `run_load`.
# 3. Measure `/offload-cpu?ms=20` on `ServerSpec("asgi", threadpool=4)` with 8 users. <!-- claim: 8 = given -->
#    Predict first: does a pool of 4 threads add throughput over `/cpu?ms=20`? <!-- claim: 4 = given -->
