"""The `conclab` command: serve, bench, calibrate, charts, notebooks, handout, grade.

Every error a user can cause ends in one clear line on stderr and a non-zero
exit, never a traceback.
"""

from __future__ import annotations

import argparse
import sys


class CliError(Exception):
    """A mistake in the user's input: printed as one line, exit code 2."""


class Parser(argparse.ArgumentParser):
    def error(self, message):
        raise CliError(message)


def positive_int(text):
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}")
    return value


def positive_float(text):
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive number, got {text!r}") from None
    if not value > 0 or value != value or value == float("inf"):
        raise argparse.ArgumentTypeError(f"expected a positive number, got {text!r}")
    return value


def add_server_options(p, kind_positional=False):
    if kind_positional:
        p.add_argument("kind", choices=["wsgi", "asgi"], help="wsgi: Flask on Gunicorn; asgi: raw ASGI on Uvicorn")
    p.add_argument("--workers", type=positive_int, default=1, help="worker processes")
    p.add_argument("--threads", type=positive_int, default=1, help="WSGI: threads per worker (>1 = gthread)")
    p.add_argument("--threadpool", type=positive_int, default=40, help="ASGI: offload pool size")
    p.add_argument("--loop", choices=["auto", "asyncio", "uvloop"], default="auto", help="ASGI event loop")
    p.add_argument("--http", choices=["auto", "h11", "httptools"], default="auto", help="ASGI HTTP parser")
    p.add_argument("--limit-concurrency", type=positive_int, default=None, help="ASGI: 503 beyond this")
    p.add_argument("--timeout", type=positive_int, default=30, help="WSGI: Gunicorn worker timeout (s)")
    p.add_argument("--cpus", default=None, help="cores for the server: 'all' or e.g. 0,1 (default: all but the driver's)")


def spec_from_args(args, kind):
    from .launcher import ServerSpec

    cpus = args.cpus
    if cpus not in (None, "all"):
        try:
            cpus = tuple(int(c) for c in cpus.split(","))
        except ValueError:
            raise CliError(f"--cpus must be 'all' or comma-separated core numbers, not {cpus!r}") from None
    try:
        return ServerSpec(
            kind=kind, workers=args.workers, threads=args.threads, threadpool=args.threadpool,
            loop=args.loop, http=args.http, limit_concurrency=args.limit_concurrency,
            timeout=args.timeout, cpus=cpus, port=getattr(args, "port", None),
        )
    except ValueError as err:
        raise CliError(str(err)) from None


def cmd_serve(args):
    import time

    from .launcher import describe, serve

    spec = spec_from_args(args, args.kind)
    with serve(spec) as server:
        print(describe(server), flush=True)
        print("Serving until Ctrl-C ...", flush=True)
        try:
            while server._proc.poll() is None:
                time.sleep(0.5)
            raise CliError(f"the server exited by itself; its output:\n{server.log()[-2000:]}")
        except KeyboardInterrupt:
            print("\nstopping ...", flush=True)
    print("stopped; no server process left.")
    return 0


def build_parser():
    parser = Parser(prog="conclab", description="Concurrency Lab: measure Python web concurrency.")
    sub = parser.add_subparsers(dest="command", required=True, parser_class=Parser)

    p = sub.add_parser("serve", help="run a lab server on 127.0.0.1 until Ctrl-C")
    add_server_options(p, kind_positional=True)
    p.add_argument("--port", type=positive_int, default=None, help="port (default: a free one)")
    p.set_defaults(func=cmd_serve)

    for register in _REGISTRARS:
        register(sub)
    return parser


# Other modules add their subcommands here (bench, charts, labs ...).
_REGISTRARS = []


def main(argv=None):
    from .launcher import ServerStartError

    try:
        args = build_parser().parse_args(argv)
        return args.func(args) or 0
    except CliError as err:
        print(f"conclab: error: {err}", file=sys.stderr)
        return 2
    except ServerStartError as err:
        print(f"conclab: error: {err}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("conclab: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
