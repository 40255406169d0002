"""Runs the student's app.py under Gunicorn and tags every response with the
pid of the worker process that served it, so the grader can tell that the
hits really were spread across workers - however app.py is written. It also
answers /health itself: the launcher waits for it before the grader starts."""

import importlib.util
import os
import sys
from pathlib import Path

folder = Path(os.environ["LAB_SUBMISSION"])
sys.path.insert(0, str(folder))  # so app.py may import its own helper modules
spec = importlib.util.spec_from_file_location("app", folder / "app.py")
student = importlib.util.module_from_spec(spec)
sys.modules["app"] = student
spec.loader.exec_module(student)


def app(environ, start_response):
    if environ.get("PATH_INFO") == "/health":
        start_response("200 OK", [("Content-Type", "text/plain")])
        return [b"ok\n"]

    def tagged(status, headers, exc_info=None):
        return start_response(status, [*headers, ("X-Grader-Pid", str(os.getpid()))], exc_info)

    return student.app(environ, tagged)
