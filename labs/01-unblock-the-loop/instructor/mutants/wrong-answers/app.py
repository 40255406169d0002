"""Mutant: never blocks the loop, but each route answers wrongly - /sleep
waits too little, /fetch changes the upstream's answer, /hash uses another
salt. Only the "still does its job" checks may fail."""

import asyncio
import hashlib
import os
from urllib.parse import parse_qs

import httpx

UPSTREAM_URL = os.environ.get("UPSTREAM_URL", "http://127.0.0.1:8001/data")


async def answer(path, query):
    if path == "/health":
        return "ok"
    if path == "/sleep":
        await asyncio.sleep(0.8 * int(query["ms"][0]) / 1000)
        return "slept"
    if path == "/fetch":
        async with httpx.AsyncClient() as client:
            return (await client.get(UPSTREAM_URL, timeout=10)).text + "!"
    if path == "/hash":
        text, rounds = query["text"][0].encode(), int(query["rounds"][0])
        return await asyncio.to_thread(
            lambda: hashlib.pbkdf2_hmac("sha256", text, b"salt", rounds).hex()
        )
    return None


async def app(scope, receive, send):
    if scope["type"] == "lifespan":
        while (await receive())["type"] != "lifespan.shutdown":
            await send({"type": "lifespan.startup.complete"})
        await send({"type": "lifespan.shutdown.complete"})
        return
    body = await answer(scope["path"], parse_qs(scope["query_string"].decode()))
    status = 404 if body is None else 200
    await send({"type": "http.response.start", "status": status, "headers": []})
    await send({"type": "http.response.body", "body": (body or "not found").encode()})
