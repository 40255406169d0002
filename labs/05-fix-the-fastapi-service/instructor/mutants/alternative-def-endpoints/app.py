"""Not a mutant: a correct answer written differently from the solution. The
blocking routes become plain `def` endpoints (FastAPI runs them in its
threadpool, sync httpx client and all), the key derivation goes to a process
pool, and /health is `async def`. The grader must pass it: a grader that fails
correct code is as bad as one that passes broken code."""

import asyncio
import hashlib
import os
from concurrent.futures import ProcessPoolExecutor
from contextlib import asynccontextmanager
from typing import Annotated

import backends
import httpx
from fastapi import FastAPI, Query

RATES_URL = os.environ.get("RATES_URL", "http://127.0.0.1:8001/rates")
SALT = b"conclab-lab-05"

http = httpx.Client(timeout=10)  # used from pool threads: httpx.Client is thread-safe
processes = None


@asynccontextmanager
async def lifespan(app: FastAPI):
    global processes
    processes = ProcessPoolExecutor(max_workers=2)
    yield
    processes.shutdown()
    http.close()


app = FastAPI(lifespan=lifespan)
Ms = Annotated[int, Query(ge=0, le=10_000)]


@app.get("/health")
async def health():
    return {"status": "ok"}


@app.get("/reports/{report_id}")
def report(report_id: int, ms: Ms = 300):
    return {"id": report_id, "rows": backends.query(report_id, ms)}


@app.get("/rates")
def rates():
    response = http.get(RATES_URL)
    response.raise_for_status()
    return {"source": "rates-service", "rates": response.json()}


def derive_key(user: str, rounds: int) -> str:
    return hashlib.pbkdf2_hmac("sha256", user.encode(), SALT, rounds).hex()


@app.get("/api-key")
async def api_key(user: str, rounds: Annotated[int, Query(ge=1, le=10_000_000)] = 100_000):
    loop = asyncio.get_running_loop()
    return {"user": user, "key": await loop.run_in_executor(processes, derive_key, user, rounds)}


@app.get("/reports/{report_id}/pdf")
def report_pdf(report_id: int, ms: Ms = 1000):
    return backends.render_pdf(report_id, ms)
