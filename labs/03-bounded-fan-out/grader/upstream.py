"""The grader's own server for lab 03: slow URLs, failing URLs, a URL that hangs,
and a count of how many requests were in flight at once.

Every URL starts with a run id (/<run>/...), so each check counts only its own
requests. Run by the grader under Uvicorn; one process, so one set of counters.

    /health                      200 ok
    /<run>/item/<i>?ms=N         waits N ms, answers "item <i>"
    /<run>/status/<code>?ms=N    waits N ms, answers with that status code
    /<run>/hang                  does not answer for 2.5 s, then 504
    /<run>/stats                 JSON: max_inflight, served, first/last times
"""

import asyncio
import json
import time
from urllib.parse import parse_qs

from conclab.labs.harness import lifespan, respond

RUNS = {}


def stats(run):
    return RUNS.setdefault(
        run,
        {
            "inflight": 0,
            "max_inflight": 0,
            "served": 0,
            "first_start_ns": None,
            "last_end_ns": None,
        },
    )


async def wait_for_disconnect(receive):
    while (await receive())["type"] != "http.disconnect":
        pass


async def serve_url(kind, arg, query, receive, send):
    ms = int(query.get("ms", ["0"])[0])
    if kind == "item":
        await asyncio.sleep(ms / 1000)
        await respond(send, 200, f"item {arg}")
    elif kind == "status":
        await asyncio.sleep(ms / 1000)
        await respond(send, int(arg), f"status {arg}")
    elif kind == "hang":
        # No answer for 2.5 s (the grader's timeouts are shorter), or until the
        # client gives up and disconnects.
        try:
            await asyncio.wait_for(wait_for_disconnect(receive), 2.5)
        except TimeoutError:
            await respond(send, 504, "hung for 2.5 s")
    else:
        await respond(send, 404, "not found")


async def app(scope, receive, send):
    if scope["type"] == "lifespan":
        return await lifespan(receive, send)
    if scope["type"] != "http":
        return
    parts = scope["path"].strip("/").split("/")
    query = parse_qs(scope["query_string"].decode())
    if parts == ["health"]:
        return await respond(send, 200, "ok")
    if len(parts) == 2 and parts[1] == "stats":
        data = {k: v for k, v in stats(parts[0]).items() if k != "inflight"}
        return await respond(send, 200, json.dumps(data), b"application/json")
    if len(parts) < 2:
        return await respond(send, 404, "not found")
    run = stats(parts[0])
    # In flight = arrived and not yet answered: counted here, on the server,
    # so it does not depend on how the client measures.
    run["inflight"] += 1
    run["max_inflight"] = max(run["max_inflight"], run["inflight"])
    if run["first_start_ns"] is None:
        run["first_start_ns"] = time.monotonic_ns()
    try:
        await serve_url(parts[1], parts[2] if len(parts) > 2 else "", query, receive, send)
    finally:
        run["inflight"] -= 1
        run["served"] += 1
        run["last_end_ns"] = time.monotonic_ns()
