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
import collections
import os

import httpx
from IPython.display import display

from conclab.base import system
from conclab.base.cores import usable_cores
from conclab.base.paths import quick_mode
from conclab.base.specs import ServerSpec
from conclab.figures.experiment import figure
from conclab.figures.registry import REGISTRY
from conclab.measuring.driver import run_load
from conclab.processes.launcher import serve
from conclab.teaching import teach

QUICK = quick_mode()                         # CONCLAB_QUICK=1: fewer points, shorter runs
RESULTS_DIR = teach.results_dir("06")        # the experiments' per-point files (git-ignored)
CORES = usable_cores()                       # CPU affinity, or the cgroup's CPU quota if smaller
STATE_REQUESTS = 40                          # requests to /state in section 2
MEMORY_WORKERS = [1, 4] if QUICK else [1, 2, 4, 8]   # worker counts for the memory check
MEMORY_SWEEP = not QUICK                     # the memory sweep holds requests 3 s per point

# %% [markdown]
# # 06 · Worker processes
#
# **Question.** Gunicorn and Uvicorn both take `--workers N` and start more processes. What
# does each extra worker give you, what does it cost, and how many should you run?
#
# ## 1. What a worker is
#
# Both servers can run several **worker processes** behind one listening socket:
#
# - **Gunicorn**: the master process forks N workers (`--workers N`). They all accept
#   connections from the same socket, and the operating system decides which worker gets
#   each one. The master only supervises: it restarts workers that die, and kills a worker
#   that stays silent for longer than `--timeout` (30 s by default) - the "WORKER TIMEOUT" <!-- claim: 30 = pkg:gunicorn.timeout -->
#   you may meet in logs ([Gunicorn: Design](https://docs.gunicorn.org/en/stable/design.html),
#   [settings](https://docs.gunicorn.org/en/stable/settings.html#timeout)). That timeout is a
#   watchdog, not a request deadline: a sync worker stuck in one slow handler (try
#   `ServerSpec("wsgi", timeout=2)` and `/io?ms=4000`) is killed and replaced, and the
#   client gets a 500 from Gunicorn itself - one slow request costs a whole worker restart.
# - **Uvicorn**: `--workers N` (by default the `WEB_CONCURRENCY` environment variable, or 1) <!-- claim: 1 = https://www.uvicorn.org/settings/ -->
#   starts N worker processes that share the socket
#   ([Uvicorn settings](https://www.uvicorn.org/settings/)).
#
# Each worker is a separate Python process, so each has
#
# - its **own memory**: module-level variables, caches, connection pools - nothing is shared;
# - its **own event loop** (Uvicorn) and its **own thread pool** - 40 AnyIO tokens *per <!-- claim: 40 = pkg:anyio.thread_tokens -->
#   worker*, in a Starlette app;
# - its **own GIL**: workers compute in parallel, on different cores.

# %% [markdown]
# ## 2. Isolated memory: the `/state` counter
#
# Both apps have a route `/state` that adds one to a module-level counter and answers
# `{"pid": ..., "count": ...}`.
#
# **Predict.** We start **2 sync Gunicorn workers** and send 40 requests, one after another. <!-- claim: 2 = given --> <!-- claim: 40 = given -->
# What is the highest `count` any answer shows?

# %%
my_guess_max_count = None

# %%
spec = ServerSpec("wsgi", workers=2)
with serve(spec) as server:
    with httpx.Client(trust_env=False) as client:   # trust_env=False: no proxies, this is loopback
        answers = [client.get(f"{server.url}/state").json() for _ in range(STATE_REQUESTS)]

per_worker = collections.defaultdict(list)
for answer in answers:
    per_worker[answer["pid"]].append(answer["count"])
for pid, counts in per_worker.items():
    print(f"worker pid {pid}: served {len(counts):2} requests, its counter reached {max(counts)}")
teach.check_guess(my_guess_max_count, max(a["count"] for a in answers), what="highest count",
                  unit="")

# %% [markdown]
# Each worker counted only the requests it served. A counter, a cache or a dict of logged-in
# users kept in a module global is **per process**: with N workers there are N of them, and
# a user's next request may land on another one. State that must be shared belongs outside
# the workers - a database, Redis, a file with locking.
#
# **Which worker gets a request?** The operating system hands out *connections*, not
# requests. Gunicorn's sync workers close the connection after every response (they ignore
# keep-alive), so every request above was a new connection. A client that keeps its
# connection open - browsers do, and so does our load driver - sends all of that
# connection's requests to the same worker. Here are 4 keep-alive users against 2 Uvicorn <!-- claim: 4 = cell --> <!-- claim: 2 = cell -->
# workers:

# %%
spec = ServerSpec("asgi", workers=2)
with teach.LiveChart("4 keep-alive users, 2 Uvicorn workers"), serve(spec) as server:
    print(f"worker pids: {server.worker_pids}")
    result = run_load(server.url, path="/io?ms=10", concurrency=4, requests=200, progress=True)
served = collections.Counter(result.columns()["worker_pid"].tolist())
for pid, n in served.items():
    print(f"worker pid {pid}: {n} requests")

# %% [markdown]
# Anything from an even split to "all on one worker" can happen: it depends on which worker
# happened to accept each of the 4 connections. Balancing across workers is only as fine as <!-- claim: 4 = cell -->
# the connections are.
#
# ## 3. Spreading CPU work across cores
#
# **Predict.** 8 users send `/cpu?ms=40` (40 ms of pure-Python CPU work) to Gunicorn sync <!-- claim: 40 = given --> <!-- claim: 8 = given -->
# workers. What throughput with 1 worker, and with 2? <!-- claim: 1 = given --> <!-- claim: 2 = given -->

# %%
print(f"usable cores: {CORES} (the load driver needs some CPU too)")
my_guess_1_worker = None    # requests per second
my_guess_2_workers = None   # requests per second

# %% [markdown]
# The `workers` experiment of `make charts` measures this - and, beside it, the same
# workers on I/O:

# %%
teach.plan(REGISTRY["workers"])

# %%
data = teach.measure(REGISTRY["workers"], results_dir=RESULTS_DIR, fresh=True)
cpu = {p["x"]: p for p in data["points"] if p["series"].startswith("CPU")}
teach.check_guess(my_guess_1_worker, cpu[1]["summary"].throughput_rps, what="1 worker",
                  theory=cpu[1]["prediction"]["throughput_rps"])
teach.check_guess(my_guess_2_workers, cpu[2]["summary"].throughput_rps, what="2 workers",
                  theory=cpu[2]["prediction"]["throughput_rps"])
figure(REGISTRY["workers"], data)

# %% [markdown]
# **Reading the chart.** CPU work scales with workers only up to the usable cores (`CORES`) -
# fewer, if the load driver or other programs keep some of them busy; past that, the
# workers take turns on the same cores. I/O work (each sync worker waits)
# scales with workers up to the number of users, because a waiting process needs no core.
#
# ## 4. What a worker costs: memory
#
# Each worker is a whole Python interpreter with your app loaded. The lab reports memory as
# **PSS** (proportional set size): a page shared by several processes - such as the code a
# forked worker shares with its master - is split between them, so N workers are not
# charged N times for what they share. Only Linux counts PSS: on macOS the lab reports RSS,
# which charges every shared page to each process, so N workers look heavier than they are
# (the table's heading says which one this machine used).

# %%
rows, mib = [], {}
for n in MEMORY_WORKERS:
    for kind in ("wsgi", "asgi"):
        spec = ServerSpec(kind, workers=n)
        with serve(spec) as server:
            mib[kind, n] = server.rss_bytes() / 2**20
        rows.append([spec.label, n, mib[kind, n]])
first, last = MEMORY_WORKERS[0], MEMORY_WORKERS[-1]
step = {kind: (mib[kind, last] - mib[kind, first]) / (last - first) for kind in ("wsgi", "asgi")}
teach.Table(["server", "workers", f"memory of all its processes (MiB, {system.memory_kind()})"],
            rows,
            f"each extra idle worker: Gunicorn sync {step['wsgi']:.1f} MiB, "
            f"Uvicorn {step['asgi']:.1f} MiB")

# %% [markdown]
# Each worker adds memory before it serves a single request: the note under the table gives
# the step per idle worker. A worker that holds a request grows a little more: the `memory`
# figure measures about 16 MiB of PSS per forked sync worker of this small Flask app, from 1
# to 16 workers; a real app with more imports costs more. <!-- claim: 16 = calc:(memory.json:points.2.rss_bytes.loaded - memory.json:points.0.rss_bytes.loaded) / 15 / 1048576 ±5%; 1 = memory.json:points.0.x --> Uvicorn's step is larger for two
# reasons: it *spawns* fresh interpreters for its workers rather than forking, so they share
# less with their parent, and each worker of our ASGI app starts its own process pool (one
# process per usable core) - the README's "The servers, by hand" says why.
#
# For comparison, the `memory` experiment holds N slow requests in flight and measures the
# extra memory per request for processes, threads and coroutines. On the coroutine side
# that is one whole in-flight Uvicorn request - connection, transport, HTTP parser, task and
# coroutine - not a bare coroutine object. It holds every point for 3 s, so quick mode <!-- claim: 3 = calc:3000 / 1000 -->
# skips it:

# %%
if MEMORY_SWEEP:
    data = teach.measure(REGISTRY["memory"], results_dir=RESULTS_DIR, fresh=True)
    display(figure(REGISTRY["memory"], data))
else:
    print("Quick mode: memory sweep skipped. "
          "Set MEMORY_SWEEP = True in the setup cell to run it (about a minute).")

# %% [markdown]
# ## 5. How many workers? The (2 × cores) + 1 rule <!-- claim: 2 = https://docs.gunicorn.org/en/stable/design.html#how-many-workers --> <!-- claim: 1 = https://docs.gunicorn.org/en/stable/design.html#how-many-workers -->
#
# Gunicorn's docs suggest **(2 × cores) + 1** workers as a place to *start*, then tuning <!-- claim: 2 = https://docs.gunicorn.org/en/stable/design.html#how-many-workers --> <!-- claim: 1 = https://docs.gunicorn.org/en/stable/design.html#how-many-workers -->
# under real load; the reasoning is that, per core, one worker can be reading or writing the
# socket while another processes a request. The same section warns against scaling workers
# to the number of clients you expect: a handful of workers should handle hundreds or
# thousands of requests per second, and too many will thrash the machine
# ([Gunicorn: How many workers?](https://docs.gunicorn.org/en/stable/design.html#how-many-workers)).

# %%
print(f"os.cpu_count():               {os.cpu_count()}  (cores in the machine)")
print(f"system.cpu_ids():             {len(system.cpu_ids())}  "
      "(cores this process may run on: its CPU affinity on Linux)")
print(f"usable_cores():               {CORES}  (and no more than the cgroup's CPU quota)")
print(f"(2 x {CORES}) + 1 = {2 * CORES + 1} workers as a starting point")

# %% [markdown]
# It is a starting point, and it is wrong whenever its assumption - short requests that keep
# a CPU or the network busy - is wrong:
#
# - **Long waits in sync workers.** A sync worker waiting 500 ms for another service is a <!-- claim: 500 = given -->
#   slot doing nothing. By Little's law, 100 req/s × 0.5 s needs 50 slots, not 5 workers. <!-- claim: 100 = given --> <!-- claim: 0.5 = calc:500 / 1000 --> <!-- claim: 50 = calc:100 * 0.5 --> <!-- claim: 5 = calc:2 * 2 + 1 -->
#   Rather than 50 processes, use threads (gthread) or an async server - notebook 02. <!-- claim: 50 = calc:100 * 0.5 -->
# - **Pure CPU work.** More workers than cores add memory and context switches, not
#   throughput (section 3).
# - **Async workers.** One Uvicorn worker serves many waiting requests at once, so waiting
#   does not size an async server: its workers are there for CPU - parsing HTTP, your
#   handlers' own work - and, like CPU work above, they help up to the usable cores. Measure
#   with your own load.
# - **Containers and shared machines.** `os.cpu_count()` counts the machine's cores, and the
#   CPU affinity does not know about a container's CPU quota: a container limited to 2 CPUs <!-- claim: 2 = given -->
#   on a 64-core host would start 129 workers. Count the cores you actually get - the lab's <!-- claim: 64 = given --> <!-- claim: 129 = calc:2 * 64 + 1 -->
#   `usable_cores()` takes the affinity and the cgroup's `cpu.max` quota, whichever is
#   smaller.
# - **Memory.** Workers × memory per worker must fit, with room to spare (section 4).

# %% [markdown]
# ## Takeaway
#
# - A worker process has its own memory, event loop, thread pool and GIL: workers add CPU
#   parallelism and isolation.
# - State in module globals exists once per worker. The OS balances connections, not
#   requests.
# - Every worker costs memory - about 16 MiB of PSS for a forked sync worker of this small
#   app, more for a real one. (2 × cores) + 1 is a starting point for sync workers with <!-- claim: 16 = calc:(memory.json:points.2.rss_bytes.loaded - memory.json:points.0.rss_bytes.loaded) / 15 / 1048576 ±5%; 2 = https://docs.gunicorn.org/en/stable/design.html#how-many-workers; 1 = https://docs.gunicorn.org/en/stable/design.html#how-many-workers -->
#   short requests; size for real by measuring, and with Little's law when requests wait.

# %% [markdown]
# ## Exercises
#
# 1. Re-run the `/state` experiment of section 2 with `ServerSpec("asgi", workers=2)`. Why
#    may all 40 answers come from one pid? Then send each request on a new connection <!-- claim: 40 = given -->
#    (`httpx.get(...)` instead of `client.get(...)`) and compare.
# 2. With Little's law, how many sync workers does 100 req/s of `/io?ms=50` need? Check it <!-- claim: 100 = given -->
#    with `serve(ServerSpec("wsgi", workers=...))` and `run_load`, then compare the memory
#    with one gthread worker that has as many threads.
# 3. Run this notebook outside quick mode (without `CONCLAB_QUICK` in the environment) so that
#    the `workers` sweep measures more worker counts. Where does CPU throughput stop
#    growing? Does it match `CORES` - and why might it stop a little early?
