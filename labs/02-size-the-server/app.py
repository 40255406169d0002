"""Lab 02 - the service you are sizing. Read it; do not change it: the grader
runs the repository's own copy.

Every GET /order does what many web requests do: it waits for a database, then
computes a little. Run it with YOUR gunicorn.conf.py, from the root of the
Concurrency Lab repository (README.md, step 5):

    make try LAB=02 SUBMISSION=path/to/your/02-size-the-server
    curl http://127.0.0.1:8000/order
"""

import os
import threading
import time

from flask import Flask

IO_MS = 300  # waiting for "the database": the thread sleeps, the GIL is free
CPU_MS = 5  # building the answer: pure-Python work, the GIL is held

app = Flask(__name__)


def burn_cpu(ms):
    """Compute until this thread has used `ms` of CPU time (not wall time):
    the same work whether or not other threads are waiting for the GIL."""
    deadline = time.thread_time() + ms / 1000
    x = 0
    while time.thread_time() < deadline:
        for i in range(500):
            x += i * i
    return x


@app.get("/order")
def order():
    time.sleep(IO_MS / 1000)  # a sync worker's thread can do nothing else meanwhile
    burn_cpu(CPU_MS)  # threads of one process take turns here (the GIL)
    return "order ok\n"


@app.after_request
def who_served(response):
    # The load driver counts these: how many workers and threads really served.
    response.headers["X-Worker-Pid"] = str(os.getpid())
    response.headers["X-Thread"] = str(threading.get_native_id())
    return response


@app.get("/health")
def health():
    return "ok\n"
