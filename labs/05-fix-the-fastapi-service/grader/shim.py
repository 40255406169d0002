"""Runs the student's app.py under Uvicorn, stamps every response with when the
server started and finished it, and lets the grader fill AnyIO's threadpool.

The stamps come from ``conclab.labs.harness.stamped``, not from app.py, so the
grader sees the overlap of requests however the app is written.

`/__grader/fill?free=N` borrows every token of AnyIO's default thread limiter
but N, as other traffic would; `/__grader/empty` gives them back. So the PDF
check means the same at any pool size: raising `total_tokens` moves the point
where the pool runs dry, it does not remove it.
"""

import json
import math
from pathlib import Path

import anyio.to_thread

from conclab.labs.harness import load_module, load_student_app, stamped

LAB = Path(__file__).resolve().parent.parent

# The libraries app.py calls are the lab's own copy, whatever the submission holds.
load_module("backends", LAB / "backends.py")
student = load_student_app()

MAX_FILL = 10_000  # tokens the grader will borrow at most
borrowed = []  # one object per token the grader holds
unbounded = []  # the student's total_tokens, while the grader bounds an unbounded pool


def fill(free):
    limiter = anyio.to_thread.current_default_thread_limiter()
    total = limiter.total_tokens
    if total == math.inf or total > MAX_FILL:
        # Too many tokens to borrow one by one (math.inf is allowed): bound the
        # pool for the burst instead - the same 'free' tokens left - and
        # restore the student's setting afterwards.
        unbounded.append(total)
        limiter.total_tokens = limiter.borrowed_tokens + free
    while limiter.available_tokens > free:
        borrower = object()
        limiter.acquire_on_behalf_of_nowait(borrower)
        borrowed.append(borrower)
    return {"total": str(total), "free": limiter.available_tokens}


def empty():
    limiter = anyio.to_thread.current_default_thread_limiter()
    while borrowed:
        limiter.release_on_behalf_of(borrowed.pop())
    if unbounded:
        limiter.total_tokens = unbounded.pop()
    return {"total": str(limiter.total_tokens), "free": str(limiter.available_tokens)}


async def grader_route(scope, send):
    """/__grader/fill and /__grader/empty, answered here; True if it was one of them."""
    if not scope["path"].startswith("/__grader/"):
        return False
    query = dict(
        pair.split("=", 1) for pair in scope["query_string"].decode().split("&") if "=" in pair
    )
    if scope["path"] == "/__grader/fill":
        answer = fill(int(query.get("free", "10")))
    else:
        answer = empty()
    await send(
        {
            "type": "http.response.start",
            "status": 200,
            "headers": [(b"content-type", b"application/json")],
        }
    )
    await send({"type": "http.response.body", "body": json.dumps(answer).encode()})
    return True


app = stamped(student.app, before=grader_route)
