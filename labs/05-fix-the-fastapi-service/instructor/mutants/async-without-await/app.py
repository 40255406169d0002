"""Mutant: each blocking call is wrapped in an `async def` helper and awaited,
so the code is full of `await` - yet nothing in the helpers ever waits without
blocking: each call still runs on the loop's thread, and holds it. /health is
fixed. The overlap and /health checks of /reports, /rates and /api-key must fail."""

import hashlib
import os
from contextlib import asynccontextmanager
from typing import Annotated

import backends
import httpx
from fastapi import FastAPI, Query

RATES_URL = os.environ.get("RATES_URL", "http://127.0.0.1:8001/rates")
SALT = b"conclab-lab-05"
http = httpx.Client(timeout=10)


@asynccontextmanager
async def lifespan(app: FastAPI):
    yield
    http.close()


app = FastAPI(lifespan=lifespan)
Ms = Annotated[int, Query(ge=0, le=10_000)]


@app.get("/health")
async def health():
    return {"status": "ok"}


async def query(report_id, ms):
    return backends.query(report_id, ms)  # "async" now - but nothing in it awaits


@app.get("/reports/{report_id}")
async def report(report_id: int, ms: Ms = 300):
    return {"id": report_id, "rows": await query(report_id, ms)}


async def get(url):
    return http.get(url)  # the same blocking call, in an async costume


@app.get("/rates")
async def rates():
    response = await get(RATES_URL)
    response.raise_for_status()
    return {"source": "rates-service", "rates": response.json()}


async def derive_key(user: str, rounds: int) -> str:
    return hashlib.pbkdf2_hmac("sha256", user.encode(), SALT, rounds).hex()


@app.get("/api-key")
async def api_key(user: str, rounds: Annotated[int, Query(ge=1, le=10_000_000)] = 100_000):
    return {"user": user, "key": await derive_key(user, rounds)}


@app.get("/reports/{report_id}/pdf")
def report_pdf(report_id: int, ms: Ms = 1000):
    return backends.render_pdf(report_id, ms)
