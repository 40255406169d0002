"""Runs the student's app.py under Uvicorn and stamps every response with when
the server started and finished it.

The stamps (time.monotonic_ns, one clock for every process on Linux) come from
here, not from app.py, so the grader sees the overlap of requests however the
app is written. A blocked loop delays the start stamp too: a request the loop
cannot look at has not started.
"""

import importlib.util
import os
import sys
import time
from pathlib import Path

folder = Path(os.environ["LAB_SUBMISSION"])
sys.path.insert(0, str(folder))  # so app.py may import its own helper modules
spec = importlib.util.spec_from_file_location("app", folder / "app.py")
student = importlib.util.module_from_spec(spec)
sys.modules["app"] = student
spec.loader.exec_module(student)


async def app(scope, receive, send):
    if scope["type"] != "http":
        return await student.app(scope, receive, send)
    start = time.monotonic_ns()

    async def stamped_send(message):
        if message["type"] == "http.response.start":
            stamps = [(b"x-grader-start-ns", str(start).encode()),
                      (b"x-grader-end-ns", str(time.monotonic_ns()).encode())]
            message = dict(message, headers=[*message.get("headers", []), *stamps])
        await send(message)

    await student.app(scope, receive, stamped_send)
