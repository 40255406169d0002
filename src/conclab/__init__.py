"""Concurrency Lab: measure WSGI vs ASGI, blocking vs await, threadpools and workers.

The package is layered; a module imports only from the layers before it:

    base        paths, errors, cores, specs (the value types everyone shares)
    processes   guard, launcher, nginx
    measuring   driver, slowclients, stats, theory, results, calibrate
    figures     experiment, plotting, one module per topic, registry
    teaching    teach, live, notebooks
    labs        markers, handout, grading, plugin, helpers
    cli         the `conclab` command

Import what you need from the modules (kept lazy so that
`python -m conclab.processes.guard` starts fast):

    from conclab.base.specs import ServerSpec
    from conclab.processes.launcher import serve
    from conclab.measuring.driver import run_load
"""

__version__ = "0.1.0"
