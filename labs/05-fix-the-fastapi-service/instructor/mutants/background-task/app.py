"""Mutant: three routes fixed; the PDF route "stops being slow" by answering
202 at once and rendering in a BackgroundTask. The answer changes, and /health
(still a plain `def`) is no better off: Starlette runs sync background tasks
in the same AnyIO threadpool. answers_unchanged[pdf] and
health_answers_meanwhile[pdf] must fail."""

import hashlib
import os
from contextlib import asynccontextmanager
from typing import Annotated

import backends
import httpx
from fastapi import BackgroundTasks, FastAPI, Query
from fastapi.concurrency import run_in_threadpool

RATES_URL = os.environ.get("RATES_URL", "http://127.0.0.1:8001/rates")
SALT = b"conclab-lab-05"
http: httpx.AsyncClient | None = None


@asynccontextmanager
async def lifespan(app: FastAPI):
    global http
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


@app.get("/reports/{report_id}/pdf", status_code=202)
def report_pdf(report_id: int, tasks: BackgroundTasks, ms: Ms = 1000):
    tasks.add_task(backends.render_pdf, report_id, ms)
    return {"id": report_id, "status": "queued"}
