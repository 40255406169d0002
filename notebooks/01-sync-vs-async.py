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
import time

from conclab.base.paths import quick_mode
from conclab.teaching import teach

QUICK = quick_mode()  # CONCLAB_QUICK=1 selects quick mode; this notebook is quick either way
N_TASKS = 10          # how many coroutines run together
NAP_S = 0.1           # how long each one waits (seconds)
BLOCK_S = 0.3         # how long the badly behaved one blocks the thread (seconds)
TICK_S = 0.01         # section 6: how often a task on the loop ticks while a thread runs CPU work


# %% [markdown]
# # 01 · Sync vs async: what does `await` actually do?
#
# **Question.** A web server spends most of its time waiting: for a database, for another
# service, for the network. How can *one* thread wait for many things at once - and what
# breaks that?
#
# No server yet: this notebook is about Python itself. By the end you can explain
#
# - what `async def` creates, and when its code actually runs;
# - what the event loop does (it is a scheduler);
# - why ten waits can take the time of one - and how a single `time.sleep` ruins it for everyone.

# %% [markdown]
# ## 1. Ordinary code runs line by line
#
# A normal function call runs to its end before the next line starts. If the function
# waits - `time.sleep`, a blocking database driver, `requests.get` - the whole thread waits
# with it and does nothing else.

# %%
def make_tea(cup, seconds):
    time.sleep(seconds)      # the thread waits here and can do nothing else
    return f"cup {cup} ready"

start = time.perf_counter()
print([make_tea(cup, NAP_S) for cup in range(3)])
print(f"3 cups took {time.perf_counter() - start:.2f} s: one after another")


# %% [markdown]
# ## 2. Coroutines: functions that can pause
#
# `async def` defines a **coroutine function**. Calling it does *not* run its body: it
# returns a **coroutine object**, a computation that has not started yet. The body runs only
# when something drives it - when another coroutine `await`s it, or when it is handed to
# the event loop as a **task** (`asyncio.create_task`, `asyncio.gather`).
#
# Inside a coroutine, `await` marks the points where it may pause: *"I am waiting for this;
# run something else and wake me up when it is done."*

# %%
async def brew(cup, seconds):
    await asyncio.sleep(seconds)   # pause here: the event loop is free meanwhile
    return f"cup {cup} ready"

coro = brew(0, NAP_S)
print(coro)        # a coroutine object: nothing has run yet
coro.close()       # we never run this one (closing it avoids a "never awaited" warning)

# %% [markdown]
# In a script you start an event loop with `asyncio.run(main())`. A Jupyter kernel already
# runs an event loop, so in a notebook you can write `await` directly in a cell:

# %%
await brew(0, NAP_S)

# %% [markdown]
# ## 3. The event loop is a scheduler
#
# The event loop runs on **one thread** and keeps a queue of tasks that are ready to run. It
# takes one and runs it **until that task reaches an `await` on something that is not ready
# yet** - a timer, a socket with no data. Then the task is parked, the loop notes what it
# waits for, and it runs the next ready task. When the timer fires or the data arrives, the
# parked task is ready again and resumes right after its `await`.
#
# Two consequences:
#
# - Many tasks can be *waiting* at once, on one thread. A waiting coroutine costs a little
#   memory, not a thread.
# - Only one task *runs* at any moment, and nothing interrupts it: it keeps the thread
#   until it reaches an `await`. This is **cooperative** multitasking - every task must
#   cooperate by awaiting.
#
# Python docs: [Coroutines and Tasks](https://docs.python.org/3/library/asyncio-task.html),
# [the event loop](https://docs.python.org/3/library/asyncio-eventloop.html).

# %% [markdown]
# ## 4. Predict, then measure: ten naps
#
# We run `N_TASKS` = 10 coroutines that each `await asyncio.sleep(0.1)`, in two ways: <!-- claim: 10 = cell -->
#
# - **one after another**: a `for` loop that awaits each nap before starting the next;
# - **together**: `await asyncio.gather(...)` of all ten, which makes them tasks that the
#   loop runs concurrently.
#
# How long does each way take in total? Write your guesses (in seconds) before you run the
# measurement.

# %%
my_guess_one_after_another = None  # seconds, e.g. 0.5
my_guess_together = None           # seconds


# %%
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

# %%
teach.task_timeline({
    "one after another (for loop + await)": one_after_another,
    "together (asyncio.gather)": together,
})

# %% [markdown]
# **Reading the chart.** Each bar is one task, from its start to its end. At the top, each
# task starts when the previous one ends, so the waits add up. At the bottom, all ten start
# at once and all ten wait *at the same time* - on one thread. The loop itself needed almost
# no time: it set ten timers and woke each task when its timer fired.
#
# That is the whole trick of an async server: a request waiting for its database is a paused
# coroutine, and one thread can hold thousands of them.

# %% [markdown]
# ## 5. One blocking call stalls everyone
#
# `await` is a promise to cooperate, and `time.sleep` breaks it: it is an ordinary blocking
# call, so the thread - the *only* thread of the loop - sleeps, and no other task can run
# until it returns, not even those whose timers have long fired.
#
# **Predict.** We gather ten naps again, but task 5 first calls `time.sleep(0.3)`
# (`BLOCK_S`) and only then naps. Tasks 0-4 start before it.
#
# - When does **task 0** (an innocent 0.1 s nap) finish? <!-- claim: 0.1 = cell -->
# - When is **everything** done?

# %%
my_guess_task0_done = None   # seconds after the start
my_guess_all_done = None     # seconds after the start


# %%
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

teach.check_guess(my_guess_task0_done, task0_done_s, what="task 0 done after", unit="s",
                  theory=BLOCK_S)
teach.check_guess(my_guess_all_done, all_done_s, what="everything done after", unit="s",
                  theory=BLOCK_S + NAP_S)


# %% [markdown]
# The fix, when a blocking call cannot be avoided: run it in a worker thread and *await* the
# result. `asyncio.to_thread` does exactly that. `time.sleep` lets go of the GIL while it
# waits (section 6 shows why that matters), so the loop stays free while the call runs.

# %%
async def offloaded_nap(name, log):
    start = time.perf_counter()
    await asyncio.to_thread(time.sleep, BLOCK_S)   # the blocking call runs in another thread
    await asyncio.sleep(NAP_S)
    log.append((name, start, time.perf_counter()))

offloaded = []
await asyncio.gather(*(offloaded_nap(f"task {i}", offloaded) if i == 5
                       else nap(f"task {i}", offloaded)
                       for i in range(N_TASKS)))

teach.task_timeline({
    "task 5 calls time.sleep: everyone waits": blocked,
    "task 5 runs it with asyncio.to_thread: only task 5 waits": offloaded,
})

# %% [markdown]
# **Reading the chart.** At the top, the dark red bar is the 0.3 s during which task 5 held <!-- claim: 0.3 = cell -->
# the thread. Tasks 0-4 had finished waiting after 0.1 s but could not resume until the <!-- claim: 0.1 = cell -->
# thread was free, so their bars stretch to 0.3 s; tasks 6-9 could not even *start*. In a <!-- claim: 0.3 = cell -->
# server each task is a request, and "everyone" includes the health check of your load
# balancer - notebook 03 measures that.
#
# At the bottom, the blocking call runs in another thread; the loop keeps switching, and
# only task 5 itself takes longer.

# %% [markdown]
# ## 6. CPU work in a thread: does the loop stay free?
#
# `time.sleep` *waits*. CPU work *computes*, and in CPython a thread needs the **GIL** (global
# interpreter lock) to run Python code: only one thread of a process holds it at a time
# (notebook 04). A thread running Python bytecode is asked to hand the GIL over every
# `sys.getswitchinterval()` - 5 ms by default - so the loop's thread gets its turns. A single <!-- claim: 5 = pkg:python.switch_interval_ms -->
# long call into C code keeps the GIL until it returns *unless* that C code lets go of it
# ([Python docs: `sys.setswitchinterval`](https://docs.python.org/3/library/sys.html#sys.setswitchinterval),
# [the GIL](https://docs.python.org/3/glossary.html#term-global-interpreter-lock)).
#
# Three kinds of CPU work, each sized to about `BLOCK_S` of computing, each run with
# `asyncio.to_thread`:
#
# - **pure Python**: a `for` loop that adds numbers, bytecode by bytecode;
# - **one C call that holds the GIL**: built-in `sum(range(n))` - a single call that returns
#   only when the sum is done;
# - **a C call that releases the GIL**: `hashlib.sha256` on a large buffer - hashlib lets go
#   of the GIL while it hashes more than 2047 bytes at once
#   ([hashlib docs](https://docs.python.org/3/library/hashlib.html#hash-algorithms)).
#   <!-- claim: 2047 = pkg:python.hashlib_gil_maxkeep -->
#
# Meanwhile a task on the loop tries to tick every 10 ms (`TICK_S`). The longest gap between <!-- claim: 10 = cell -->
# two ticks is how long the loop was stalled. **Predict** it for each kind: about 10 ms (the
# loop stays free), or about `BLOCK_S` (the loop stalls for the whole call)?

# %%
def calibrated(work, size):
    """How big `work`'s argument must be for the call to take about BLOCK_S on this machine."""
    start = time.perf_counter()
    work(size)
    return int(size * BLOCK_S / (time.perf_counter() - start))

def pure_python(deadline_s):
    """Python bytecode for `deadline_s` of thread CPU time; the GIL changes hands every 5 ms."""
    deadline, total = time.thread_time() + deadline_s, 0
    while time.thread_time() < deadline:
        for i in range(1000):
            total += i
    return total

def c_sum(n):
    return sum(range(n))                     # one C call: holds the GIL until it returns

BUFFER = bytes(16 * 2**20)                   # 16 MiB of zeros to hash

def c_hash(times):
    for _ in range(times):
        hashlib.sha256(BUFFER).digest()      # C code that releases the GIL while it hashes

SUM_N = calibrated(c_sum, 3_000_000)
HASH_TIMES = max(1, calibrated(c_hash, 2))

async def longest_stall(work, arg):
    """Run work(arg) in a thread; return (seconds it took, longest gap between the loop's ticks)."""
    ticks, done = [], asyncio.Event()

    async def ticker():
        while not done.is_set():
            ticks.append(time.perf_counter())
            await asyncio.sleep(TICK_S)

    ticking = asyncio.create_task(ticker())
    await asyncio.sleep(2 * TICK_S)                 # let it tick before the work starts
    start = time.perf_counter()
    await asyncio.to_thread(work, arg)
    took = time.perf_counter() - start
    done.set()
    await ticking
    return took, max(b - a for a, b in zip(ticks, ticks[1:], strict=False))

rows = []
for name, work, arg in [("pure Python loop", pure_python, BLOCK_S),
                        (f"sum(range({SUM_N:,}))", c_sum, SUM_N),
                        (f"hashlib.sha256 of 16 MiB, {HASH_TIMES} times", c_hash, HASH_TIMES)]:
    took, stall = await longest_stall(work, arg)
    verdict = ("frozen for the whole call" if stall > took / 2
               else "free: ticked on time, give or take")
    rows.append([name, took * 1000, stall * 1000, verdict])
teach.Table(["work in asyncio.to_thread", "took (ms)", "longest stall of the loop (ms)",
             "the loop was"], rows,
            f"the loop tries to tick every {TICK_S * 1000:.0f} ms")

# %% [markdown]
# **Reading the table.** With pure Python in the thread, the loop's longest stall is a few
# ticks at most - a tick plus a switch interval, plus whatever else this shared machine was
# doing - far below the call's length: the GIL changes hands every 5 ms. The <!-- claim: 5 = pkg:python.switch_interval_ms -->
# `sum(range(...))` call froze the loop for about as long as it ran, thread or not: it never
# let go of the GIL. hashlib released it, so the loop ticked on time. So `asyncio.to_thread`
# frees the loop from *waiting* and from *pure-Python* work, but not from a long C call that
# holds the GIL - and in no case does the work itself finish sooner: one process's threads
# compute one at a time (notebook 04 measures that, and how long a server's `/health`
# waits meanwhile).

# %% [markdown]
# ## Takeaway
#
# - `async def` makes a coroutine. Its code runs only when it is awaited or scheduled as a
#   task, and it can pause at each `await`.
# - The event loop is a scheduler on **one** thread: while one task waits, others run. Ten
#   waits of 0.1 s take 0.1 s, not 1 s. <!-- claim: 0.1 = cell --> <!-- claim: 1 = calc:10 * 0.1 -->
# - Nothing interrupts a running task. A blocking call (`time.sleep`, a sync database
#   driver, heavy CPU work) inside `async def` stalls **every** task on that loop. Await a
#   non-blocking version instead (`asyncio.sleep`, an async driver), or run the blocking
#   call in a thread (`asyncio.to_thread`).
# - A thread frees the loop only while the call lets go of the GIL - waiting, pure Python
#   (every 5 ms), hashlib - not during one long C call such as `sum(range(n))` (section 6). <!-- claim: 5 = pkg:python.switch_interval_ms -->

# %% [markdown]
# ## Exercises
#
# 1. Set `N_TASKS = 1000` in the setup cell and re-run section 4. How long does `gather`
#    take now? What does that tell you about the cost of a waiting coroutine?
# 2. In `bad_nap`, replace `time.sleep(BLOCK_S)` with pure-Python CPU work,
#    `pure_python(BLOCK_S)` from section 6. Does it stall the other tasks too? Then run it
#    with `await asyncio.to_thread(pure_python, BLOCK_S)`: the other tasks are free again -
#    but does the CPU work itself get done any sooner? (Notebook 04 explains why not.) Try
#    `c_sum(SUM_N)` the same way: which tasks are late now, and why?
# 3. Predict what `print(asyncio.run(brew(1, 0.1)))` prints in a plain Python script, and
#    why the same line raises an error inside this notebook. Then try both.
