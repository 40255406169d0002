"""What the labs' grader-side servers share, so a lab folder holds only its own logic.

A grader runs the student's app.py behind a **shim** (``grader/shim.py``) that
adds what the grader must see however app.py is written, and starts **helper
services** beside it (``grader/upstream.py``: a slow service the app calls).
Those files run inside Gunicorn or Uvicorn, as ``shim:app`` or
``upstream:app``, and import this module:

    student = load_student_app()          # app.py of $LAB_SUBMISSION, importable as `app`
    app = stamped(student.app)            # ASGI: x-grader-start-ns / x-grader-end-ns on answers
    app = slow_service("/data", token)    # a helper: /data after $DELAY_MS, /health, 404

and a grader test measures with :func:`timed_get` and :func:`burst`.
"""

from __future__ import annotations

import asyncio
import importlib.util
import os
import sys
import time
from pathlib import Path
from types import ModuleType

DEFAULT_DELAY_MS = 1000


def load_module(name: str, path: str | Path) -> ModuleType:
    """Import the file ``path`` as module ``name`` (registered in sys.modules)."""
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


def load_student_app(folder: str | Path | None = None) -> ModuleType:
    """The student's app.py (folder: $LAB_SUBMISSION), imported as ``app``; the
    folder goes on sys.path so app.py may import its own helper modules."""
    folder = Path(folder or os.environ["LAB_SUBMISSION"])
    sys.path.insert(0, str(folder))
    return load_module("app", folder / "app.py")


def stamped(student_app, before=None):
    """Wrap an ASGI app: every HTTP answer carries when the server started and
    finished it (time.monotonic_ns, one clock for every process on Linux). The
    stamps come from the shim, not from app.py, so the grader sees the overlap
    of requests however the app is written; a blocked loop delays the start
    stamp too - a request the loop cannot look at has not started.
    ``before(scope, send)``: a grader route answered instead, when it returns True."""

    async def app(scope, receive, send):
        if scope["type"] != "http":
            return await student_app(scope, receive, send)
        if before is not None and await before(scope, send):
            return None
        start = time.monotonic_ns()

        async def stamped_send(message):
            if message["type"] == "http.response.start":
                stamps = [
                    (b"x-grader-start-ns", str(start).encode()),
                    (b"x-grader-end-ns", str(time.monotonic_ns()).encode()),
                ]
                message = dict(message, headers=[*message.get("headers", []), *stamps])
            await send(message)

        return await student_app(scope, receive, stamped_send)

    return app


async def lifespan(receive, send) -> None:
    """Answer ASGI lifespan messages until shutdown (a helper service has nothing to set up)."""
    while True:
        message = await receive()
        await send({"type": message["type"] + ".complete"})
        if message["type"] == "lifespan.shutdown":
            return


async def respond(send, status: int, body: str, content_type: bytes = b"text/plain") -> None:
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [(b"content-type", content_type)],
        }
    )
    await send({"type": "http.response.body", "body": body.encode()})


def slow_service(path: str, body: str, content_type: bytes = b"text/plain"):
    """An ASGI helper service: ``path`` answers ``body`` after $DELAY_MS (awaited:
    it serves many callers at once), /health at once, anything else 404."""
    delay = int(os.environ.get("DELAY_MS", DEFAULT_DELAY_MS)) / 1000

    async def app(scope, receive, send):
        if scope["type"] == "lifespan":
            return await lifespan(receive, send)
        if scope["type"] != "http":
            return None
        if scope["path"] == path:
            await asyncio.sleep(delay)
            return await respond(send, 200, body, content_type)
        if scope["path"] == "/health":
            return await respond(send, 200, "ok")
        return await respond(send, 404, "not found")

    return app


async def timed_get(client, url: str, json_body: bool = False) -> dict:
    """GET url: when it was sent and received here, its status and body (decoded
    JSON, with ``json_body``, when it parses), and the shim's start/end stamps (or
    the client's times without them)."""
    sent = time.monotonic_ns()
    response = await client.get(url)
    body = response.text.strip()
    if json_body:
        try:
            body = response.json()
        except ValueError:
            pass
    headers = response.headers
    return {
        "sent": sent,
        "received": time.monotonic_ns(),
        "status": response.status_code,
        "body": body,
        "start": int(headers.get("x-grader-start-ns", sent)),
        "end": int(headers.get("x-grader-end-ns", time.monotonic_ns())),
    }


async def burst(
    client,
    base: str,
    paths: list[str],
    probes: int = 3,
    after: float = 0.25,
    json_body: bool = False,
):
    """Send ``paths`` all at once; ``after`` s later, while they run, probe /health
    ``probes`` times, one after another. Returns (answers, probes)."""
    tasks = [asyncio.create_task(timed_get(client, base + path, json_body)) for path in paths]
    await asyncio.sleep(after)
    probed = [await timed_get(client, base + "/health", json_body) for _ in range(probes)]
    return await asyncio.gather(*tasks), probed


def pbkdf2_rounds_for(seconds: float, salt: bytes) -> int:
    """PBKDF2 rounds that take about ``seconds`` of
    CPU here: machines differ, the check does not."""
    import hashlib

    def cpu_time(rounds):
        start = time.thread_time()
        hashlib.pbkdf2_hmac("sha256", b"calibrate", salt, rounds)
        return max(time.thread_time() - start, 1e-6)

    probe = 20_000
    best = min(cpu_time(probe) for _ in range(3))
    return max(probe, int(probe * seconds / best))
