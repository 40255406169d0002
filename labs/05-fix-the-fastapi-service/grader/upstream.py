"""The rates service that /rates calls: every /rates request takes DELAY_MS and
answers JSON holding UPSTREAM_TOKEN, so the grader knows the answer came from here."""

import asyncio
import json
import os

DELAY_MS = int(os.environ.get("DELAY_MS", "1000"))
TOKEN = os.environ.get("UPSTREAM_TOKEN", "upstream-data")
RATES = {"EUR": 1.0, "USD": 1.08, "GBP": 0.85, "token": TOKEN}


async def app(scope, receive, send):
    if scope["type"] == "lifespan":
        while True:
            message = await receive()
            await send({"type": message["type"] + ".complete"})
            if message["type"] == "lifespan.shutdown":
                return
    if scope["type"] != "http":
        return
    if scope["path"] == "/rates":
        await asyncio.sleep(DELAY_MS / 1000)  # async: serves many callers at once
        status, body, kind = 200, json.dumps(RATES), b"application/json"
    elif scope["path"] == "/health":
        status, body, kind = 200, "ok", b"text/plain"
    else:
        status, body, kind = 404, "not found", b"text/plain"
    await send({"type": "http.response.start", "status": status, "headers": [(b"content-type", kind)]})
    await send({"type": "http.response.body", "body": body.encode()})
