"""Lab 01 - unblock the loop. This is the file you hand in.

A raw ASGI app (no framework) for Uvicorn. Try THIS copy by hand, from the
root of the Concurrency Lab repository (README.md, step 1):

    make try LAB=01 SUBMISSION=path/to/this/folder
    curl -s 'http://127.0.0.1:8000/sleep?ms=3000' & sleep 0.5
    time curl -s http://127.0.0.1:8000/health; wait

Uvicorn runs every request of this app on ONE thread, in an event loop. A
handler that blocks - sleeps, waits for another server, or computes for a long
time without reaching an `await` - stops every other request, /health too.
Each of the three handlers below blocks in its own way. Make each one
non-blocking without changing what it answers.
"""

### BEGIN SOLUTION
import asyncio
### END SOLUTION
import hashlib
import os
### BEGIN STARTER
# import time
### END STARTER
from urllib.parse import parse_qs

import httpx

# The service /fetch calls. The grader (and `make try`) starts its own slow
# service, grader/upstream.py, and sets UPSTREAM_URL.
UPSTREAM_URL = os.environ.get("UPSTREAM_URL", "http://127.0.0.1:8001/data")
SALT = b"conclab-lab-01"

### BEGIN SOLUTION
# One AsyncClient for the whole app: opened at startup, closed at shutdown
# (see lifespan), so requests reuse its connections.
client = None
### END SOLUTION


class BadRequest(ValueError):
    """Answered with a 400 and this message."""


def int_param(query, name, high):
    values = query.get(name, [])
    if (
        len(values) != 1
        or not values[0].isascii()
        or not values[0].isdigit()
        or int(values[0]) > high
    ):
        raise BadRequest(f"{name} must be an integer 0..{high}")
    return int(values[0])


def slow_hash(text, rounds):
    """PBKDF2, the kind of deliberately slow hash used to store passwords: pure CPU."""
    return hashlib.pbkdf2_hmac("sha256", text.encode(), SALT, rounds).hex()


async def sleep(query):
    """/sleep?ms=N - wait N ms (think: a slow database), then answer."""
    ms = int_param(query, "ms", 10_000)
    ### BEGIN SOLUTION
    await asyncio.sleep(ms / 1000)  # gives the loop back while we wait
    ### END SOLUTION
    ### BEGIN STARTER
    # time.sleep(ms / 1000)
    ### END STARTER
    return f"slept {ms} ms"


async def fetch(query):
    """/fetch - GET UPSTREAM_URL and answer with its body."""
    ### BEGIN SOLUTION
    response = await client.get(UPSTREAM_URL)  # the loop serves others meanwhile
    ### END SOLUTION
    ### BEGIN STARTER
    # response = httpx.get(UPSTREAM_URL, timeout=10)
    ### END STARTER
    response.raise_for_status()
    return response.text


async def hash_text(query):
    """/hash?text=T&rounds=N - the PBKDF2 hash of T with N rounds, in hex."""
    text = query.get("text", [""])[0]
    rounds = int_param(query, "rounds", 10_000_000)
    ### BEGIN SOLUTION
    # CPU work cannot be awaited: hand it to a pool thread. hashlib releases
    # the GIL while it hashes, so the loop's thread keeps serving meanwhile.
    # (Pure-Python CPU work holds the GIL: it would need a process pool.)
    return await asyncio.to_thread(slow_hash, text, rounds)
    ### END SOLUTION
    ### BEGIN STARTER
    # return slow_hash(text, rounds)
    ### END STARTER


async def health(query):
    """/health - answers at once, if the loop is free to answer it."""
    return "ok"


ROUTES = {"/health": health, "/sleep": sleep, "/fetch": fetch, "/hash": hash_text}


async def lifespan(receive, send):
    """Uvicorn sends startup before the first request and shutdown at the end."""
    ### BEGIN SOLUTION
    global client
    ### END SOLUTION
    while True:
        message = await receive()
        if message["type"] == "lifespan.startup":
            ### BEGIN SOLUTION
            client = httpx.AsyncClient(timeout=10)
            ### END SOLUTION
            await send({"type": "lifespan.startup.complete"})
        elif message["type"] == "lifespan.shutdown":
            ### BEGIN SOLUTION
            await client.aclose()
            ### END SOLUTION
            await send({"type": "lifespan.shutdown.complete"})
            return


async def app(scope, receive, send):
    if scope["type"] == "lifespan":
        return await lifespan(receive, send)
    if scope["type"] != "http":
        return
    route = ROUTES.get(scope["path"])
    query = parse_qs(scope["query_string"].decode("latin-1"))
    if route is None:
        status, body = 404, "not found"
    else:
        try:
            status, body = 200, await route(query)
        except BadRequest as err:
            status, body = 400, str(err)
        except httpx.HTTPError as err:
            status, body = 502, f"upstream failed: {err!r}"
    await send({"type": "http.response.start", "status": status,
                "headers": [(b"content-type", b"text/plain")]})
    await send({"type": "http.response.body", "body": body.encode() + b"\n"})
