"""Write the teaching notebooks (notebooks/NN-topic.ipynb) from the cells in this file.

    python notebooks/_build.py           # (re)write every notebook
    python notebooks/_build.py --check   # exit 1 if a notebook differs from this file

This file is the notebooks' source: edit a lesson here, run it, commit both.
The notebooks are written as they are committed - no outputs, no execution
counts - and a test checks that they match this file.

Every notebook follows one pattern: a setup cell first (imports, parameters,
quick mode), prose that teaches, at least one "predict, then measure" pair (a
cell where the student writes ``my_guess_... = <number>``, then the cell that
measures and compares), charts from the same experiments as ``make charts``,
and a takeaway with exercises at the end.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from textwrap import dedent

import nbformat
from nbformat.v4 import new_code_cell, new_markdown_cell, new_notebook

HERE = Path(__file__).resolve().parent


def md(text):
    return ("markdown", dedent(text).strip(), ())


def code(text, *tags):
    return ("code", dedent(text).strip(), tags)


def setup(text):
    return code(text, "setup", "parameters")


# --------------------------------------------------------------------------- 01

NB01 = [
    setup('''
        # Setup - run this cell first: imports and parameters.
        %matplotlib inline
        import asyncio
        import time

        from conclab import teach
        from conclab.experiments import quick_mode

        QUICK = quick_mode()  # CONCLAB_QUICK=1 selects quick mode; this notebook is quick either way
        N_TASKS = 10          # how many coroutines run together
        NAP_S = 0.1           # how long each one waits (seconds)
        BLOCK_S = 0.3         # how long the badly behaved one blocks the thread (seconds)
    '''),
    md('''
        # 01 · Sync vs async: what does `await` actually do?

        **Question.** A web server spends most of its time waiting: for a database, for another
        service, for the network. How can *one* thread wait for many things at once - and what
        breaks that?

        No server yet: this notebook is about Python itself. By the end you can explain

        - what `async def` creates, and when its code actually runs;
        - what the event loop does (it is a scheduler);
        - why ten waits can take the time of one - and how a single `time.sleep` ruins it for everyone.
    '''),
    md('''
        ## 1. Ordinary code runs line by line

        A normal function call runs to its end before the next line starts. If the function
        waits - `time.sleep`, a blocking database driver, `requests.get` - the whole thread waits
        with it and does nothing else.
    '''),
    code('''
        def make_tea(cup, seconds):
            time.sleep(seconds)      # the thread waits here and can do nothing else
            return f"cup {cup} ready"

        start = time.perf_counter()
        print([make_tea(cup, NAP_S) for cup in range(3)])
        print(f"3 cups took {time.perf_counter() - start:.2f} s: one after another")
    '''),
    md('''
        ## 2. Coroutines: functions that can pause

        `async def` defines a **coroutine function**. Calling it does *not* run its body: it
        returns a **coroutine object**, a computation that has not started yet. The body runs only
        when something drives it - when another coroutine `await`s it, or when it is handed to
        the event loop as a **task** (`asyncio.create_task`, `asyncio.gather`).

        Inside a coroutine, `await` marks the points where it may pause: *"I am waiting for this;
        run something else and wake me up when it is done."*
    '''),
    code('''
        async def brew(cup, seconds):
            await asyncio.sleep(seconds)   # pause here: the event loop is free meanwhile
            return f"cup {cup} ready"

        coro = brew(0, NAP_S)
        print(coro)        # a coroutine object: nothing has run yet
        coro.close()       # we never run this one (closing it avoids a "never awaited" warning)
    '''),
    md('''
        In a script you start an event loop with `asyncio.run(main())`. A Jupyter kernel already
        runs an event loop, so in a notebook you can write `await` directly in a cell:
    '''),
    code('''
        await brew(0, NAP_S)
    '''),
    md('''
        ## 3. The event loop is a scheduler

        The event loop runs on **one thread** and keeps a queue of tasks that are ready to run. It
        takes one and runs it **until that task reaches an `await` on something that is not ready
        yet** - a timer, a socket with no data. Then the task is parked, the loop notes what it
        waits for, and it runs the next ready task. When the timer fires or the data arrives, the
        parked task is ready again and resumes right after its `await`.

        Two consequences:

        - Many tasks can be *waiting* at once, on one thread. A waiting coroutine costs a little
          memory, not a thread.
        - Only one task *runs* at any moment, and nothing interrupts it: it keeps the thread
          until it reaches an `await`. This is **cooperative** multitasking - every task must
          cooperate by awaiting.

        Python docs: [Coroutines and Tasks](https://docs.python.org/3/library/asyncio-task.html),
        [the event loop](https://docs.python.org/3/library/asyncio-eventloop.html).
    '''),
    md('''
        ## 4. Predict, then measure: ten naps

        We run `N_TASKS` = 10 coroutines that each `await asyncio.sleep(0.1)`, in two ways:

        - **one after another**: a `for` loop that awaits each nap before starting the next;
        - **together**: `await asyncio.gather(...)` of all ten, which makes them tasks that the
          loop runs concurrently.

        How long does each way take in total? Write your guesses (in seconds) before you run the
        measurement.
    '''),
    code('''
        my_guess_one_after_another = None  # seconds, e.g. 0.5
        my_guess_together = None           # seconds
    '''),
    code('''
        async def nap(name, log):
            start = time.perf_counter()
            await asyncio.sleep(NAP_S)          # paused: the loop runs other tasks meanwhile
            log.append((name, start, time.perf_counter()))

        one_after_another, together = [], []

        start = time.perf_counter()
        for i in range(N_TASKS):
            await nap(f"task {i}", one_after_another)   # wait for each before starting the next
        sequential_s = time.perf_counter() - start

        start = time.perf_counter()
        await asyncio.gather(*(nap(f"task {i}", together) for i in range(N_TASKS)))   # all at once
        gather_s = time.perf_counter() - start

        teach.check_guess(my_guess_one_after_another, sequential_s, what="one after another", unit="s",
                          theory=N_TASKS * NAP_S)
        teach.check_guess(my_guess_together, gather_s, what="asyncio.gather", unit="s", theory=NAP_S)
    '''),
    code('''
        teach.task_timeline({
            "one after another (for loop + await)": one_after_another,
            "together (asyncio.gather)": together,
        })
    '''),
    md('''
        **Reading the chart.** Each bar is one task, from its start to its end. At the top, each
        task starts when the previous one ends, so the waits add up. At the bottom, all ten start
        at once and all ten wait *at the same time* - on one thread. The loop itself needed almost
        no time: it set ten timers and woke each task when its timer fired.

        That is the whole trick of an async server: a request waiting for its database is a paused
        coroutine, and one thread can hold thousands of them.
    '''),
    md('''
        ## 5. One blocking call stalls everyone

        `await` is a promise to cooperate, and `time.sleep` breaks it: it is an ordinary blocking
        call, so the thread - the *only* thread of the loop - sleeps, and no other task can run
        until it returns, not even those whose timers have long fired.

        **Predict.** We gather ten naps again, but task 5 first calls `time.sleep(0.3)`
        (`BLOCK_S`) and only then naps. Tasks 0-4 start before it.

        - When does **task 0** (an innocent 0.1 s nap) finish?
        - When is **everything** done?
    '''),
    code('''
        my_guess_task0_done = None   # seconds after the start
        my_guess_all_done = None     # seconds after the start
    '''),
    code('''
        async def bad_nap(name, log):
            start = time.perf_counter()
            time.sleep(BLOCK_S)                  # THE BUG: blocks the thread, the loop cannot switch
            busy_end = time.perf_counter()
            await asyncio.sleep(NAP_S)
            log.append((name, start, time.perf_counter(), start, busy_end))

        blocked = []
        start = time.perf_counter()
        await asyncio.gather(*(bad_nap(f"task {i}", blocked) if i == 5 else nap(f"task {i}", blocked)
                               for i in range(N_TASKS)))
        all_done_s = time.perf_counter() - start
        task0_done_s = next(span[2] for span in blocked if span[0] == "task 0") - start

        teach.check_guess(my_guess_task0_done, task0_done_s, what="task 0 done after", unit="s", theory=BLOCK_S)
        teach.check_guess(my_guess_all_done, all_done_s, what="everything done after", unit="s",
                          theory=BLOCK_S + NAP_S)
    '''),
    md('''
        The fix, when a blocking call cannot be avoided: run it in a worker thread and *await* the
        result. `asyncio.to_thread` does exactly that; the loop stays free while the call runs.
    '''),
    code('''
        async def offloaded_nap(name, log):
            start = time.perf_counter()
            await asyncio.to_thread(time.sleep, BLOCK_S)   # the blocking call runs in another thread
            await asyncio.sleep(NAP_S)
            log.append((name, start, time.perf_counter()))

        offloaded = []
        await asyncio.gather(*(offloaded_nap(f"task {i}", offloaded) if i == 5 else nap(f"task {i}", offloaded)
                               for i in range(N_TASKS)))

        teach.task_timeline({
            "task 5 calls time.sleep: everyone waits": blocked,
            "task 5 runs it with asyncio.to_thread: only task 5 waits": offloaded,
        })
    '''),
    md('''
        **Reading the chart.** At the top, the dark red bar is the 0.3 s during which task 5 held
        the thread. Tasks 0-4 had finished waiting after 0.1 s but could not resume until the
        thread was free, so their bars stretch to 0.3 s; tasks 6-9 could not even *start*. In a
        server each task is a request, and "everyone" includes the health check of your load
        balancer - notebook 03 measures that.

        At the bottom, the blocking call runs in another thread; the loop keeps switching, and
        only task 5 itself takes longer.
    '''),
    md('''
        ## Takeaway

        - `async def` makes a coroutine. Its code runs only when it is awaited or scheduled as a
          task, and it can pause at each `await`.
        - The event loop is a scheduler on **one** thread: while one task waits, others run. Ten
          waits of 0.1 s take 0.1 s, not 1 s.
        - Nothing interrupts a running task. A blocking call (`time.sleep`, a sync database
          driver, heavy CPU work) inside `async def` stalls **every** task on that loop. Await a
          non-blocking version instead (`asyncio.sleep`, an async driver), or run the blocking
          call in a thread (`asyncio.to_thread`).
    '''),
    md('''
        ## Exercises

        1. Set `N_TASKS = 1000` in the setup cell and re-run section 4. How long does `gather`
           take now? What does that tell you about the cost of a waiting coroutine?
        2. In `bad_nap`, replace `time.sleep(BLOCK_S)` with pure CPU work such as
           `sum(range(5_000_000))`. Does it stall the other tasks too? Then run it with
           `asyncio.to_thread`: the other tasks are free again - but does the CPU work itself get
           done any sooner? (Notebook 04 explains why not.)
        3. Predict what `print(asyncio.run(brew(1, 0.1)))` prints in a plain Python script, and
           why the same line raises an error inside this notebook. Then try both.
    '''),
]


# --------------------------------------------------------------------------- 02

NB02 = [
    setup('''
        # Setup - run this cell first: imports and parameters.
        %matplotlib inline
        import httpx

        from conclab import teach
        from conclab.driver import run_load
        from conclab.experiments import REGISTRY, measure, quick_mode
        from conclab.launcher import ServerSpec, serve
        from conclab.plotting import figure

        QUICK = quick_mode()                   # CONCLAB_QUICK=1: fewer points, shorter runs
        RESULTS_DIR = teach.results_dir("02")  # the experiments' per-point files (git-ignored)
        IO_MS = 50                             # each request waits this long, like a database call
        USERS = 10                             # concurrent users in the "predict" run
        DURATION_S = 1.0 if QUICK else 3.0     # seconds measured per run
        WARMUP_S = 0.3 if QUICK else 1.0       # seconds of load before measuring, not counted
    '''),
    md('''
        # 02 · WSGI vs ASGI: Flask on Gunicorn vs an ASGI app on Uvicorn

        **Question.** Two servers run the same routes, and one request that waits 50 ms takes
        50 ms on both. Why, then, can one of them serve ten users ten times faster than the other?

        ## 1. Who does what

        ```
                      HTTP                     a function call per request
        client  ─────────────▶  web server  ───────────────────────────────▶  your app
        (browser,               Gunicorn    ── WSGI: app(environ, start_response) ──▶  Flask app
         load driver)           Uvicorn     ── ASGI: await app(scope, receive, send) ─▶  ASGI app
        ```

        - The **client** sends HTTP requests - here, the lab's load driver.
        - The **web server** (Gunicorn or Uvicorn) owns the socket: it accepts connections, parses
          HTTP and calls your app once per request. In production a reverse proxy (nginx, a cloud
          load balancer) usually sits in front of it.
        - The **app** (Flask, or our raw ASGI app) decides what to answer. It never sees a socket,
          only the interface between server and app: WSGI or ASGI.

        That interface decides how concurrency can work.

        **WSGI** ([PEP 3333](https://peps.python.org/pep-3333/)) is a plain function call: the
        server calls `app(environ, start_response)`, and the calling thread is busy until the
        function returns. While the app waits for its database, that thread waits too.

        **ASGI** ([the ASGI specification](https://asgi.readthedocs.io/en/latest/specs/main.html))
        is a coroutine: the server runs `await app(scope, receive, send)` on an event loop. When
        the app awaits something slow, the loop runs other requests meanwhile (notebook 01).
    '''),
    md('''
        ## 2. The two servers

        **Gunicorn** uses a pre-fork model: a master process starts worker processes and replaces
        any that die; the master never handles a request itself. Its default **sync** worker
        handles **one request at a time** ([Gunicorn: Design](https://docs.gunicorn.org/en/stable/design.html)).
        Serving more at once takes more workers (`--workers`) or threads: with `--threads` above 1,
        Gunicorn switches to its **gthread** worker, which serves one request per thread
        ([Gunicorn settings: threads](https://docs.gunicorn.org/en/stable/settings.html#threads)).
        Connections that find every worker busy wait in the socket's listen queue (`--backlog`,
        2048 by default). Because a slow client ties up a sync worker, Gunicorn's docs expect a
        buffering proxy such as nginx in front of it.

        **Uvicorn** runs one event loop per process (using uvloop when it is installed). Every
        request is a task on that loop, so one process can hold many requests that are waiting.
        `--workers N` starts N processes, and `--limit-concurrency N` makes it answer
        HTTP 503 to anything beyond N open connections or tasks ([Uvicorn settings](https://www.uvicorn.org/settings/)).

        The two apps are short files in `servers/`: `wsgi_flask.py` and `asgi_minimal.py`. Their
        `/io?ms=N` route stands in for a database call: Flask calls `time.sleep`, the ASGI app
        awaits `asyncio.sleep`. These are the command lines the lab runs:
    '''),
    code('''
        SYNC_1 = ServerSpec("wsgi")     # Flask on one sync Gunicorn worker
        UVICORN = ServerSpec("asgi")    # the ASGI app on one Uvicorn process
        for spec in (SYNC_1, UVICORN):
            print(f"{spec.label:18} {teach.command_line(spec)}")
    '''),
    md('''
        A first look: start each server, send one request, and read the headers that the lab's
        servers add to every response - which process served it, and when its handler started and
        ended. `serve(...)` starts the server and stops it (all of its processes) when the `with`
        block ends.
    '''),
    code('''
        for spec in (SYNC_1, UVICORN):
            with serve(spec) as server:
                # trust_env=False: ignore any proxy settings - the server is on this machine
                response = httpx.get(f"{server.url}/io?ms={IO_MS}", trust_env=False)
            handler_ms = (int(response.headers["x-end-ns"]) - int(response.headers["x-start-ns"])) / 1e6
            print(f"{spec.label:18} {response.status_code} {response.text.strip()!r:18} "
                  f"served by pid {response.headers['x-worker-pid']}, handler ran {handler_ms:.1f} ms")
    '''),
    md('''
        ## 3. Predict, then measure

        `USERS` = 10 users each send `GET /io?ms=50`, back to back: a user sends the next request
        as soon as the previous answer arrives (a *closed loop*). How many requests per second
        does each server complete?

        - one **sync** Gunicorn worker;
        - one **Uvicorn** process.

        Hint: how many requests can each one work on at the same moment?
    '''),
    code('''
        my_guess_sync = None     # requests per second
        my_guess_uvicorn = None  # requests per second
    '''),
    code('''
        runs = []
        for spec in (SYNC_1, UVICORN):
            with serve(spec) as server:
                result = run_load(server.url, path=f"/io?ms={IO_MS}", concurrency=USERS,
                                  duration=DURATION_S, warmup=WARMUP_S, progress=True)
            runs.append(teach.point(spec, result))

        for guess, run in zip((my_guess_sync, my_guess_uvicorn), runs, strict=True):
            teach.check_guess(guess, run["summary"]["throughput_rps"], what=run["label"],
                              theory=run["prediction"]["throughput_rps"])
        teach.summary_table(runs)
    '''),
    md('''
        ## 4. Little's law

        Why about 20 and 200? **Little's law**: in any stable system, the average number of
        requests inside it, L, equals the throughput X times the average time each one spends
        inside, R: **L = X · R** ([Little's law](https://en.wikipedia.org/wiki/Little%27s_law)).

        In a closed loop of N users with no pause between requests, every user always has exactly
        one request in flight, so L = N. If the server can work on c requests at once (its
        *slots*) and each takes S seconds:

        - throughput **X = min(N, c) / S** - every busy slot finishes 1/S requests per second;
        - latency **R = N / X** - whatever the slots cannot take waits in a queue.

        One sync worker: c = 1, S = 0.05 s, so X = 20 req/s and R = 10 / 20 = 0.5 s: each request
        waits for the nine ahead of it. Uvicorn awaiting `asyncio.sleep` has no slot limit, so
        X = 10 / 0.05 s = 200 req/s and R = 50 ms. The lab also measures L directly (the
        time-averaged number of requests in flight), so the law checks the measurement itself:
    '''),
    code('''
        teach.littles_law_table(runs)
    '''),
    md('''
        ## 5. Timelines: watch it happen

        12 requests that each wait 100 ms, all sent at once, one bar per request: light for the
        client's view (sent → answered), dark for when the handler actually ran, one lane per
        worker thread. This is the `timelines` experiment of `make charts`, limited to its `/io`
        cases.
    '''),
    code('''
        data = measure(teach.only(REGISTRY["timelines"], route="/io"), results_dir=RESULTS_DIR, fresh=True)
        teach.timeline_figure(data)
    '''),
    md('''
        **Reading the chart.** One sync worker: a single lane, handlers strictly one after
        another - 12 × 100 ms = 1.2 s, and the last client waited for all the others. gthread
        with 4 threads: four lanes, three rounds, about 300 ms. Uvicorn: a single lane - one
        thread! - yet all twelve handlers overlap, done in about 100 ms.
    '''),
    md('''
        ## 6. Rising concurrency

        Now the full comparison, the `wsgi_vs_asgi` experiment of `make charts`: several sync
        workers, one gthread worker with many threads, and one Uvicorn process, each under a
        rising number of users (quick mode measures fewer points), with the Little's-law
        prediction dashed. The legend names each server's workers and threads.
    '''),
    code('''
        data = measure(REGISTRY["wsgi_vs_asgi"], results_dir=RESULTS_DIR, fresh=True)
        figure(data)
    '''),
    code('''
        teach.littles_law_table(data)
    '''),
    md('''
        **Reading the chart.** Each server's throughput climbs with the users until its slots are
        full - one per sync worker, one per gthread thread (the `slots c` column) - and then stays
        flat at c / S: from there every extra user only adds queueing time (right panel). Uvicorn
        has no slot limit for awaiting, so its throughput keeps rising with the users until
        something else runs out - CPU for handling HTTP, or the client (notebook 06 checks the
        client).

        And async is not "faster": with one user every server answers in the same 50 ms. What
        async buys is *concurrency while waiting*.

        What about Flask's `async def` views? Flask runs each one to completion inside the WSGI
        worker's thread, so the worker is still tied up for the whole request: async views do
        not let a WSGI worker serve more requests at once
        ([Flask: Using async and await](https://flask.palletsprojects.com/en/stable/async-await/)).
    '''),
    md('''
        ## Takeaway

        - WSGI is a blocking call: a Gunicorn **sync** worker serves **one request at a time**, and
          a WSGI server's concurrency is workers × threads.
        - ASGI is a coroutine on an event loop: one Uvicorn process can hold as many *waiting*
          requests as arrive.
        - Throughput = min(users, slots) / service time, and latency = users / throughput
          (Little's law). Beyond the slots, more users only make longer queues.
    '''),
    md('''
        ## Exercises

        1. Set `USERS = 1` in the setup cell and re-run section 3. Which server wins now, and why
           is that no contradiction?
        2. Use Little's law to predict throughput and latency for `ServerSpec("wsgi", threads=8)`
           with 16 users on `/io?ms=50`. Then measure it with `serve` and `run_load` and compare,
           using `teach.littles_law_table([teach.point(spec, result)])`.
        3. Start Uvicorn as `ServerSpec("asgi", limit_concurrency=8)` and send 16 users. Look at
           the `errors` column of `teach.summary_table`: what did Uvicorn answer, and why might you
           want that in production?
    '''),
]


# --------------------------------------------------------------------------- 03

NB03 = [
    setup('''
        # Setup - run this cell first: imports and parameters.
        %matplotlib inline
        import asyncio
        import time

        from conclab import teach
        from conclab.experiments import REGISTRY, measure, quick_mode
        from conclab.plotting import figure

        QUICK = quick_mode()                   # CONCLAB_QUICK=1: fewer points, shorter runs
        RESULTS_DIR = teach.results_dir("03")  # the experiments' per-point files (git-ignored)
        BLOCK_S = 0.25                         # how long the demo handler blocks the loop (seconds)
        SLOW_CALLBACK_S = 0.1                  # asyncio debug mode's threshold (0.1 s is its default)
    '''),
    md('''
        # 03 · Blocking the event loop

        **Question.** What happens to an async server when one handler calls `time.sleep`? How
        would you notice in production, and how do you fix it?

        ## 1. The anti-pattern

        Notebook 01 showed that a running task keeps the loop's only thread until it reaches an
        `await`. In an ASGI server every request is such a task. Our ASGI app has a route that
        makes the classic mistake on purpose - a blocking call inside `async def`
        (`servers/asgi_minimal.py`):

        ```python
        if path == "/blocking-io":
            n = ms()
            time.sleep(n / 1000)        # never awaits: the loop's only thread is stuck here
            return 200, f"blocked the loop for {n} ms\\n", None
        ```

        In real code it is rarely `time.sleep`. It is `requests.get(...)`, a synchronous database
        driver, reading a big file, hashing a password, serialising a huge JSON document:
        anything that takes a while and does not await.

        The same app has two healthy versions of that route:

        - `/io` **awaits** a non-blocking wait: `await asyncio.sleep(n / 1000)`;
        - `/offload-io` runs the blocking call **in a thread pool** and awaits the result:
          `await loop.run_in_executor(pool, ...)`.
    '''),
    md('''
        ## 2. Predict, then measure

        10 users send `GET /blocking-io?ms=50` to one Uvicorn process. Meanwhile a monitor sends
        `GET /health` 20 times a second, as a load balancer's health check would; `/health` does
        no work at all. This is the `blocking` experiment of `make charts`, which runs the two
        healthy routes beside it - here is its plan:
    '''),
    code('''
        teach.plan(REGISTRY["blocking"])
    '''),
    md('''
        - What throughput does `/blocking-io` reach?
        - What is the typical (p50) latency of `/health` meanwhile?
    '''),
    code('''
        my_guess_rps = None         # requests per second on /blocking-io
        my_guess_health_ms = None   # p50 latency of /health, in milliseconds
    '''),
    code('''
        data = measure(REGISTRY["blocking"], results_dir=RESULTS_DIR, fresh=True)
        blocking = next(p for p in data["points"] if p["series"] == "/blocking-io")
        teach.check_guess(my_guess_rps, blocking["summary"]["throughput_rps"], what="/blocking-io throughput",
                          theory=blocking["prediction"]["throughput_rps"])
        teach.check_guess(my_guess_health_ms, blocking["probe"]["latency_ms"]["p50"],
                          what="/health p50 meanwhile", unit="ms")
        figure(data)
    '''),
    code('''
        teach.probe_table(data)
    '''),
    md('''
        **Reading the chart.** `/io` and `/offload-io` reach what Little's law predicts for
        10 users who each wait 50 ms: 10 / 0.05 s = 200 req/s. `/blocking-io` is stuck at
        1 / 0.05 s = 20 req/s: one request at a time, like a sync worker. Worse than a sync worker, in fact: while the loop is blocked, this
        process cannot accept connections, read requests or answer anything - so the `/health`
        probe, which needs no work at all, waits for the blocking handlers ahead of it (right
        panel, log scale).
    '''),
    md('''
        ## 3. See it: timelines

        The Uvicorn cases of the `timelines` experiment: 12 requests of 100 ms each, sent at once.
        Light: the client's view; dark: the handler running; one lane per thread.
    '''),
    code('''
        data = measure(teach.only(REGISTRY["timelines"], where=lambda job: job.spec.kind == "asgi"),
                       results_dir=RESULTS_DIR, fresh=True)
        teach.timeline_figure(data)
    '''),
    md('''
        **Reading the chart.** `/io`: one lane (the loop's thread) and all twelve handlers overlap,
        done in about 100 ms. `/blocking-io`: the same single lane, but the handlers run one after
        another - 1.2 s in all. `/offload-io` with a pool of 4 threads: four lanes (the pool's
        threads), three rounds.
    '''),
    md('''
        ## 4. How to detect it

        ### a) asyncio debug mode

        asyncio has a debug mode, switched on by `PYTHONASYNCIODEBUG=1` in the environment, by
        `python -X dev`, or by `asyncio.run(main(), debug=True)`. Among other checks, it logs every
        callback or task step that held the loop for longer than `loop.slow_callback_duration`
        - 0.1 s by default ([Developing with asyncio: debug mode](https://docs.python.org/3/library/asyncio-dev.html#debug-mode)).
        So a blocked loop names its culprit:
    '''),
    code('''
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
    '''),
    md('''
        Only `handler_that_blocks` is reported, with how long it held the loop. Debug mode costs
        speed, so it is for development and tests, not production.

        Two things we found when trying this with a real server. First, Uvicorn on Python 3.11
        starts its loop with debug mode explicitly off, so `PYTHONASYNCIODEBUG=1` has no effect
        there (Python 3.12 and later honour it); switching it on from the app itself -
        `asyncio.get_running_loop().set_debug(True)` in the lifespan startup - works with both
        the asyncio and the uvloop loop. Second, under a server the warning names the server's
        task for the request (Uvicorn's `run_asgi`), not your function: you learn *that* a request
        blocked, and for how long; your logs or a profiler tell you which one.

        ### b) The latency of something trivial

        A health endpoint that does no work should answer in about a millisecond. If its latency
        jumps to the length of your slowest handler, the loop is blocked: that is the probe in
        section 2. Monitoring tools measure the same thing as *event loop lag*: schedule a 10 ms
        sleep and measure how late it wakes up. (The lab's load driver watches its own loop that
        way - notebook 06.)
    '''),
    md('''
        ## 5. The fixes

        1. **Await a non-blocking version** of the call: `await asyncio.sleep(...)` instead of
           `time.sleep`, an async HTTP client (`httpx.AsyncClient`, aiohttp) instead of
           `requests`, an async database driver. The best fix: waiting then costs no thread at all.
        2. **Run the blocking call in a thread pool** when no async version exists:
           `await asyncio.to_thread(func, ...)`, `await loop.run_in_executor(pool, func, ...)`, or
           AnyIO's `await anyio.to_thread.run_sync(func, ...)` (what Starlette uses). The loop stays
           free; the call occupies one pool thread. Pools are bounded - notebook 04 measures what
           happens when one is full.
        3. **CPU-heavy work**: a thread keeps the loop responsive, but threads share the GIL, so it
           adds no computing capacity. That takes processes (notebooks 04 and 05).
    '''),
    md('''
        ## 6. Why FastAPI runs plain `def` endpoints in a threadpool

        FastAPI (built on Starlette) lets you declare a path operation either way
        ([FastAPI: Concurrency and async / await](https://fastapi.tiangolo.com/async/)):

        - `async def`: called directly on the event loop. FastAPI trusts you not to block; if you
          do, you block the whole worker, exactly like `/blocking-io` above.
        - plain `def`: FastAPI cannot know whether it blocks, so it assumes it does. It runs the
          function in an external threadpool and awaits the result, like `/offload-io`. Starlette
          does this with `anyio.to_thread.run_sync`
          ([Starlette: Thread Pool](https://www.starlette.io/threadpool/)).

        That is why FastAPI's docs advise plain `def` when you are not sure: a blocking `def`
        endpoint costs one pool thread, while a blocking `async def` endpoint freezes every request
        on that worker.

        And Flask? Its `async def` views run to completion inside the WSGI worker's thread. They
        let one request await several things at once, but the worker still serves one request at
        a time ([Flask: Using async and await](https://flask.palletsprojects.com/en/stable/async-await/)).
    '''),
    md('''
        ## Takeaway

        - A blocking call inside `async def` freezes the whole event loop: every request on that
          worker - even `/health` - waits, and the server serves one request at a time.
        - Detect it with asyncio debug mode's slow-callback warnings in development and tests, and
          with the latency of a trivial endpoint (or event loop lag) in production.
        - Fix it by awaiting a non-blocking call, or by running the blocking call in a thread pool.
          FastAPI does the latter for you when an endpoint is a plain `def`.
    '''),
    md('''
        ## Exercises

        1. In section 4a, set `SLOW_CALLBACK_S = 0.01` and make `handler_that_blocks` sleep 0.02 s.
           Is it caught now? What threshold would you pick for a test suite, and why not 0?
        2. The ASGI app also has `/cpu?ms=N` (CPU work on the loop) and `/offload-cpu?ms=N` (the
           same work in its pool). Predict the throughput of each with 4 users and `ms=20`, then
           measure both with `serve(ServerSpec("asgi"))` and `run_load`. Explain the result with
           notebook 04.
        3. `asyncio.to_thread` uses the loop's default executor. How many threads does it have on
           this machine (see the `concurrent.futures.ThreadPoolExecutor` docs)? What happens to
           the calls beyond that number?
    '''),
]


# --------------------------------------------------------------------------- 04

NB04 = [
    setup('''
        # Setup - run this cell first: imports and parameters.
        %matplotlib inline
        import asyncio
        import os
        import time

        import anyio.to_thread

        from conclab import teach
        from conclab.driver import run_load
        from conclab.experiments import REGISTRY, measure, quick_mode
        from conclab.launcher import ServerSpec, serve
        from conclab.plotting import figure

        QUICK = quick_mode()                    # CONCLAB_QUICK=1: fewer points, shorter runs
        RESULTS_DIR = teach.results_dir("04")   # the experiments' per-point files (git-ignored)
        CALL_S = 0.1                            # each blocking call in the AnyIO demo (seconds)
        CALL_COUNTS = [10, 40, 41, 80, 100]     # how many calls start at once
        POOL = 4                                # the ASGI server's offload pool in section 4
        USERS = 16                              # users in section 4
        DURATION_S = 1.5 if QUICK else 3.0      # seconds measured in section 4
    '''),
    md('''
        # 04 · Threadpools and the GIL

        **Question.** Threads let a sync server - or an async server's offload pool - do many
        things at once. When does adding threads help, when does it stop helping, and what happens
        when a pool runs out?

        ## 1. Threads and the GIL

        A thread is a line of execution that the operating system schedules; the threads of a
        process share its memory. CPython has a **global interpreter lock (GIL)**: within one
        process, only one thread at a time executes Python bytecode
        ([Python glossary: GIL](https://docs.python.org/3/glossary.html#term-global-interpreter-lock)).
        Two things follow:

        - **Waiting releases the GIL.** `time.sleep`, socket reads and most blocking I/O let go of
          the GIL while they wait, so many threads can wait at once. For I/O, threads scale.
        - **Computing holds it.** Pure-Python CPU work needs the GIL the whole time, so threads
          take turns: the running thread is asked to hand over every few milliseconds. Two threads
          computing finish no sooner than one thread doing both jobs. For CPU work, threads do
          not scale - processes do.

        CPython 3.13 added an optional *free-threaded* build without the GIL
        ([PEP 703](https://peps.python.org/pep-0703/)). This lab uses the standard build:
    '''),
    code('''
        print(teach.gil_status())
    '''),
    md('''
        ## 2. Where the thread pools are

        - **Gunicorn gthread** (`--threads N`): each worker process runs N threads, and each thread
          serves one request at a time. Slots = workers × threads.
        - **An async app's offload pool**: blocking calls run in a pool while the loop stays free
          (notebook 03). `asyncio.to_thread` uses the loop's default `ThreadPoolExecutor`.
          Starlette and FastAPI use **AnyIO**'s `anyio.to_thread.run_sync`, whose default
          *limiter* lets **40** threads run at once. Starlette sends plain `def` endpoints, sync
          background tasks and file handling (`FileResponse`, `UploadFile`) through it, and
          FastAPI adds its sync dependencies - all sharing the same 40 tokens
          ([Starlette: Thread Pool](https://www.starlette.io/threadpool/),
          [AnyIO: Working with threads](https://anyio.readthedocs.io/en/stable/threads.html)).

        Ask AnyIO itself. The limiter belongs to the running event loop, so we ask from inside a
        coroutine:
    '''),
    code('''
        async def default_tokens():
            return anyio.to_thread.current_default_thread_limiter().total_tokens

        await default_tokens()
    '''),
    md('''
        ## 3. Predict, then measure: a full pool

        We start `n` blocking calls of 0.1 s at the same moment through `anyio.to_thread.run_sync`,
        for n = 10, 40, 41, 80 and 100. How long does each batch take?
    '''),
    code('''
        my_guess_41 = None   # seconds for 41 calls at once
        my_guess_100 = None  # seconds for 100 calls at once
    '''),
    code('''
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
    '''),
    md('''
        A full pool does not fail: call 41 simply **waits for a token**, silently. In a Starlette
        or FastAPI app, that means when 40 slow `def` endpoints are running, *all* other sync work
        of that worker - another `def` endpoint, a sync health check, a `FileResponse` - queues
        behind them, while the event loop itself sits idle. You can raise the limit at startup
        (`anyio.to_thread.current_default_thread_limiter().total_tokens = 100`), at some cost in
        memory and thread switching - or, better, make the slow calls async.
    '''),
    md('''
        ## 4. Predict, then measure: a small pool on a server

        Our ASGI app's `/offload-io` route uses a pool whose size the lab sets:
        `ServerSpec("asgi", threadpool=4)`. `USERS` = 16 users send `/offload-io?ms=100`.
        What throughput, and what mean latency?
    '''),
    code('''
        my_guess_rps = None         # requests per second
        my_guess_latency_ms = None  # mean latency in milliseconds
    '''),
    code('''
        spec = ServerSpec("asgi", threadpool=POOL)
        with serve(spec) as server:
            result = run_load(server.url, path="/offload-io?ms=100", concurrency=USERS,
                              duration=DURATION_S, warmup=0.5, progress=True)
        run = teach.point(spec, result)
        teach.check_guess(my_guess_rps, run["summary"]["throughput_rps"], theory=run["prediction"]["throughput_rps"])
        teach.check_guess(my_guess_latency_ms, run["summary"]["latency_ms"]["mean"], what="mean latency", unit="ms",
                          theory=run["prediction"]["latency_ms"])
        teach.littles_law_table([run])
    '''),
    md('''
        The pool size is the slot count c of Little's law: X = min(16, 4) / 0.1 s = 40 req/s, and
        each request spends R = 16 / 40 req/s = 0.4 s in the server - 0.1 s in a thread and 0.3 s
        queued for one.

        ## 5. Threads on I/O: they scale

        The `threadpool` experiment of `make charts`: a fixed number of users whose requests each
        wait S milliseconds, against one Gunicorn gthread worker with k threads and against
        Uvicorn with an offload pool of k threads:
    '''),
    code('''
        teach.plan(REGISTRY["threadpool"])
    '''),
    code('''
        data = measure(REGISTRY["threadpool"], results_dir=RESULTS_DIR, fresh=True)
        figure(data)
    '''),
    md('''
        **Reading the chart.** Both grow in step with the threads - k threads, k slots,
        X = min(users, k) / S - until the pool covers all the users. For waiting, a thread is a fine slot:
        it costs some memory (notebook 05) but no CPU while it waits.

        ## 6. Threads on CPU work: the GIL caps them

        **Predict.** `/cpu?ms=40` burns 40 ms of pure-Python CPU time per request. The `gil`
        experiment sends two users per thread (or per process):

        - one gthread worker with **2 threads** - throughput?
        - **2 sync worker processes** - throughput?
    '''),
    code('''
        teach.plan(REGISTRY["gil"])
    '''),
    code('''
        print(f"usable cores on this machine: {len(os.sched_getaffinity(0))} (the load driver needs some CPU too)")
        my_guess_2_threads = None     # requests per second
        my_guess_2_processes = None   # requests per second
    '''),
    code('''
        data = measure(REGISTRY["gil"], results_dir=RESULTS_DIR, fresh=True)
        two = {p["series"]: p for p in data["points"] if p["x"] == 2}
        threads, processes = two["threads (gthread, 1 worker)"], two["processes (sync workers)"]
        teach.check_guess(my_guess_2_threads, threads["summary"]["throughput_rps"], what="2 threads",
                          theory=threads["prediction"]["throughput_rps"])
        teach.check_guess(my_guess_2_processes, processes["summary"]["throughput_rps"], what="2 processes",
                          theory=processes["prediction"]["throughput_rps"])
        figure(data)
    '''),
    md('''
        **Reading the chart.** Threads stay flat at one core's worth - 1 / 40 ms = 25 req/s - however
        many there are: they take turns holding the GIL. Processes each have their own
        interpreter and their own GIL, so they compute on separate cores, up to the number of
        cores. (The load driver runs on these cores too, so on a small or busy machine the
        processes fall short of the dashed theory - the footer says how many cores there were.)

        The same holds for an async app's pool: `/offload-cpu` keeps the loop free to answer
        `/health`, but it adds no computing capacity.
    '''),
    md('''
        ## Takeaway

        - For **waiting** (I/O), threads scale: k threads serve k requests at once. The pool size is
          the slot count in Little's law.
        - For **computing** in pure Python, the threads of one process share one GIL: more threads
          add no throughput. More processes do, up to the number of cores.
        - AnyIO's default thread limiter - used by Starlette and FastAPI for `def` endpoints, sync
          background tasks and file handling - has **40** tokens. When all are taken, more sync
          work queues silently.
    '''),
    md('''
        ## Exercises

        1. In section 3, add `anyio.to_thread.current_default_thread_limiter().total_tokens = 100`
           as the first line of `blocking_calls` and re-run. What changes for 100 calls - and what
           would the same change cost a real server?
        2. With Little's law, work out how many gthread threads one worker needs for 200 req/s of
           `/io?ms=100`. Check it with `serve(ServerSpec("wsgi", threads=...))` and `run_load`.
        3. Measure `/offload-cpu?ms=20` on `ServerSpec("asgi", threadpool=4)` with 8 users.
           Predict first: does a pool of 4 threads add throughput over `/cpu?ms=20`?
    '''),
]


# --------------------------------------------------------------------------- 05

NB05 = [
    setup('''
        # Setup - run this cell first: imports and parameters.
        %matplotlib inline
        import collections
        import os

        import httpx

        from conclab import teach
        from conclab.driver import run_load
        from conclab.experiments import REGISTRY, measure, quick_mode
        from conclab.launcher import ServerSpec, serve
        from conclab.plotting import figure

        QUICK = quick_mode()                         # CONCLAB_QUICK=1: fewer points, shorter runs
        RESULTS_DIR = teach.results_dir("05")        # the experiments' per-point files (git-ignored)
        CORES = len(os.sched_getaffinity(0))         # cores this notebook may run on
        STATE_REQUESTS = 40                          # requests to /state in section 2
        MEMORY_WORKERS = [1, 4] if QUICK else [1, 2, 4, 8]   # worker counts for the memory check
        MEMORY_SWEEP = not QUICK                     # the memory sweep holds requests 3 s per point
    '''),
    md('''
        # 05 · Worker processes

        **Question.** Gunicorn and Uvicorn both take `--workers N` and start more processes. What
        does each extra worker give you, what does it cost, and how many should you run?

        ## 1. What a worker is

        Both servers can run several **worker processes** behind one listening socket:

        - **Gunicorn**: the master process forks N workers (`--workers N`). They all accept
          connections from the same socket, and the operating system decides which worker gets
          each one. The master only supervises: it restarts workers that die, and kills a worker
          that stays silent for longer than `--timeout` (30 s by default) - the "WORKER TIMEOUT"
          you may meet in logs ([Gunicorn: Design](https://docs.gunicorn.org/en/stable/design.html),
          [settings](https://docs.gunicorn.org/en/stable/settings.html#timeout)). That timeout is a
          watchdog, not a request deadline: a sync worker stuck in one slow handler (try
          `ServerSpec("wsgi", timeout=2)` and `/io?ms=4000`) is killed and replaced, and the
          client gets a 500 from Gunicorn itself - one slow request costs a whole worker restart.
        - **Uvicorn**: `--workers N` (by default the `WEB_CONCURRENCY` environment variable, or 1)
          starts N worker processes that share the socket
          ([Uvicorn settings](https://www.uvicorn.org/settings/)).

        Each worker is a separate Python process, so each has

        - its **own memory**: module-level variables, caches, connection pools - nothing is shared;
        - its **own event loop** (Uvicorn) and its **own thread pool** - 40 AnyIO tokens *per
          worker*, in a Starlette app;
        - its **own GIL**: workers compute in parallel, on different cores.
    '''),
    md('''
        ## 2. Isolated memory: the `/state` counter

        Both apps have a route `/state` that adds one to a module-level counter and answers
        `{"pid": ..., "count": ...}`.

        **Predict.** We start **2 sync Gunicorn workers** and send 40 requests, one after another.
        What is the highest `count` any answer shows?
    '''),
    code('''
        my_guess_max_count = None
    '''),
    code('''
        spec = ServerSpec("wsgi", workers=2)
        with serve(spec) as server:
            with httpx.Client(trust_env=False) as client:   # trust_env=False: no proxies, this is loopback
                answers = [client.get(f"{server.url}/state").json() for _ in range(STATE_REQUESTS)]

        per_worker = collections.defaultdict(list)
        for answer in answers:
            per_worker[answer["pid"]].append(answer["count"])
        for pid, counts in per_worker.items():
            print(f"worker pid {pid}: served {len(counts):2} requests, its counter reached {max(counts)}")
        teach.check_guess(my_guess_max_count, max(a["count"] for a in answers), what="highest count", unit="")
    '''),
    md('''
        Each worker counted only the requests it served. A counter, a cache or a dict of logged-in
        users kept in a module global is **per process**: with N workers there are N of them, and
        a user's next request may land on another one. State that must be shared belongs outside
        the workers - a database, Redis, a file with locking.

        **Which worker gets a request?** The operating system hands out *connections*, not
        requests. Gunicorn's sync workers close the connection after every response (they ignore
        keep-alive), so every request above was a new connection. A client that keeps its
        connection open - browsers do, and so does our load driver - sends all of that
        connection's requests to the same worker. Here are 4 keep-alive users against 2 Uvicorn
        workers:
    '''),
    code('''
        spec = ServerSpec("asgi", workers=2)
        with serve(spec) as server:
            print(f"worker pids: {server.worker_pids}")
            result = run_load(server.url, path="/io?ms=10", concurrency=4, requests=200, progress=True)
        served = collections.Counter(result.columns()["worker_pid"].tolist())
        for pid, n in served.items():
            print(f"worker pid {pid}: {n} requests")
    '''),
    md('''
        Anything from an even split to "all on one worker" can happen: it depends on which worker
        happened to accept each of the 4 connections. Balancing across workers is only as fine as
        the connections are.

        ## 3. Spreading CPU work across cores

        **Predict.** 8 users send `/cpu?ms=40` (40 ms of pure-Python CPU work) to Gunicorn sync
        workers. What throughput with 1 worker, and with 2?
    '''),
    code('''
        print(f"usable cores: {CORES} (the load driver needs some CPU too)")
        my_guess_1_worker = None    # requests per second
        my_guess_2_workers = None   # requests per second
    '''),
    md('''
        The `workers` experiment of `make charts` measures this - and, beside it, the same
        workers on I/O:
    '''),
    code('''
        teach.plan(REGISTRY["workers"])
    '''),
    code('''
        data = measure(REGISTRY["workers"], results_dir=RESULTS_DIR, fresh=True)
        cpu = {p["x"]: p for p in data["points"] if p["series"].startswith("CPU")}
        teach.check_guess(my_guess_1_worker, cpu[1]["summary"]["throughput_rps"], what="1 worker",
                          theory=cpu[1]["prediction"]["throughput_rps"])
        teach.check_guess(my_guess_2_workers, cpu[2]["summary"]["throughput_rps"], what="2 workers",
                          theory=cpu[2]["prediction"]["throughput_rps"])
        figure(data)
    '''),
    md('''
        **Reading the chart.** CPU work scales with workers only up to the number of cores - fewer,
        if the load driver or other programs keep some of them busy; past that, the workers take
        turns on the same cores. I/O work (each sync worker waits)
        scales with workers up to the number of users, because a waiting process needs no core.

        ## 4. What a worker costs: memory

        Each worker is a whole Python interpreter with your app loaded. The lab reports memory as
        **PSS** (proportional set size): a page shared by several processes - such as the code a
        forked worker shares with its master - is split between them, so N workers are not
        charged N times for what they share.
    '''),
    code('''
        rows = []
        for n in MEMORY_WORKERS:
            for kind in ("wsgi", "asgi"):
                spec = ServerSpec(kind, workers=n)
                with serve(spec) as server:
                    rows.append([spec.label, n, server.rss_bytes() / 2**20])
        teach.Table(["server", "workers", "memory of all its processes (MiB, PSS)"], rows)
    '''),
    md('''
        Each worker adds tens of MiB before it serves a single request. (Uvicorn *spawns* fresh
        interpreters for its workers rather than forking, so they share less with their parent.)
        For comparison, the `memory` experiment holds N slow requests in flight and measures the
        extra memory per request for processes, threads and coroutines. It holds every point for
        3 s, so quick mode skips it:
    '''),
    code('''
        if MEMORY_SWEEP:
            data = measure(REGISTRY["memory"], results_dir=RESULTS_DIR, fresh=True)
            display(figure(data))
        else:
            print("Quick mode: memory sweep skipped. Set MEMORY_SWEEP = True in the setup cell to run it (about a minute).")
    '''),
    md('''
        ## 5. How many workers? The (2 × cores) + 1 rule

        Gunicorn's docs suggest **(2 × cores) + 1** workers as a place to *start*, then tuning
        under real load; the reasoning is that, per core, one worker can be reading or writing the
        socket while another processes a request. The same section warns against scaling workers
        to the number of clients you expect: a handful of workers should handle hundreds or
        thousands of requests per second, and too many will thrash the machine
        ([Gunicorn: How many workers?](https://docs.gunicorn.org/en/stable/design.html#how-many-workers)).
    '''),
    code('''
        print(f"os.cpu_count():               {os.cpu_count()}  (cores in the machine)")
        print(f"len(os.sched_getaffinity(0)): {CORES}  (cores this process may run on)")
        print(f"(2 x {CORES}) + 1 = {2 * CORES + 1} workers as a starting point")
    '''),
    md('''
        It is a starting point, and it is wrong whenever its assumption - short requests that keep
        a CPU or the network busy - is wrong:

        - **Long waits in sync workers.** A sync worker waiting 500 ms for another service is a
          slot doing nothing. By Little's law, 100 req/s × 0.5 s needs 50 slots, not 5 workers.
          Rather than 50 processes, use threads (gthread) or an async server - notebook 02.
        - **Pure CPU work.** More workers than cores add memory and context switches, not
          throughput (section 3).
        - **Async workers.** One Uvicorn worker serves many requests at once; about one worker per
          core is the usual start.
        - **Containers and shared machines.** `os.cpu_count()` counts the machine's cores, and
          neither number above knows about a container's CPU quota: a container limited to 2 CPUs
          on a 64-core host would start 129 workers. Count the cores you actually get.
        - **Memory.** Workers × memory per worker must fit, with room to spare (section 4).
    '''),
    md('''
        ## Takeaway

        - A worker process has its own memory, event loop, thread pool and GIL: workers add CPU
          parallelism and isolation.
        - State in module globals exists once per worker. The OS balances connections, not
          requests.
        - Every worker costs tens of MiB. (2 × cores) + 1 is a starting point for sync workers with
          short requests; size for real by measuring, and with Little's law when requests wait.
    '''),
    md('''
        ## Exercises

        1. Re-run the `/state` experiment of section 2 with `ServerSpec("asgi", workers=2)`. Why
           may all 40 answers come from one pid? Then send each request on a new connection
           (`httpx.get(...)` instead of `client.get(...)`) and compare.
        2. With Little's law, how many sync workers does 100 req/s of `/io?ms=50` need? Check it
           with `serve(ServerSpec("wsgi", workers=...))` and `run_load`, then compare the memory
           with one gthread worker that has as many threads.
        3. Run this notebook outside quick mode (without `CONCLAB_QUICK` in the environment) so that
           the `workers` sweep measures more worker counts. Where does CPU throughput stop
           growing? Does it match `CORES` - and why might it stop a little early?
    '''),
]


# --------------------------------------------------------------------------- 06

NB06 = [
    setup('''
        # Setup - run this cell first: imports and parameters.
        %matplotlib inline
        from conclab import teach
        from conclab.experiments import REGISTRY, measure, quick_mode
        from conclab.launcher import client_cpu, server_cpus
        from conclab.plotting import figure

        QUICK = quick_mode()                          # CONCLAB_QUICK=1: fewer points, shorter runs
        RESULTS_DIR = teach.results_dir("06")         # the experiments' per-point files (git-ignored)
        PAGE_REQUESTS = 20                            # requests one page load makes (section 3)
    '''),
    md('''
        # 06 · Measuring honestly

        **Question.** Every chart in this lab is a measurement. How can a measurement lie - and how
        does the lab make sure it does not?

        ## 1. Closed loop vs open loop

        - A **closed-loop** client has N users; each sends a request, waits for the answer, then
          sends the next. wrk, hey, ab and the lab's `run_load(concurrency=N)` work this way. The
          server sets the pace: when it slows down, the client slows down with it.
        - An **open-loop** client sends requests at a fixed rate (`run_load(rate=R)`) whether or
          not the earlier ones have been answered - like real users, who do not wait for each
          other. When the server is slower than the arrivals, a queue builds up.

        ## 2. Coordinated omission

        Imagine the server freezes for one second. A closed-loop user with a request in flight
        waits that second and records *one* slow request. But in that second it would have sent
        many more requests; it sent none, so they are never measured. The client *coordinated*
        with the server and *omitted* exactly the bad samples: the percentiles look fine while
        real users would have queued.

        wrk2 avoids this by sending at a constant rate and measuring each latency from when the
        request *should* have been sent, not from when it actually left
        ([wrk2](https://github.com/giltene/wrk2)); oha does the same with `--latency-correction` in
        its rate mode ([oha](https://github.com/hatoo/oha)). The lab's driver does it in open-loop
        mode: latency counts from the intended start.

        ### Predict, then measure

        One sync Gunicorn worker on `/io?ms=50` can serve 20 req/s. The `open_vs_closed`
        experiment runs a closed loop of 4 users, an open loop below capacity (15 req/s) and one
        above it (25 req/s), for a few seconds each:
    '''),
    code('''
        teach.plan(REGISTRY["open_vs_closed"])
    '''),
    md('''
        What is the **p99 latency** of the closed loop, and of the open loop above capacity?
    '''),
    code('''
        my_guess_closed_p99_ms = None    # milliseconds
        my_guess_open_overload_p99_ms = None   # milliseconds
    '''),
    code('''
        data = measure(REGISTRY["open_vs_closed"], results_dir=RESULTS_DIR, fresh=True)
        closed = next(p for p in data["points"] if p["load"]["concurrency"])
        overload = max((p for p in data["points"] if p["load"]["rate"]), key=lambda p: p["load"]["rate"])
        teach.check_guess(my_guess_closed_p99_ms, closed["summary"]["latency_ms"]["p99"],
                          what=f"{closed['series']}: p99", unit="ms")
        teach.check_guess(my_guess_open_overload_p99_ms, overload["summary"]["latency_ms"]["p99"],
                          what=f"{overload['series']}: p99", unit="ms")
        figure(data)
    '''),
    md('''
        **Reading the chart.** The closed loop sits at a steady 200 ms (4 users, one slot:
        R = N / X = 4 / 20 req/s) and *looks* healthy, because the client slowed down to the
        server's pace. The open loop at 15 req/s is fine, about 50 ms. At 25 req/s five more
        requests arrive every second than leave, so the queue - and the latency - grows for as
        long as the overload lasts; its p99 is set by how long we chose to run, not by the server.

        The dotted lines measure from the moment each request actually left the client. Here they
        match the solid ones because the driver kept to its schedule; a client that falls behind
        (a saturated one) would send late, and only the solid, corrected lines would stay honest.

        ## 3. Percentiles, not averages
    '''),
    code('''
        teach.latency_table(data)
    '''),
    md('''
        The mean mixes the fast majority with the slow few and describes neither. Percentiles say
        what users get: p50 is the typical request, p99 the slowest one in a hundred, and the max
        is the worst one seen. (Report how many requests a percentile is based on: the p99 of 50
        requests is simply their slowest.) Users meet the tail more often than "1 %" suggests:
    '''),
    code('''
        share = 1 - 0.99 ** PAGE_REQUESTS
        print(f"A page that makes {PAGE_REQUESTS} requests waits for at least one request slower than p99 "
              f"in {share:.0%} of page loads.")
    '''),
    md('''
        ## 4. Measure the measurer

        A load generator is a program with limits of its own. When it runs out of CPU it sends
        late and timestamps late, and its numbers then describe the *client*. Locust warns when
        its CPU use passes 90 % ([locust runners.py](https://github.com/locustio/locust/blob/master/locust/runners.py));
        k6's maintainers name a saturated load generator as the most likely cause of inflated
        waiting times ([grafana/k6#6101](https://github.com/grafana/k6/issues/6101)). As a
        yardstick, Locust's docs give, in the best case, roughly 4,000 requests per second per core
        for its standard `HttpUser` and about 16,000 for `FastHttpUser` (a 2021 M1 laptop,
        Python 3.11)
        ([Locust: Increase performance](https://docs.locust.io/en/stable/increase-performance.html)).

        The lab's driver uses httpx's API but sends through the aiohttp transport, because httpx's
        default async transport spends so much CPU per request that it falls apart under
        concurrency ([encode/httpx#3215](https://github.com/encode/httpx/issues/3215)). The driver
        runs its own event loop on its own core, watches its CPU use and how late its loop wakes
        up, and flags `client_saturated` rather than print a quietly wrong number.

        ### Predict, then measure

        The `client_ceiling` experiment sends the same load to one Uvicorn process through two
        clients: the lab's (httpx with the aiohttp transport) and httpx with its default
        transport. On `/io?ms=100`, Little's law says the server can serve N users at N / 0.1 s -
        1,000 req/s for 100 users. What throughput will the client with **httpx's default
        transport** report, at the most users in the plan?
    '''),
    code('''
        teach.plan(REGISTRY["client_ceiling"])
    '''),
    code('''
        my_guess_httpx_default = None   # requests per second
    '''),
    code('''
        data = measure(REGISTRY["client_ceiling"], results_dir=RESULTS_DIR, fresh=True)
        naive = max((p for p in data["points"] if p["tags"]["transport"] == "httpx" and p["load"]["path"].startswith("/io")),
                    key=lambda p: p["x"])
        teach.check_guess(my_guess_httpx_default, naive["summary"]["throughput_rps"],
                          what=f"httpx default transport, {naive['x']} users", theory=naive["prediction"]["throughput_rps"])
        figure(data)
    '''),
    code('''
        teach.summary_table(data)
    '''),
    md('''
        **Reading the chart and the table.** Same server, same load; only the client differs. With
        httpx's default transport the *client* cannot keep up under concurrency, and a naive benchmark would conclude that the server manages a
        fraction of what it can. Watch the client CPU column: a client near 100 % of its core is
        measuring itself.

        ## 5. Client and server on one laptop

        Running both on one machine is convenient - and honest only with care:

        - **They compete for CPU.** The lab pins the driver to one core and the servers to the
          others:
    '''),
    code('''
        print(f"load driver pinned to core {client_cpu()}; servers run on cores {list(server_cpus())}")
    '''),
    md('''
        - **Loopback is not a network**: no latency, no bandwidth limit, no lost packets. These
          charts show the servers' concurrency models, not what a user across the internet sees.
        - **The machine is not still.** Turbo boost, thermal throttling, a browser tab, a file
          indexer: repeat a run and look at the spread before you trust a difference of 10 %.
        - **State the setup.** Every chart of the lab carries a footer with the cores, the Python
          version, the date, where the driver ran and whether it was quick mode.

        Public benchmarks show how much the method decides the answer. Cal Paterson found that sync
        Gunicorn workers beat the async servers on latency for a Postgres-backed app
        ([Async Python is not faster](https://calpaterson.com/async-python-is-not-faster.html)).
        Miguel Grinberg fixed problems in that benchmark, re-ran it and got another ranking -
        greenlet-based servers ahead, coroutine-based ones close behind - and called his write-up
        [Ignore All Web Performance Benchmarks, Including This One](https://blog.miguelgrinberg.com/post/ignore-all-web-performance-benchmarks-including-this-one).
        TechEmpower's benchmarks run client, server and database on separate machines
        ([TechEmpower](https://www.techempower.com/benchmarks/)). Whatever you measure, say what the
        workload is (waiting or computing), how much headroom the client had, and on what machine.

        ## 6. A last check: Little's law

        The lab checks every run twice: L measured directly (the time-averaged number of requests in
        flight) against X · R from throughput and mean latency. Little's law holds for any stable
        system measured over a window much longer than one request, so when the two columns
        disagree, the run broke a condition and its averages should not be trusted, however good
        the chart looks. The usual culprit: a saturated client whose requests took about as long
        as the measured window itself.
    '''),
    code('''
        teach.littles_law_table(data)
    '''),
    md('''
        ## Takeaway

        - A closed-loop client slows down with the server and hides its queue (coordinated
          omission). To see what users would see, send at a fixed rate and measure from the
          intended send time.
        - Report percentiles (p50, p99, max) and how many requests they rest on - not the mean.
        - Measure the measurer: watch the client's CPU, compare with an independent tool (the
          `client_ceiling` chart adds wrk when it is installed), and state the machine.
    '''),
    md('''
        ## Exercises

        1. Run an open loop at 15 req/s with `arrivals="poisson"` against `serve(ServerSpec("wsgi"))`
           on `/io?ms=50` for 8 s (`run_load(server.url, path=..., rate=15, arrivals="poisson",
           duration=8)`). The average rate is below capacity - so why is p99 higher than with
           constant arrivals?
        2. Find the driver's own ceiling on this machine: `/hello` on `ServerSpec("asgi")` with 10,
           50 and 100 users. Where does `client_saturated` appear? (`make calibrate` does this too.)
        3. A closed loop of 4 users reports p99 = 200 ms for a server that freezes for 1 s once a
           minute. Roughly what would an open loop at 20 req/s report for the requests around the
           freeze - and which number would you show your users?
    '''),
]


NOTEBOOKS = {
    "01-sync-vs-async": NB01,
    "02-wsgi-vs-asgi": NB02,
    "03-blocking-the-event-loop": NB03,
    "04-threadpools-and-the-gil": NB04,
    "05-workers": NB05,
    "06-measuring-honestly": NB06,
}


def build(cells) -> nbformat.NotebookNode:
    """A notebook from (kind, source, tags) cells, with stable cell ids and no outputs."""
    nb = new_notebook(metadata={
        "kernelspec": {"name": "python3", "display_name": "Python 3 (ipykernel)", "language": "python"},
        "language_info": {"name": "python"},
    })
    for i, (kind, source, tags) in enumerate(cells):
        metadata = {"tags": list(tags)} if tags else {}
        make = new_code_cell if kind == "code" else new_markdown_cell
        nb.cells.append(make(source=source, id=f"cell-{i:02d}", metadata=metadata))
    nbformat.validate(nb)
    return nb


def render(cells) -> str:
    return nbformat.writes(build(cells)) + "\n"


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="only check that the notebooks match this file")
    args = parser.parse_args(argv)
    stale = []
    for name, cells in NOTEBOOKS.items():
        path = HERE / f"{name}.ipynb"
        text = render(cells)
        current = path.read_text(encoding="utf-8") if path.exists() else None
        if current == text:
            continue
        if args.check:
            stale.append(path.name)
        else:
            path.write_text(text, encoding="utf-8")
            print(f"wrote {path.relative_to(HERE.parent)}")
    if stale:
        print(f"out of date: {', '.join(stale)} - run `python notebooks/_build.py`", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
