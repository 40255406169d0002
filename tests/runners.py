"""The servers the shared tests run, read from the tables in conclab.base.servers.

Every app on its default runner, then every other runner once for each interface
it serves (on the first app of that interface): a runner added to the table is
tested by the route, header, bad-input and no-orphan tests without editing them,
and the suite grows by a few servers, not by the whole cross-product.
"""

from conclab.base.servers import APPS, RUNNERS, default_runner
from conclab.base.specs import ServerSpec


def each_app_and_runner(**fields) -> list[ServerSpec]:
    """ServerSpecs (with ``fields``) covering every app and every (runner, interface) pair."""
    specs = [ServerSpec(name, **fields) for name in APPS]
    for runner in RUNNERS.values():
        for interface in runner.interfaces:
            app = next(a for a in APPS.values() if a.interface == interface)
            if default_runner(app) is not runner:
                specs.append(ServerSpec(app.name, manager=runner.manager, **fields))
    return specs


def other_runners(**fields) -> list[ServerSpec]:
    """Only the specs on a runner other than their app's default."""
    return [
        spec
        for spec in each_app_and_runner(**fields)
        if spec.runner is not default_runner(spec.app_entry)
    ]


def spec_id(spec: ServerSpec) -> str:
    """'wsgi-gunicorn', 'asgi-granian' ...: short test ids."""
    return f"{spec.kind}-{spec.runner.name}"
