"""Runs the student's app.py under Uvicorn, and answers two routes itself:
/health (the launcher waits for it) and /interpreter (which Python runs the
app, and whether its GIL is on right now - the lab's servers answer it too).
Every other request goes to the student's app."""

import importlib.util
import json
import os
import sys
from pathlib import Path

folder = Path(os.environ["LAB_SUBMISSION"])
sys.path.insert(0, str(folder))  # so app.py may import its own helper modules
sys.path.insert(0, os.environ["CONCLAB_SERVERS"])  # the lab's servers/, for workload.py
spec = importlib.util.spec_from_file_location("app", folder / "app.py")
student = importlib.util.module_from_spec(spec)
sys.modules["app"] = student
spec.loader.exec_module(student)

from workload import interpreter_report  # noqa: E402  (after the path is set)


async def app(scope, receive, send):
    if scope["type"] == "http" and scope["path"] in ("/health", "/interpreter"):
        body = "ok\n" if scope["path"] == "/health" else json.dumps(interpreter_report()) + "\n"
        await send(
            {
                "type": "http.response.start",
                "status": 200,
                "headers": [(b"content-type", b"text/plain")],
            }
        )
        await send({"type": "http.response.body", "body": body.encode()})
        return
    await student.app(scope, receive, send)
