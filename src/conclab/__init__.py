"""Concurrency Lab: measure WSGI vs ASGI, blocking vs await, threadpools and workers.

Import what you need from the modules (kept lazy so that `python -m conclab.guard`
starts fast):

    from conclab.launcher import ServerSpec, serve
    from conclab.driver import run_load
"""

__version__ = "0.1.0"
