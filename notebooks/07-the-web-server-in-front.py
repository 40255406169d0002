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
import statistics
import threading
import time

import httpx
from IPython.display import display

from conclab.base.paths import quick_mode
from conclab.base.specs import ServerSpec
from conclab.figures.experiment import figure
from conclab.figures.registry import REGISTRY
from conclab.measuring.slowclients import describe, run_slow_clients
from conclab.processes.launcher import serve
from conclab.processes.nginx import NginxSpec, nginx_missing, serve_nginx
from conclab.teaching import teach

QUICK = quick_mode()                     # CONCLAB_QUICK=1: fewer points, shorter runs
RESULTS_DIR = teach.results_dir("07")    # the experiments' per-point files (git-ignored)
SLOW_CLIENTS = 4                         # slow connections in section 2
SLOW_SECONDS = 3.0                       # how long each keeps trickling before it gives up
# None when nginx is installed, else one line saying how to install it (under CI=true a
# missing nginx is an error instead: CI must run these cells).
MISSING = nginx_missing()
if MISSING:
    print("The nginx cells below will skip:", MISSING)

# %% [markdown]
# # 07 · The web server in front
#
# **Question.** Every deployment diagram reads *client → web server → Gunicorn/Uvicorn →
# app*. What does the web server in front (nginx) do that Gunicorn does not - and when does
# it matter?
#
# ## 1. Why it is there
#
# Gunicorn's design document is blunt: "we require a buffering proxy in front of a default
# configuration Gunicorn. If you exposed synchronous workers to the internet, a DOS attack
# would be trivial by creating a load that trickles data to the servers"
# ([Gunicorn: Design](https://docs.gunicorn.org/en/stable/design.html)). Its deployment page
# adds that with `proxy_buffering off` you should use an async worker class
# ([Gunicorn: Deploying](https://docs.gunicorn.org/en/stable/deploy.html)).
#
# A **sync worker** reads the request itself, on its only thread. While a client is still
# sending its header, the worker sits in `recv()` and serves nobody else. A client on a bad
# mobile link - or an attacker who sends one header line a second - holds a whole process.
#
# **nginx** waits for thousands of clients at once from one event loop, for a socket and a
# small buffer each, and hands the app a request only once it has arrived complete
# ([nginx: proxy_request_buffering](https://nginx.org/en/docs/http/ngx_http_proxy_module.html#proxy_request_buffering)).
# On the way back it reads the app's answer as fast as the app writes it and feeds the slow
# client itself ([proxy_buffering](https://nginx.org/en/docs/http/ngx_http_proxy_module.html#proxy_buffering)),
# so the worker is free again at once. The lab's nginx config is
# [servers/nginx.conf](../servers/nginx.conf): read its comments.

# %% [markdown]
# ## 2. Slow clients against two sync workers
#
# `run_slow_clients` opens K connections that each send a request line, then one header
# line per second, and never the blank line that ends the header. Meanwhile we send a normal
# `/hello` and time it.
#
# **Predict.** Gunicorn with **2 sync workers**, **4 slow clients** that give up after <!-- claim: 2 = given --> <!-- claim: 4 = given -->
# `SLOW_SECONDS`. How long does the `/hello` probe take? And with nginx in front of the same
# Gunicorn?

# %%
my_guess_probe_ms_alone = None
my_guess_probe_ms_behind_nginx = None


# %%
def probe_during_slow_clients(url, clients=SLOW_CLIENTS, seconds=SLOW_SECONDS, probes=3):
    """Time /hello probes while slow clients hold connections to url."""
    box = {}
    slow = threading.Thread(
        target=lambda: box.update(r=run_slow_clients(url, clients=clients, duration=seconds)))
    slow.start()
    time.sleep(0.4)  # let the slow clients connect first
    times = []
    for _ in range(probes):
        t = time.monotonic()
        httpx.get(url + "/hello", timeout=seconds + 10, trust_env=False)
        times.append((time.monotonic() - t) * 1000)
    slow.join()
    return times, box["r"]


if MISSING:
    print(MISSING)
else:
    with serve(ServerSpec("wsgi", workers=2)) as app:
        alone, slow_alone = probe_during_slow_clients(app.url, probes=1)
        with serve_nginx(NginxSpec((app.port,))) as nginx:
            behind, slow_behind = probe_during_slow_clients(nginx.url)
    print(f"Gunicorn alone:      first /hello took {alone[0]:7.0f} ms")
    print(f"nginx in front:      /hello took {statistics.median(behind):7.0f} ms "
          f"(median of {len(behind)})")
    print()
    print(describe(slow_alone))
    teach.check_guess(my_guess_probe_ms_alone, alone[0], what="probe latency, Gunicorn alone",
                      unit="ms")
    teach.check_guess(my_guess_probe_ms_behind_nginx, statistics.median(behind),
                      what="probe latency, nginx in front", unit="ms")

# %% [markdown]
# Alone, both workers are stuck in `recv()` on a slow client, and the probe waits in the
# listen queue until a slow client gives up. Behind nginx the app never sees the slow
# clients: nginx holds them, and the probe goes straight through.
#
# Gunicorn has its own last resort: a worker silent for longer than `--timeout` (30 s by <!-- claim: 30 = pkg:gunicorn.timeout -->
# default) is killed and replaced - the "WORKER TIMEOUT" of its log
# ([settings: timeout](https://docs.gunicorn.org/en/stable/settings.html#timeout)). That
# frees the worker, but the next slow client in the queue takes it again.

# %% [markdown]
# ## 3. Every server against a growing crowd of slow clients
#
# The figure `slow_clients` adds slow clients one after another while a `/hello` probe runs at
# a steady rate. **Predict** for each server the number of slow clients at which the probe
# stalls: Gunicorn sync (2 workers), gthread (2 workers x 4 threads), Uvicorn, nginx in front <!-- claim: 2 = file:src/conclab/figures/front.py --> <!-- claim: 4 = file:src/conclab/figures/front.py -->
# of 2 sync workers. The dotted lines mark the threads that read requests; dashed vertical <!-- claim: 2 = file:src/conclab/figures/front.py -->
# lines mark workers Gunicorn killed for their timeout.

# %%
if MISSING:
    print(MISSING)
else:
    slow_data = teach.measure(REGISTRY["slow_clients"], quick=QUICK, results_dir=RESULTS_DIR,
                              progress=False)
    display(figure(REGISTRY["slow_clients"], slow_data))

# %% [markdown]
# The sync workers stall as soon as each holds one slow client; gthread once its threads are
# all held (the kernel rarely spreads connections evenly over the workers, so one worker may
# fill up first); the event loop and nginx do not notice. The fix in
# [docs/reliability.md](../docs/reliability.md): put a buffering proxy in front, or use a
# worker class that does not give a thread to each waiting client.

# %% [markdown]
# ## 4. Scaling out: more instances behind nginx
#
# nginx's `upstream` block lists several app servers and sends each new request to the next
# one in turn ([nginx: upstream](https://nginx.org/en/docs/http/ngx_http_upstream_module.html)).
# Each instance here is a separate Gunicorn with one sync worker: one slot.
#
# **Predict** with Little's law (notebook 02): 8 users on `/io?ms=100` - throughput with 1, 2, <!-- claim: 1 = given --> <!-- claim: 2 = given --> <!-- claim: 8 = given -->
# 3, 4 instances? And on `/cpu?ms=20`, when the servers may use the cores this machine <!-- claim: 3 = given --> <!-- claim: 4 = given -->
# leaves them?

# %%
if MISSING:
    print(MISSING)
else:
    scale_data = teach.measure(REGISTRY["scale_out"], quick=QUICK, results_dir=RESULTS_DIR,
                               progress=False)
    display(figure(REGISTRY["scale_out"], scale_data))
    display(teach.littles_law_table(scale_data))

# %% [markdown]
# Waiting scales with instances exactly as it scaled with workers inside one Gunicorn: each
# instance adds a slot. CPU work stops at the cores the servers may use - separate processes
# on one machine share its cores however they are started. Scaling out pays for CPU only
# across machines; on one machine it buys isolation (one instance can crash or be restarted
# alone) and lets you run different versions side by side.

# %% [markdown]
# ## Takeaway
#
# - A sync worker gives a whole process to each client it is reading from; slow clients can
#   take all of them. A buffering proxy (nginx) in front absorbs them - Gunicorn's own docs
#   require one for sync workers.
# - Buffering works both ways: nginx reads the request completely before the app sees it, and
#   reads the answer completely so the worker is free while a slow client downloads it.
# - nginx balances instances; throughput on waiting grows with the slots they add (Little's
#   law), throughput on CPU with the cores they can use.

# %% [markdown]
# ## Exercises
#
# 1. Start `make serve-nginx` and, in another terminal, `conclab slowclients --url
#    http://127.0.0.1:8000 --clients 50 --duration 20`. Time `curl http://127.0.0.1:8000/hello`
#    meanwhile. Then stop it and try the same against `make serve-wsgi` (one sync worker).
#    Which answers, and why?
# 2. In section 3, gthread with 2 workers x 4 threads stalls at a different count of slow <!-- claim: 2 = given --> <!-- claim: 4 = given -->
#    clients than the sync workers. Predict the count from the slots, then read it off the
#    chart. Why did the probe sometimes still get through before that count?
# 3. Change `servers/nginx.conf` to `proxy_request_buffering off;` and run section 2 again
#    behind nginx. Does the probe change? Which part of a request does that setting decide
#    about ([nginx docs](https://nginx.org/en/docs/http/ngx_http_proxy_module.html#proxy_request_buffering)),
#    and which kind of slow client would now reach the workers? (Gunicorn's deploy docs say to
#    use async workers when buffering is off: [deploy](https://docs.gunicorn.org/en/stable/deploy.html).)
