"""Mutant: three routes fixed, but /health stays a plain `def` and the pool is
raised to 400 tokens the documented way. A bigger pool moves the point where
it runs dry; /health still shares it with the renders. Only
health_answers_meanwhile[pdf] may fail."""

import hashlib
import os
from contextlib import asynccontextmanager
from typing import Annotated

import anyio.to_thread
import backends
import httpx
from fastapi import FastAPI, Query
from fastapi.concurrency import run_in_threadpool

RATES_URL = os.environ.get("RATES_URL", "http://127.0.0.1:8001/rates")
SALT = b"conclab-lab-05"
http: httpx.AsyncClient | None = None


@asynccontextmanager
async def lifespan(app: FastAPI):
    global http
    anyio.to_thread.current_default_thread_limiter().total_tokens = 400
    http = httpx.AsyncClient(timeout=10)
    yield
    await http.aclose()


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
    response = await http.get(RATES_URL)
    response.raise_for_status()
    return {"source": "rates-service", "rates": response.json()}


def derive_key(user: str, rounds: int) -> str:
    return hashlib.pbkdf2_hmac("sha256", user.encode(), SALT, rounds).hex()


@app.get("/api-key")
async def api_key(user: str, rounds: Annotated[int, Query(ge=1, le=10_000_000)] = 100_000):
    return {"user": user, "key": await run_in_threadpool(derive_key, user, rounds)}


@app.get("/reports/{report_id}/pdf")
def report_pdf(report_id: int, ms: Ms = 1000):
    return backends.render_pdf(report_id, ms)
