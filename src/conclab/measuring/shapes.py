"""The driver's two load shapes (see driver.py), each a coroutine on the driver's loop
that decides *when* a :class:`~conclab.measuring.loadrun.Run` sends each request.

* closed loop - users that each send the next request when the answer arrives;
* open loop - arrivals on a schedule, answered or not: latency counts from the
  scheduled time, so a slow server cannot hide its queue.
"""

from __future__ import annotations

import asyncio
import random
import time


async def closed_user(run, deadline):
    """One user of a closed loop: the next request as soon as the answer arrives."""
    while run.take_ticket():
        now = time.monotonic_ns()
        if deadline and now >= deadline:
            return
        await run.one(now)


async def open_arrivals(run, t0, deadline):
    """An open loop: requests sent on a schedule (constant or Poisson), answered or not."""
    rng = random.Random(run.load.seed)
    rate = run.load.rate
    next_ns = t0
    arrivals, offset_s = 0, 0.0
    tasks = set()
    while run.take_ticket():
        if deadline and next_ns >= deadline:
            break
        delay = (next_ns - time.monotonic_ns()) / 1e9
        if delay > 0.0005:  # when behind schedule, send at once: never skip an arrival
            await asyncio.sleep(delay)
            if run.stop.is_set():
                break
        task = asyncio.create_task(run.one(next_ns))
        tasks.add(task)
        task.add_done_callback(tasks.discard)
        # The schedule is computed from t0, not by adding rounded gaps: those
        # would drift early and fit one arrival too many into the duration.
        arrivals += 1
        if run.load.arrivals == "poisson":
            offset_s += rng.expovariate(rate)
        else:
            offset_s = arrivals / rate
        next_ns = t0 + round(offset_s * 1e9)
    if tasks:
        await asyncio.wait(tasks, timeout=run.load.timeout + 1)
