"""Not a mutant: a correct answer written differently from the solution.
/health stays a plain `def`; instead the PDF renders get a CapacityLimiter of
their own (8 tokens), so they can never take the default pool's tokens that
/health needs. /reports awaits the asyncio driver, /rates opens an
AsyncClient per request, /api-key is a plain `def` (FastAPI's threadpool)."""

import hashlib
import os
from contextlib import asynccontextmanager
from typing import Annotated

import anyio
import anyio.to_thread
import backends
import httpx
from fastapi import FastAPI, Query

RATES_URL = os.environ.get("RATES_URL", "http://127.0.0.1:8001/rates")
SALT = b"conclab-lab-05"
renders: anyio.CapacityLimiter | None = None


@asynccontextmanager
async def lifespan(app: FastAPI):
    global renders
    renders = anyio.CapacityLimiter(8)  # created on the loop that uses it
    yield


app = FastAPI(lifespan=lifespan)
Ms = Annotated[int, Query(ge=0, le=10_000)]


@app.get("/health")
def health():
    return {"status": "ok"}


@app.get("/reports/{report_id}")
async def report(report_id: int, ms: Ms = 300):
    return {"id": report_id, "rows": await backends.query_async(report_id, ms)}


@app.get("/rates")
async def rates():
    async with httpx.AsyncClient(timeout=10) as client:
        response = await client.get(RATES_URL)
    response.raise_for_status()
    return {"source": "rates-service", "rates": response.json()}


@app.get("/api-key")
def api_key(user: str, rounds: Annotated[int, Query(ge=1, le=10_000_000)] = 100_000):
    key = hashlib.pbkdf2_hmac("sha256", user.encode(), SALT, rounds).hex()
    return {"user": user, "key": key}


@app.get("/reports/{report_id}/pdf")
async def report_pdf(report_id: int, ms: Ms = 1000):
    return await anyio.to_thread.run_sync(backends.render_pdf, report_id, ms, limiter=renders)
