"""Not a mutant: a correct answer written differently from the solution
(run_in_executor, a client per request, a dict of routes by prefix). The
grader must pass it: a grader that fails correct code is as bad as one that
passes broken code."""

import asyncio
import functools
import hashlib
import os
from urllib.parse import parse_qs

import httpx

UPSTREAM_URL = os.environ.get("UPSTREAM_URL", "http://127.0.0.1:8001/data")


def pbkdf2(text, rounds):
    return hashlib.pbkdf2_hmac("sha256", text.encode(), b"conclab-lab-01", rounds).hex()


async def answer(path, query):
    if path == "/health":
        return "ok"
    if path == "/sleep":
        await asyncio.sleep(int(query["ms"][0]) / 1000)
        return "slept"
    if path == "/fetch":
        async with httpx.AsyncClient() as client:
            return (await client.get(UPSTREAM_URL, timeout=10)).text
    if path == "/hash":
        work = functools.partial(pbkdf2, query["text"][0], int(query["rounds"][0]))
        return await asyncio.get_running_loop().run_in_executor(None, work)
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
