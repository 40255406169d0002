"""A Flask app served by Gunicorn: the WSGI half of the lab.

Run it yourself:
    gunicorn --chdir servers --bind 127.0.0.1:8000 wsgi_flask:app                 # 1 sync worker
    gunicorn --chdir servers --bind 127.0.0.1:8000 --threads 8 wsgi_flask:app     # gthread
    gunicorn --chdir servers --bind 127.0.0.1:8000 --workers 4 wsgi_flask:app     # 4 processes

WSGI is a *synchronous* interface: the server calls app(environ, start_response)
and the calling thread is busy until the function returns. So a Gunicorn
"sync" worker - one process, one thread - serves exactly one request at a time.
More at once needs more threads (--threads, the gthread worker) or more
processes (--workers). Every handler below is plain `def`.
"""

import itertools
import os
import threading
import time

from flask import Flask, g, jsonify, request
from workload import BadRequest, burn_cpu, interpreter_report, parse_ms

app = Flask(__name__)

# Module globals live in *one* process. With --workers 4 there are four copies
# of this counter, one per worker, and each counts only its own requests.
# next() on itertools.count is atomic under the GIL, so threads cannot lose
# an increment the way `count += 1` (read, add, write) can.
_counter = itertools.count(1)


@app.before_request
def _stamp_start():
    g.start_ns = time.monotonic_ns()


@app.after_request
def _stamp_headers(response):
    # monotonic_ns is one system-wide clock on Linux: the load driver can put
    # these server-side times on the same timeline as its own.
    response.headers["X-Worker-Pid"] = str(os.getpid())
    response.headers["X-Thread"] = str(threading.get_native_id())
    response.headers["X-Start-Ns"] = str(g.get("start_ns", time.monotonic_ns()))
    response.headers["X-End-Ns"] = str(time.monotonic_ns())
    return response


@app.errorhandler(BadRequest)
def _bad_request(err):
    return f"{err}\n", 400, {"Content-Type": "text/plain"}


@app.errorhandler(404)
def _not_found(err):
    # Plain text like the ASGI app. /offload-io and friends exist only there:
    # a WSGI handler cannot await, so there is no event loop to offload from.
    # A pasted URL may hold newlines or terminal escapes (%0a, %1b): show those
    # escaped, so the reason stays one line and cannot colour a terminal.
    path = request.path if request.path.isprintable() else repr(request.path)
    return f"not found: {path}\n", 404, {"Content-Type": "text/plain"}


def _ms():
    return parse_ms(request.args.getlist("ms"))


@app.get("/health")
def health():
    return "ok\n"


@app.get("/interpreter")
def interpreter():
    # Which Python serves, and is its GIL on right now (see workload.py).
    return jsonify(interpreter_report())


@app.get("/hello")
def hello():
    # The smallest response: what is left is the cost of Flask and Gunicorn.
    return "hello\n"


@app.get("/io")
def io():
    # Waiting for "a database". time.sleep releases the GIL but keeps this
    # thread busy: a sync worker can do nothing else meanwhile. In gthread,
    # the other threads of the worker keep serving.
    ms = _ms()
    time.sleep(ms / 1000)
    return f"slept {ms} ms\n"


@app.get("/cpu")
def cpu():
    # Pure-Python work holds the GIL: threads of one worker take turns,
    # only more worker *processes* use more cores.
    ms = _ms()
    burn_cpu(ms)
    return f"computed {ms} ms\n"


@app.get("/state")
def state():
    return jsonify(pid=os.getpid(), count=next(_counter))
