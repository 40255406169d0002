"""Lab 05 - fix the FastAPI service. This is the file you hand in.

A small reports service, written the way FastAPI services often are. Try THIS
copy by hand, from the root of the Concurrency Lab repository (README.md, step 1):

    make try LAB=05 SUBMISSION=path/to/this/folder
    curl -s 'http://127.0.0.1:8000/reports/7?ms=3000' & sleep 0.5
    time curl -s http://127.0.0.1:8000/health; wait

FastAPI runs an `async def` endpoint on the event loop - one thread that every
request shares - and sends a plain `def` endpoint to AnyIO's threadpool, whose
40 tokens every plain `def` endpoint shares. Four routes below fall into a
classic trap of those two rules. Fix them without changing what any route
answers. backends.py stands for libraries you cannot change.
"""

import hashlib
import os
from contextlib import asynccontextmanager
from typing import Annotated

import backends  # the libraries this service calls: read it, do not change it
import httpx
from fastapi import FastAPI, Query
### BEGIN SOLUTION
from fastapi.concurrency import run_in_threadpool
### END SOLUTION

# The exchange-rates service /rates calls. The grader starts its own and sets RATES_URL.
RATES_URL = os.environ.get("RATES_URL", "http://127.0.0.1:8001/rates")
SALT = b"conclab-lab-05"

### BEGIN STARTER
# # One HTTP client for the whole app, so requests reuse its connections.
# http = httpx.Client(timeout=10)
### END STARTER
### BEGIN SOLUTION
# One AsyncClient for the whole app, so requests reuse its connections. It
# belongs to the event loop, so it is opened when the app starts (in lifespan).
http: httpx.AsyncClient | None = None
### END SOLUTION


@asynccontextmanager
async def lifespan(app: FastAPI):
    """Runs once: the code before `yield` at startup, the code after it at shutdown."""
    ### BEGIN SOLUTION
    global http
    http = httpx.AsyncClient(timeout=10)
    ### END SOLUTION
    yield
    ### BEGIN SOLUTION
    await http.aclose()
    ### END SOLUTION
    ### BEGIN STARTER
    # http.close()
    ### END STARTER


app = FastAPI(lifespan=lifespan)
Ms = Annotated[int, Query(ge=0, le=10_000)]  # how long the database or renderer takes


@app.get("/health")
### BEGIN SOLUTION
async def health():
    # Nothing here waits, so it belongs on the loop. As a plain def it would
    # need a token from the same 40 that the slow PDF renders hold.
    """For the load balancer: is this instance alive and able to answer?"""
    return {"status": "ok"}
### END SOLUTION
### BEGIN STARTER
# def health():
#     """For the load balancer: is this instance alive and able to answer?"""
#     return {"status": "ok"}
### END STARTER


@app.get("/reports/{report_id}")
async def report(report_id: int, ms: Ms = 300):
    """A report's rows, from the database."""
    ### BEGIN SOLUTION
    rows = await backends.query_async(report_id, ms)  # the loop serves others meanwhile
    ### END SOLUTION
    ### BEGIN STARTER
    # rows = backends.query(report_id, ms)
    ### END STARTER
    return {"id": report_id, "rows": rows}


@app.get("/rates")
async def rates():
    """Today's exchange rates, passed on from the rates service."""
    ### BEGIN SOLUTION
    response = await http.get(RATES_URL)  # awaited: no thread waits for the network
    ### END SOLUTION
    ### BEGIN STARTER
    # response = http.get(RATES_URL)
    ### END STARTER
    response.raise_for_status()
    return {"source": "rates-service", "rates": response.json()}


def derive_key(user: str, rounds: int) -> str:
    """PBKDF2, a deliberately slow key derivation: pure CPU work."""
    return hashlib.pbkdf2_hmac("sha256", user.encode(), SALT, rounds).hex()


@app.get("/api-key")
async def api_key(user: str, rounds: Annotated[int, Query(ge=1, le=10_000_000)] = 100_000):
    """The user's API key, derived from their name and the server's salt."""
    ### BEGIN SOLUTION
    # CPU work cannot be awaited: a pool thread does it. hashlib releases the
    # GIL while it hashes, so the loop's thread keeps serving meanwhile.
    key = await run_in_threadpool(derive_key, user, rounds)
    ### END SOLUTION
    ### BEGIN STARTER
    # key = derive_key(user, rounds)
    ### END STARTER
    return {"user": user, "key": key}


@app.get("/reports/{report_id}/pdf")
def report_pdf(report_id: int, ms: Ms = 1000):
    """The report as a PDF, from the vendor's SDK (blocking only)."""
    return backends.render_pdf(report_id, ms)
