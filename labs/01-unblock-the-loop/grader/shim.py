"""Runs the student's app.py under Uvicorn and stamps every response with when
the server started and finished it (``conclab.labs.harness.stamped``), so the
grader sees the overlap of requests however the app is written."""

from conclab.labs.harness import load_student_app, stamped

app = stamped(load_student_app().app)
