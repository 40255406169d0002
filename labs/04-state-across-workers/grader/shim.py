"""Runs the student's app.py under Gunicorn and tags every response with the
pid of the worker process that served it, so the grader can tell that the
hits really were spread across workers - however app.py is written. It also
answers /health itself: the launcher waits for it before the grader starts."""

import os

from conclab.labs.harness import load_student_app

student = load_student_app()


def app(environ, start_response):
    if environ.get("PATH_INFO") == "/health":
        start_response("200 OK", [("Content-Type", "text/plain")])
        return [b"ok\n"]

    def tagged(status, headers, exc_info=None):
        return start_response(status, [*headers, ("X-Grader-Pid", str(os.getpid()))], exc_info)

    return student.app(environ, tagged)
