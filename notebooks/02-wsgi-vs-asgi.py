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
import httpx

from conclab.base.paths import quick_mode
from conclab.base.specs import ServerSpec
from conclab.figures.cpu_offload import cost_table
from conclab.figures.experiment import figure
from conclab.figures.registry import REGISTRY
from conclab.measuring.driver import run_load
from conclab.processes.launcher import serve
from conclab.teaching import teach

QUICK = quick_mode()                   # CONCLAB_QUICK=1: fewer points, shorter runs
RESULTS_DIR = teach.results_dir("02")  # the experiments' per-point files (git-ignored)
IO_MS = 50                             # each request waits this long, like a database call
USERS = 10                             # concurrent users in the "predict" run
DURATION_S = 1.0 if QUICK else 3.0     # seconds measured per run
WARMUP_S = 0.3 if QUICK else 1.0       # seconds of load before measuring, not counted

# %% [markdown]
# # 02 · WSGI vs ASGI: Flask on Gunicorn vs an ASGI app on Uvicorn
#
# **Question.** Two servers run the same routes, and one request that waits 50 ms takes <!-- claim: 50 = cell -->
# 50 ms on both. Why, then, can one of them serve ten users ten times faster than the other? <!-- claim: 50 = cell -->
#
# ## 1. Who does what
#
# ```
#               HTTP                     a function call per request
# client  ─────────────▶  web server  ───────────────────────────────▶  your app
# (browser,               Gunicorn    ── WSGI: app(environ, start_response) ──▶  Flask app
#  load driver)           Uvicorn     ── ASGI: await app(scope, receive, send) ─▶  ASGI app
# ```
#
# - The **client** sends HTTP requests - here, the lab's load driver.
# - The **web server** (Gunicorn or Uvicorn) owns the socket: it accepts connections, parses
#   HTTP and calls your app once per request. In production a reverse proxy (nginx, a cloud
#   load balancer) usually sits in front of it.
# - The **app** (Flask, or our raw ASGI app) decides what to answer. It never sees a socket,
#   only the interface between server and app: WSGI or ASGI.
#
# That interface decides how concurrency can work.
#
# **WSGI** ([PEP 3333](https://peps.python.org/pep-3333/)) is a plain function call: the
# server calls `app(environ, start_response)`, and the calling thread is busy until the
# function returns. While the app waits for its database, that thread waits too.
#
# **ASGI** ([the ASGI specification](https://asgi.readthedocs.io/en/latest/specs/main.html))
# is a coroutine: the server runs `await app(scope, receive, send)` on an event loop. When
# the app awaits something slow, the loop runs other requests meanwhile (notebook 01).

# %% [markdown]
# ## 2. The two servers
#
# **Gunicorn** uses a pre-fork model: a master process starts worker processes and replaces
# any that die; the master never handles a request itself. Its default **sync** worker
# handles **one request at a time** ([Gunicorn: Design](https://docs.gunicorn.org/en/stable/design.html)).
# Serving more at once takes more workers (`--workers`) or threads: with `--threads` above 1, <!-- claim: 1 = https://docs.gunicorn.org/en/stable/settings.html#threads -->
# Gunicorn switches to its **gthread** worker, which serves one request per thread
# ([Gunicorn settings: threads](https://docs.gunicorn.org/en/stable/settings.html#threads)).
# Connections that find every worker busy wait in the socket's listen queue (`--backlog`,
# 2048 by default). Because a slow client ties up a sync worker, Gunicorn's docs expect a <!-- claim: 2048 = pkg:gunicorn.backlog -->
# buffering proxy such as nginx in front of it.
#
# Gunicorn is not WSGI-only, though. Its worker class decides what it runs: since
# 24.0.0 it ships a native ASGI worker (`--worker-class asgi`; its guide still calls it a
# beta feature, [Gunicorn: ASGI Worker](https://gunicorn.org/asgi)), and a common way to deploy FastAPI
# with Gunicorn is Gunicorn managing **Uvicorn workers**:
# `gunicorn -k uvicorn_worker.UvicornWorker` from the `uvicorn-worker` package
# ([uvicorn-worker](https://github.com/Kludex/uvicorn-worker); Uvicorn's own
# `uvicorn.workers` module is deprecated since Uvicorn 0.30). Gunicorn then supervises the
# processes and each worker runs Uvicorn's event loop. This notebook uses Gunicorn's
# classic WSGI workers, sync and gthread; notebook 05's exercises run FastAPI under Gunicorn.
#
# **Uvicorn** runs one event loop per process (using uvloop when it is installed). Every
# request is a task on that loop, so one process can hold many requests that are waiting.
# `--workers N` starts N processes. `--limit-concurrency N` makes it answer HTTP 503 to a
# request that arrives when N connections are *open* or N requests are running
# ([Uvicorn settings](https://www.uvicorn.org/settings/)). Open connections include idle
# keep-alive ones and the one asking, so N keep-alive clients are already too many: the
# check is `len(connections) >= limit or len(tasks) >= limit`, in
# `uvicorn/protocols/http/httptools_impl.py` (and `h11_impl.py`) of the installed Uvicorn.
#
# The two apps are short files in `servers/`: `wsgi_flask.py` and `asgi_minimal.py`. Their
# `/io?ms=N` route stands in for a database call: Flask calls `time.sleep`, the ASGI app
# awaits `asyncio.sleep`. These are the command lines the lab runs:

# %%
SYNC_1 = ServerSpec("wsgi")     # Flask on one sync Gunicorn worker
UVICORN = ServerSpec("asgi")    # the ASGI app on one Uvicorn process
for spec in (SYNC_1, UVICORN):
    print(f"{spec.label:18} {teach.command_line(spec)}")

# %% [markdown]
# A first look: start each server, send one request, and read the headers that the lab's
# servers add to every response - which process served it, and when its handler started and
# ended. `serve(...)` starts the server and stops it (all of its processes) when the `with`
# block ends.

# %%
for spec in (SYNC_1, UVICORN):
    with serve(spec) as server:
        # trust_env=False: ignore any proxy settings - the server is on this machine
        response = httpx.get(f"{server.url}/io?ms={IO_MS}", trust_env=False)
    handler_ms = (int(response.headers["x-end-ns"]) - int(response.headers["x-start-ns"])) / 1e6
    print(f"{spec.label:18} {response.status_code} {response.text.strip()!r:18} "
          f"served by pid {response.headers['x-worker-pid']}, handler ran {handler_ms:.1f} ms")

# %% [markdown]
# ## 3. Predict, then measure
#
# `USERS` = 10 users each send `GET /io?ms=50`, back to back: a user sends the next request <!-- claim: 10 = cell -->
# as soon as the previous answer arrives (a *closed loop*). How many requests per second
# does each server complete?
#
# - one **sync** Gunicorn worker;
# - one **Uvicorn** process.
#
# Hint: how many requests can each one work on at the same moment?

# %%
my_guess_sync = None     # requests per second
my_guess_uvicorn = None  # requests per second

# %%
runs = []
with teach.LiveChart(f"{USERS} users on /io?ms={IO_MS}: one sync worker, then one Uvicorn process"):
    for spec in (SYNC_1, UVICORN):
        with serve(spec) as server:
            result = run_load(server.url, path=f"/io?ms={IO_MS}", concurrency=USERS,
                              duration=DURATION_S, warmup=WARMUP_S, progress=True)
        runs.append(teach.point(spec, result))

for guess, run in zip((my_guess_sync, my_guess_uvicorn), runs, strict=True):
    teach.check_guess(guess, run["summary"].throughput_rps, what=run["label"],
                      theory=run["prediction"]["throughput_rps"])
teach.summary_table(runs)

# %% [markdown]
# ## 4. Little's law
#
# Why about 20 and 200? **Little's law**: in any stable system, the average number of <!-- claim: 20 = calc:1 / 0.05 -->
# requests inside it, L, equals the throughput X times the average time each one spends
# inside, R: **L = X · R** ([Little's law](https://en.wikipedia.org/wiki/Little%27s_law)).
#
# In a closed loop of N users with no pause between requests, every user always has exactly
# one request in flight, so L = N. If the server can work on c requests at once (its
# *slots*) and each takes S seconds:
#
# - throughput **X = min(N, c) / S** - every busy slot finishes 1/S requests per second; <!-- claim: 1 = given -->
# - latency **R = N / X** - whatever the slots cannot take waits in a queue.
#
# One sync worker: c = 1, S = 0.05 s, so X = 20 req/s and R = 10 / 20 = 0.5 s: each request <!-- claim: 10 = cell --> <!-- claim: 20 = calc:1 / 0.05 --> <!-- claim: 1 = given --> <!-- claim: 0.05 = calc:50 / 1000 --> <!-- claim: 0.5 = calc:10 / 20 -->
# waits for the nine ahead of it. Uvicorn awaiting `asyncio.sleep` has no slot limit, so
# X = 10 / 0.05 s = 200 req/s and R = 50 ms. The lab also measures L directly (the <!-- claim: 10 = cell --> <!-- claim: 200 = calc:10 / 0.05 --> <!-- claim: 0.05 = calc:50 / 1000 --> <!-- claim: 50 = calc:0.05 * 1000 -->
# time-averaged number of requests in flight), so the law checks the measurement itself:

# %%
teach.littles_law_table(runs)

# %% [markdown]
# ## 5. Timelines: watch it happen
#
# 12 requests that each wait 100 ms, all sent at once, one bar per request: light for the <!-- claim: 12 = file:src/conclab/figures/io_wait.py --> <!-- claim: 100 = file:src/conclab/figures/io_wait.py -->
# client's view (sent → answered), dark for when the handler actually ran, one lane per
# worker thread. This is the `timelines` experiment of `make charts`, limited to its `/io`
# cases.

# %%
data = teach.measure(teach.only(REGISTRY["timelines"], route="/io"), results_dir=RESULTS_DIR,
                     fresh=True)
teach.timeline_figure(data)

# %% [markdown]
# **Reading the chart.** One sync worker: a single lane, handlers strictly one after
# another - 12 × 100 ms = 1.2 s, and the last client waited for all the others. gthread <!-- claim: 12 = file:src/conclab/figures/io_wait.py --> <!-- claim: 100 = file:src/conclab/figures/io_wait.py --> <!-- claim: 1.2 = calc:12 * 100 / 1000 -->
# with 4 threads: four lanes, three rounds, about 300 ms. Uvicorn: a single lane - one <!-- claim: 4 = file:src/conclab/figures/io_wait.py --> <!-- claim: 300 = calc:3 * 100 -->
# thread! - yet all twelve handlers overlap, done in about 100 ms. <!-- claim: 100 = file:src/conclab/figures/io_wait.py -->

# %% [markdown]
# ## 6. Rising concurrency
#
# Now the full comparison, the `wsgi_vs_asgi` experiment of `make charts`: several sync
# workers, one gthread worker with many threads, and one Uvicorn process, each under a
# rising number of users (quick mode measures fewer points), with the Little's-law
# prediction dashed. The legend names each server's workers and threads.

# %%
data = teach.measure(REGISTRY["wsgi_vs_asgi"], results_dir=RESULTS_DIR, fresh=True)
figure(REGISTRY["wsgi_vs_asgi"], data)

# %%
teach.littles_law_table(data)

# %% [markdown]
# **Reading the chart.** Each server's throughput climbs with the users until its slots are
# full - one per sync worker, one per gthread thread (the `slots c` column) - and then stays
# flat at c / S: from there every extra user only adds queueing time (right panel). Uvicorn
# has no slot limit for awaiting, so its throughput keeps rising with the users until
# something else runs out - CPU for handling HTTP, or the client (notebook 08 checks the
# client).
#
# And async is not "faster". At the fewest users, where every server has a slot for every
# user, all three answer in the route's 100 ms plus a millisecond or so (the `R` column of
# the table above; in `figures/data/wsgi_vs_asgi.json`, 102-103 ms at one user). What async
# buys is *concurrency while waiting*. <!-- claim: 100 = file:src/conclab/figures/io_wait.py; 102 = min(wsgi_vs_asgi.json:points[0,5,10].summary.latency_ms.mean);
# 103 = max(wsgi_vs_asgi.json:points[0,5,10].summary.latency_ms.mean) -->
#
# What about Flask's `async def` views? Flask stays a WSGI app: for each request to such a
# view it starts an event loop in a thread, runs the view there and returns the result, so
# the worker is still tied up for the whole request. Inside one view you can await several
# things at once, but async views do not let a WSGI worker serve more requests at once
# ([Flask: Using async and await](https://flask.palletsprojects.com/en/stable/async-await/)).

# %% [markdown]
# ## 7. What uvloop and httptools buy
#
# Uvicorn can run its event loop on the standard library's `asyncio` or on **uvloop** (a
# loop built on libuv, in Cython), and parse HTTP with **h11** (pure Python) or
# **httptools** (C). Its docs say the uvloop and httptools implementations provide greater
# performance; `--loop auto` and `--http auto`, the defaults, use them when they are installed
# ([Uvicorn settings: Implementation](https://www.uvicorn.org/settings/#implementation)).
#
# Greater performance is not a shorter wait: a request that awaits 50 ms still takes 50 ms. <!-- claim: 50 = cell -->
# It is **less CPU per request** - more requests per core before the server is the
# bottleneck. Measuring that as a maximum throughput needs a client faster than the
# server, and this lab's Python driver is slower than Uvicorn on `/hello` (notebook 08
# measures both). So we measure the cost directly: the CPU time of every server process,
# read before and after an open-loop run at a fixed rate that every stack carries easily,
# divided by the requests answered. `conclab bench --server ...` prints the same number as
# `server CPU ... us per request`.
#
# The `cost_per_request` experiment does this for Gunicorn (sync and gthread), Uvicorn with
# asyncio+h11, asyncio+httptools and uvloop+httptools, and FastAPI on Uvicorn, at 200 and
# 1,000 requests per second. **Predict:** which stack costs least per request? And does a <!-- claim: 1,000 = file:src/conclab/figures/cpu_offload.py -->
# request cost more or less at 1,000 req/s than at 200? <!-- claim: 1,000 = file:src/conclab/figures/cpu_offload.py -->

# %%
# Quick mode measures the Uvicorn stacks only; `make charts` measures all six.
cost = teach.only(REGISTRY["cost_per_request"],
                  where=lambda job: not QUICK or job.tags["stack"].startswith("uvicorn"))
teach.plan(cost)

# %%
my_guess_cheapest = None     # e.g. "uvicorn uvloop+httptools"
my_guess_falls_with_load = None  # True if a request costs less at 1,000 req/s than at 200

# %%
data = teach.measure(cost, results_dir=RESULTS_DIR, fresh=True)
us = cost_table(data["points"])
for stack, runs in us.items():
    print(f"{stack:36} " + "   ".join(f"{name}: {min(v):4.0f} us" for name, v in runs.items()))
print(f"your guess for the cheapest: {my_guess_cheapest}; "
      f"your guess that the cost falls with load: {my_guess_falls_with_load}")
figure(REGISTRY["cost_per_request"], data)

# %% [markdown]
# **Reading the chart** (the reference run in `figures/cost_per_request.png`):
#
# - **httptools and uvloop cut the cost.** On `/hello` at 1,000 req/s: asyncio+h11 275 us per
#   request, asyncio+httptools 139, uvloop+httptools 111. Parsing HTTP in C saves the most;
#   the C loop adds a little more. FastAPI on the same uvloop+httptools costs 220: the
#   framework's routing, middleware and response objects run in Python too. Gunicorn costs
#   446 (sync, which ignores keep-alive, so each request also pays for a new connection;
#   [Gunicorn: Design](https://docs.gunicorn.org/en/stable/design.html))
#   and 461 (gthread). <!-- claim: 275 = median(cost_per_request.json:points[series=/hello at 1000 req/s,x=2].cost.us_per_request); 111 = median(cost_per_request.json:points[series=/hello at 1000 req/s,x=4].cost.us_per_request); 139 = median(cost_per_request.json:points[series=/hello at 1000 req/s,x=3].cost.us_per_request); 220 = median(cost_per_request.json:points[series=/hello at 1000 req/s,x=5].cost.us_per_request); 446 = median(cost_per_request.json:points[series=/hello at 1000 req/s,x=0].cost.us_per_request); 461 = median(cost_per_request.json:points[series=/hello at 1000 req/s,x=1].cost.us_per_request) -->
# - **The cost falls as the load rises.** Every stack's cost at 200 req/s is 1.62 to 2.69
#   times its cost at 1,000: from asyncio+h11 on `/state` (483 us vs 297) to asyncio+httptools
#   on `/state` (339 us vs 126).
#   <!-- claim: 200 = file:src/conclab/figures/cpu_offload.py; 1,000 = file:src/conclab/figures/cpu_offload.py;
#   1.62 = ratio(median(cost_per_request.json:points[series=/state at 200 req/s,x=2].cost.us_per_request), median(cost_per_request.json:points[series=/state at 1000 req/s,x=2].cost.us_per_request));
#   2.69 = ratio(median(cost_per_request.json:points[series=/state at 200 req/s,x=3].cost.us_per_request), median(cost_per_request.json:points[series=/state at 1000 req/s,x=3].cost.us_per_request));
#   483 = median(cost_per_request.json:points[series=/state at 200 req/s,x=2].cost.us_per_request); 297 = median(cost_per_request.json:points[series=/state at 1000 req/s,x=2].cost.us_per_request);
#   339 = median(cost_per_request.json:points[series=/state at 200 req/s,x=3].cost.us_per_request); 126 = median(cost_per_request.json:points[series=/state at 1000 req/s,x=3].cost.us_per_request) --> A request that arrives alone pays for
#   waking a sleeping server; under heavy load one turn of the loop handles many events.
# - **So the cost at a low rate underestimates capacity.** 1e6 / 111 us implies about
#   9,000 req/s on one core; `wrk` (a client in C, `apt-get install wrk`) drove the same
#   server to 30,424 req/s, where it cost 33 us per request and kept one core 99% busy. When
#   `wrk` is not installed the right panel shows only the implied capacities.
#   <!-- claim: 9,000 = calc:1e6 / 111 ±2%; 30,424 = cost_per_request.json:extra.wrk.rps; 33 = cost_per_request.json:extra.wrk.us_per_request;
#   99 = cost_per_request.json:extra.wrk.server_busy *100 -->
#
# `/state` (a small JSON answer) costs about the same as `/hello`: at this size, the
# server's work is the HTTP around the answer, not the answer.

# %% [markdown]
# ## Takeaway
#
# - WSGI is a blocking call: a Gunicorn **sync** worker serves **one request at a time**, and
#   a WSGI server's concurrency is workers × threads.
# - ASGI is a coroutine on an event loop: one Uvicorn process can hold as many *waiting*
#   requests as arrive.
# - Throughput = min(users, slots) / service time, and latency = users / throughput
#   (Little's law). Beyond the slots, more users only make longer queues.

# %% [markdown]
# ## Exercises
#
# 1. Set `USERS = 1` in the setup cell and re-run section 3. Which server wins now, and why
#    is that no contradiction?
# 2. Use Little's law to predict throughput and latency for `ServerSpec("wsgi", threads=8)`
#    with 16 users on `/io?ms=50`. Then measure it with `serve` and `run_load` and compare, <!-- claim: 16 = given -->
#    using `teach.littles_law_table([teach.point(spec, result)])`.
# 3. Start Uvicorn as `ServerSpec("asgi", limit_concurrency=8)` and send `/io?ms=100` from
#    7 users, then from 8 (`run_load(..., concurrency=...)`; each user keeps one connection <!-- claim: 7 = given --> <!-- claim: 8 = given -->
#    open). Predict first: how many requests get a 503 in each run? Then look at the `req/s`
#    and `errors` columns of `teach.summary_table`. Why does the 8th open connection already <!-- claim: 8 = given -->
#    cross the limit - and why are the refused requests so many more than the served ones?
#    When would you want such a limit in production?
