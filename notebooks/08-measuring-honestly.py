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
import numpy as np

from conclab.base.cores import placement
from conclab.base.paths import quick_mode
from conclab.figures.experiment import figure
from conclab.figures.registry import REGISTRY
from conclab.teaching import teach

QUICK = quick_mode()                          # CONCLAB_QUICK=1: fewer points, shorter runs
RESULTS_DIR = teach.results_dir("08")         # the experiments' per-point files (git-ignored)
PAGE_REQUESTS = 20                            # requests one page load makes (section 3)

# %% [markdown]
# # 08 · Measuring honestly
#
# **Question.** Every chart in this lab is a measurement. How can a measurement lie - and how
# does the lab make sure it does not?
#
# ## 1. Closed loop vs open loop
#
# - A **closed-loop** client has N users; each sends a request, waits for the answer, then
#   sends the next. wrk, hey, ab and the lab's `run_load(concurrency=N)` work this way. The
#   server sets the pace: when it slows down, the client slows down with it.
# - An **open-loop** client sends requests at a fixed rate (`run_load(rate=R)`) whether or
#   not the earlier ones have been answered - like real users, who do not wait for each
#   other. When the server is slower than the arrivals, a queue builds up.
#
# ## 2. Coordinated omission
#
# Imagine the server freezes for one second. A closed-loop user with a request in flight
# waits that second and records *one* slow request. But in that second it would have sent
# many more requests; it sent none, so they are never measured. The client *coordinated*
# with the server and *omitted* exactly the bad samples: the percentiles look fine while
# real users would have queued.
#
# wrk2 avoids this by sending at a constant rate and measuring each latency from when the
# request *should* have been sent, not from when it actually left
# ([wrk2](https://github.com/giltene/wrk2)); oha does the same with `--latency-correction` in
# its rate mode ([oha](https://github.com/hatoo/oha)). The lab's driver does it in open-loop
# mode: latency counts from the intended start.
#
# ### Predict, then measure
#
# One sync Gunicorn worker on `/io?ms=50` can serve 20 req/s. The `open_vs_closed`
# experiment runs a closed loop of 4 users, an open loop below capacity (15 req/s) and one
# above it (25 req/s), for a few seconds each: <!-- claim: 20 = calc:1 / 0.05; 4 = file:src/conclab/figures/honesty.py;
# 15 = file:src/conclab/figures/honesty.py; 25 = file:src/conclab/figures/honesty.py -->

# %%
teach.plan(REGISTRY["open_vs_closed"])

# %% [markdown]
# What is the **p99 latency** of the closed loop, and of the open loop above capacity?

# %%
my_guess_closed_p99_ms = None    # milliseconds
my_guess_open_overload_p99_ms = None   # milliseconds

# %%
data = teach.measure(REGISTRY["open_vs_closed"], results_dir=RESULTS_DIR, fresh=True)
closed = next(p for p in data["points"] if p["load"]["concurrency"])
overload = max((p for p in data["points"] if p["load"]["rate"]), key=lambda p: p["load"]["rate"])
teach.check_guess(my_guess_closed_p99_ms, closed["summary"].latency_ms.p99,
                  what=f"{closed['series']}: p99", unit="ms")
teach.check_guess(my_guess_open_overload_p99_ms, overload["summary"].latency_ms.p99,
                  what=f"{overload['series']}: p99", unit="ms")
figure(REGISTRY["open_vs_closed"], data)

# %% [markdown]
# **Reading the chart.** The closed loop sits at a steady 200 ms (4 users, one slot:
# R = N / X = 4 / 20 req/s) and *looks* healthy, because the client slowed down to the
# server's pace. The open loop at 15 req/s is fine, about 50 ms. At 25 req/s five more
# requests arrive every second than leave, so the queue - and the latency - grows for as
# long as the overload lasts; its p99 is set by how long we chose to run, not by the server.
# <!-- claim: 200 = open_vs_closed.json:points.0.summary.latency_ms.mean ±5%; 4 = file:src/conclab/figures/honesty.py; 20 = calc:1 / 0.05;
# 15 = file:src/conclab/figures/honesty.py; 50 = open_vs_closed.json:points.1.summary.latency_ms.mean ±10%; 25 = file:src/conclab/figures/honesty.py -->
#
# The dotted lines measure from the moment each request actually left the client. Here they
# match the solid ones because the driver kept to its schedule; a client that falls behind
# (a saturated one) would send late, and only the solid, corrected lines would stay honest.
#
# ## 3. Percentiles, not averages

# %%
teach.latency_table(data)

# %% [markdown]
# The mean mixes the fast majority with the slow few and describes neither. Percentiles say
# what users get: p50 is the typical request, p99 the slowest one in a hundred, and the max
# is the worst one seen. Report how many requests a percentile is based on. The lab computes
# percentiles with `numpy.percentile` and its default *linear* method
# ([numpy.percentile](https://numpy.org/doc/stable/reference/generated/numpy.percentile.html)):
# of n sorted values, the p-th percentile sits at position (n - 1) · p / 100, between two <!-- claim: 1 = given --> <!-- claim: 100 = given -->
# values. For 50 requests the p99 lies between the second-slowest and the slowest, 51 % of <!-- claim: 50 = given --> <!-- claim: 51 = calc:((50 - 1) * 0.99 - 48) * 100 -->
# the way to the slowest - two requests decide it:

# %%
fifty = np.arange(1, 51)   # 50 latencies: 1 ms, 2 ms, ..., 50 ms
print(f"p50 = {np.percentile(fifty, 50):.2f} ms, p90 = {np.percentile(fifty, 90):.2f} ms, "
      f"p99 = {np.percentile(fifty, 99):.2f} ms, max = {fifty.max()} ms")

# %% [markdown]
# Users meet the tail more often than "1 %" suggests: <!-- claim: 1 = given -->

# %%
share = 1 - 0.99 ** PAGE_REQUESTS
print(f"A page that makes {PAGE_REQUESTS} requests waits for at least one request slower than p99 "
      f"in {share:.0%} of page loads.")

# %% [markdown]
# ## 4. Measure the measurer
#
# A load generator is a program with limits of its own. When it runs out of CPU it sends
# late and timestamps late, and its numbers then describe the *client*. Locust warns when
# its CPU use passes 90 % ([locust runners.py](https://github.com/locustio/locust/blob/master/locust/runners.py));
# k6's maintainers name a saturated load generator as the most likely cause of inflated
# waiting times ([grafana/k6#6101](https://github.com/grafana/k6/issues/6101)). As a
# yardstick, Locust's docs give, in the best case, roughly 4,000 requests per second per core
# for its standard `HttpUser` and about 16,000 for `FastHttpUser` (a 2021 M1 laptop,
# Python 3.11)
# ([Locust: Increase performance](https://docs.locust.io/en/stable/increase-performance.html)).
# <!-- claim: 90 = https://github.com/locustio/locust/blob/master/locust/runners.py; 4,000 = https://docs.locust.io/en/stable/increase-performance.html;
# 16,000 = https://docs.locust.io/en/stable/increase-performance.html -->
#
# The lab's driver uses httpx's API but sends through the aiohttp transport, because httpx's
# default async transport spends so much CPU per request that it falls apart under
# concurrency ([encode/httpx#3215](https://github.com/encode/httpx/issues/3215)). The driver
# runs its own event loop on its own core, watches its CPU use and how late its loop wakes
# up, and flags `client_saturated` rather than print a quietly wrong number.
#
# ### Predict, then measure
#
# The `client_ceiling` experiment sends the same load to one Uvicorn process through two
# clients: the lab's (httpx with the aiohttp transport) and httpx with its default
# transport. On `/io?ms=100`, Little's law says the server can serve N users at N / 0.1 s - <!-- claim: 0.1 = calc:100 / 1000 -->
# 1,000 req/s for 100 users. What throughput will the client with **httpx's default <!-- claim: 1,000 = calc:100 / 0.1 --> <!-- claim: 100 = given -->
# transport** report, at the most users in the plan?

# %%
teach.plan(REGISTRY["client_ceiling"])

# %%
my_guess_httpx_default = None   # requests per second

# %%
data = teach.measure(REGISTRY["client_ceiling"], results_dir=RESULTS_DIR, fresh=True)
naive = max((p for p in data["points"]
             if p["tags"]["transport"] == "httpx" and p["load"]["path"].startswith("/io")),
            key=lambda p: p["x"])
teach.check_guess(my_guess_httpx_default, naive["summary"].throughput_rps,
                  what=f"httpx default transport, {naive['x']} users",
                  theory=naive["prediction"]["throughput_rps"])
figure(REGISTRY["client_ceiling"], data)

# %%
teach.summary_table(data)

# %% [markdown]
# **Reading the chart and the table.** Same server, same load; only the client differs. With
# httpx's default transport the *client* cannot keep up under concurrency, and a naive benchmark would conclude that the server manages a
# fraction of what it can. Watch the client CPU column: a client near 100 % of its core is <!-- claim: 100 = given -->
# measuring itself.
#
# ## 5. Client and server on one laptop
#
# Running both on one machine is convenient - and honest only with care:
#
# - **They compete for CPU.** On Linux the lab pins the driver to one core and the servers
#   to the others; macOS has no CPU affinity, so there both float and points spread wider:

# %%
print(placement())

# %% [markdown]
# - **Loopback is not a network**: no latency, no bandwidth limit, no lost packets. These
#   charts show the servers' concurrency models, not what a user across the internet sees.
# - **The machine is not still.** Turbo boost, thermal throttling, a browser tab, a file
#   indexer: repeat a run and look at the spread before you trust a difference of 10 %. <!-- claim: 10 = given -->
# - **State the setup.** Every chart of the lab carries a footer with the cores, the Python
#   version, the date, where the driver ran and whether it was quick mode.
#
# Public benchmarks show how much the method decides the answer. Cal Paterson benchmarked a
# Postgres-backed app behind a reverse proxy
# ([Async Python is not faster](https://calpaterson.com/async-python-is-not-faster.html)).
# His best rows, by p99, were sync frameworks on Gunicorn with the meinheld worker and on
# uWSGI. Plain Gunicorn with Flask (14 workers) beat Uvicorn with Starlette (5 workers) on
# p99 - 42 ms against 75 - but not on p50 (28 ms against 16) nor on throughput (3,473 req/s
# against 4,952). <!-- claim: 14 = https://calpaterson.com/async-python-is-not-faster.html; 5 = https://calpaterson.com/async-python-is-not-faster.html; 42 = https://calpaterson.com/async-python-is-not-faster.html; 75 = https://calpaterson.com/async-python-is-not-faster.html; 28 = https://calpaterson.com/async-python-is-not-faster.html; 16 = https://calpaterson.com/async-python-is-not-faster.html; 3,473 = https://calpaterson.com/async-python-is-not-faster.html; 4,952 = https://calpaterson.com/async-python-is-not-faster.html -->
# Miguel Grinberg fixed problems in that benchmark, re-ran it and got another ranking -
# greenlet-based servers ahead, coroutine-based ones close behind - and called his write-up
# [Ignore All Web Performance Benchmarks, Including This One](https://blog.miguelgrinberg.com/post/ignore-all-web-performance-benchmarks-including-this-one).
# TechEmpower's benchmarks run client, server and database on separate machines
# ([TechEmpower](https://www.techempower.com/benchmarks/)). Whatever you measure, say what the
# workload is (waiting or computing), how much headroom the client had, and on what machine.
#
# ## 6. A last check: Little's law
#
# The lab checks every run twice: L measured directly (the time-averaged number of requests in
# flight) against X · R from throughput and mean latency. Little's law holds for any stable
# system measured over a window much longer than one request, so when the two columns
# disagree, the run broke a condition and its averages should not be trusted, however good
# the chart looks. The usual culprit: a saturated client whose requests took about as long
# as the measured window itself.

# %%
teach.littles_law_table(data)

# %% [markdown]
# ## Takeaway
#
# - A closed-loop client slows down with the server and hides its queue (coordinated
#   omission). To see what users would see, send at a fixed rate and measure from the
#   intended send time.
# - Report percentiles (p50, p99, max) and how many requests they rest on - not the mean.
# - Measure the measurer: watch the client's CPU, compare with an independent tool (the
#   `client_ceiling` chart adds wrk when it is installed), and state the machine.

# %% [markdown]
# ## Exercises
#
# 1. Run an open loop at 15 req/s with `arrivals="poisson"` against `serve(ServerSpec("wsgi"))` <!-- claim: 15 = given -->
#    on `/io?ms=50` for 8 s (`run_load(server.url, path=..., rate=15, arrivals="poisson", <!-- claim: 8 = given -->
#    duration=8)`). The average rate is below capacity - so why is p99 higher than with
#    constant arrivals?
# 2. Find the driver's own ceiling on this machine: `/hello` on `ServerSpec("asgi")` with 10, <!-- claim: 10 = given -->
#    50 and 100 users. Where does `client_saturated` appear? (`make calibrate` does this too.) <!-- claim: 100 = given --> <!-- claim: 50 = given -->
# 3. A closed loop of 4 users reports p99 = 200 ms for a server that freezes for 1 s once a <!-- claim: 1 = given --> <!-- claim: 200 = given --> <!-- claim: 4 = given -->
#    minute. Roughly what would an open loop at 20 req/s report for the requests around the <!-- claim: 20 = given -->
#    freeze - and which number would you show your users?
