"""The slow service that /fetch calls: every /data request takes DELAY_MS and
answers with UPSTREAM_TOKEN, so the grader knows the answer came from here."""

import asyncio
import os

DELAY_MS = int(os.environ.get("DELAY_MS", "1000"))
TOKEN = os.environ.get("UPSTREAM_TOKEN", "upstream-data")


async def app(scope, receive, send):
    if scope["type"] == "lifespan":
        while True:
            message = await receive()
            await send({"type": message["type"] + ".complete"})
            if message["type"] == "lifespan.shutdown":
                return
    if scope["type"] != "http":
        return
    if scope["path"] == "/data":
        await asyncio.sleep(DELAY_MS / 1000)  # async: serves many callers at once
        status, body = 200, TOKEN
    elif scope["path"] == "/health":
        status, body = 200, "ok"
    else:
        status, body = 404, "not found"
    await send({"type": "http.response.start", "status": status, "headers": [(b"content-type", b"text/plain")]})
    await send({"type": "http.response.body", "body": body.encode()})
