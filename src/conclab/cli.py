"""The `conclab` command: serve, bench, calibrate, charts, notebooks, handout, grade, doctor.

Every error a user can cause ends in one clear line on stderr and a non-zero
exit, never a traceback.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import TYPE_CHECKING, NoReturn

from .base.errors import CliError, LoadError, RemoteTargetError, ServerStartError, UserError

if TYPE_CHECKING:
    from .base.specs import ServerSpec
    from .processes.nginx import FrontSpec


class Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:
        raise CliError(message)


def shown(text: object) -> str:
    """User input as typed, or as a Python literal if it holds control characters:
    an error message must stay one line."""
    text = str(text)
    return text if text.isprintable() else repr(text)


def one_line(err: BaseException) -> str:
    """An error as one line: control characters escaped, further lines joined."""
    lines = str(err).splitlines()
    return " / ".join(shown(line) for line in lines if line.strip()) or type(err).__name__


def positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}")
    return value


def positive_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive number, got {text!r}") from None
    if not value > 0 or value != value or value == float("inf"):
        raise argparse.ArgumentTypeError(f"expected a positive number, got {text!r}")
    return value


def server_choices() -> tuple[list[str], str, list[str], str]:
    """The apps and managers the CLI offers, and their help, from conclab.base.servers."""
    from .base.servers import APPS, MANAGERS, help_text, managers_help

    return list(APPS), help_text(), list(MANAGERS), managers_help()


def add_server_options(p: argparse.ArgumentParser, kind_positional: bool = False) -> None:
    kinds, kinds_help, managers, managers_help = server_choices()
    if kind_positional:
        p.add_argument("kind", choices=kinds, help=kinds_help)
    p.add_argument("--manager", choices=managers, default=None, help=managers_help)
    p.add_argument("--workers", type=positive_int, default=1, help="worker processes")
    p.add_argument(
        "--threads", type=positive_int, default=1, help="WSGI: threads per worker (>1 = gthread)"
    )
    p.add_argument(
        "--threadpool",
        type=positive_int,
        default=40,
        help="ASGI: offload pool size (FastAPI: AnyIO's tokens)",
    )
    p.add_argument(
        "--loop", choices=["auto", "asyncio", "uvloop"], default="auto", help="ASGI event loop"
    )
    p.add_argument(
        "--http", choices=["auto", "h11", "httptools"], default="auto", help="ASGI HTTP parser"
    )
    p.add_argument(
        "--limit-concurrency", type=positive_int, default=None, help="ASGI: 503 beyond this"
    )
    p.add_argument(
        "--worker-timeout", type=positive_int, default=30, help="Gunicorn's worker timeout (s)"
    )
    p.add_argument(
        "--cpus",
        default=None,
        help="cores for the server: 'all' or e.g. 0,1 (default: all but the driver's)",
    )
    p.add_argument(
        "--python",
        default=None,
        metavar="PATH",
        help="the Python that runs the server, e.g. a free-threaded 3.13t "
        "(default: the lab's own); "
        "it gets a small venv of its own, cached in ~/.cache/conclab/venvs",
    )
    p.add_argument(
        "--behind-nginx",
        type=positive_int,
        nargs="?",
        const=1,
        default=None,
        metavar="INSTANCES",
        help="put nginx (servers/nginx.conf) in front of INSTANCES copies of the server "
        "(default 1)",
    )


def spec_from_args(args: argparse.Namespace, kind: str) -> ServerSpec | FrontSpec:
    from .base.specs import ServerSpec

    cpus = args.cpus
    if cpus not in (None, "all"):
        try:
            cpus = tuple(int(c) for c in cpus.split(","))
        except ValueError:
            raise CliError(
                f"--cpus must be 'all' or comma-separated core numbers, not {cpus!r}"
            ) from None
    front = getattr(args, "behind_nginx", None)
    try:
        spec = ServerSpec(
            kind=kind,
            workers=args.workers,
            threads=args.threads,
            threadpool=args.threadpool,
            loop=args.loop,
            http=args.http,
            limit_concurrency=args.limit_concurrency,
            timeout=args.worker_timeout,
            cpus=cpus,
            port=None if front else getattr(args, "port", None),
            manager=args.manager,
            python=getattr(args, "python", None),
        )
        if front:  # nginx in front of `front` copies of the server
            from .processes.nginx import FrontSpec, nginx_missing

            missing = nginx_missing()
            if missing:
                raise CliError(missing)
            return FrontSpec(spec, instances=front, port=getattr(args, "port", None))
        return spec
    except ValueError as err:
        raise CliError(str(err)) from None


def cmd_serve(args: argparse.Namespace) -> int:
    import time

    from .processes.stack import running

    spec = spec_from_args(args, args.kind)
    with running(spec) as server:
        print(server.describe(), flush=True)
        print("Serving until Ctrl-C ...", flush=True)
        try:
            while server.running():
                time.sleep(0.5)
            raise CliError(f"the server exited by itself; its output:\n{server.log()[-2000:]}")
        except KeyboardInterrupt:
            print("\nstopping ...", flush=True)
    print("stopped; no server process left.")
    return 0


def check_reachable(url: str) -> None:
    """One TCP connect before a run: an unreachable
    server is a one-line error, not 10,000 failures."""
    import socket
    from urllib.parse import urlsplit

    parts = urlsplit(url)
    try:
        port = parts.port or (443 if parts.scheme == "https" else 80)
        with socket.create_connection((parts.hostname, port), timeout=3):
            pass
    except (OSError, ValueError) as err:
        raise CliError(f"cannot reach {url}: {err.strerror or err}") from None


def check_writable(option: str, path: str) -> None:
    """Fail before measuring, not after: a run's results need somewhere to go."""
    import os
    from pathlib import Path

    target = Path(path)
    if target.is_dir():
        raise CliError(f"{option} {shown(path)}: that is a folder; give a file name")
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise CliError(
            f"{option} {shown(path)}: cannot make the folder "
            f"{shown(target.parent)} ({err.strerror or err})"
        ) from None
    if not os.access(target.parent, os.W_OK):
        raise CliError(f"{option} {shown(path)}: its folder is not writable")


def bench_load(args: argparse.Namespace):
    """The LoadSpec of `conclab bench`, and its target checked; bad values are one line."""
    from .base.specs import LoadSpec
    from .measuring.driver import check_target

    if (args.server is None) == (args.url is None):
        raise CliError(
            "give exactly one of --server " + "|".join(server_choices()[0]) + " or --url BASE"
        )
    try:
        load = LoadSpec(
            path=args.path,
            concurrency=args.concurrency,
            rate=args.rate,
            arrivals=args.arrivals,
            duration=args.duration,
            requests=args.requests,
            warmup=args.warmup,
            timeout=args.timeout,
            transport=args.transport,
        )
        if args.url:
            check_target(args.url, args.allow_remote)
    except RemoteTargetError as err:  # the driver's message names its Python argument
        raise CliError(
            f"refusing to send load to {err.host}: not a loopback address "
            "(add --allow-remote to override)"
        ) from None
    except LoadError as err:
        raise CliError(str(err)) from None
    return load


def server_doc(spec, server) -> dict:
    """What the saved run says about the server: its spec, label, command and runner."""
    from .processes.nginx import FrontSpec

    app = spec.app if isinstance(spec, FrontSpec) else spec
    doc = {
        "spec": spec.to_dict(),
        "label": spec.label,
        "command": server.command,
        "runner": app.runner.name,
    }
    if isinstance(spec, FrontSpec):
        doc["front"] = "nginx"
    return doc


def measure_bench(url: str, load, server, progress: bool, allow_remote: bool):
    """Run the load; return (result, interrupted, server CPU us per request or None, warnings).

    The server's CPU time is read only for a server we started (we know its
    processes): over every request it answered, warm-up included.
    """
    import contextlib
    import warnings

    from .measuring.cost import ServerCpu, answered
    from .measuring.driver import Interrupted, run_load

    interrupted = False
    with (
        ServerCpu(server) if server else contextlib.nullcontext() as cpu,
        warnings.catch_warnings(record=True) as caught,
    ):
        warnings.simplefilter("always")
        try:
            result = run_load(url, load, progress=progress, allow_remote=allow_remote)
        except Interrupted as stop:
            result, interrupted = stop.result, True
        except LoadError as err:
            raise CliError(str(err)) from None
    return result, interrupted, cpu.us_per_request(answered(result)) if cpu else None, caught


def cmd_bench(args: argparse.Namespace) -> int:
    import contextlib

    from .measuring.results import save_run, to_json
    from .measuring.stats import format_summary
    from .processes.stack import running

    load = bench_load(args)
    spec = spec_from_args(args, args.server) if args.server else None
    for option, path in (("--json", args.json), ("--records", args.records)):
        if path and path != "-":
            check_writable(option, path)
    human = sys.stderr if args.json == "-" else sys.stdout
    with running(spec) if spec else contextlib.nullcontext() as server:
        url = server.url if server else args.url.rstrip("/")
        check_reachable(url)
        if server:
            from .base.system import pinned_label
            from .processes import interpreters
            from .processes.nginx import FrontSpec

            app = spec.app if isinstance(spec, FrontSpec) else spec
            print(
                f"{spec.label} on {url} ({pinned_label(app.resolved_cpus())}; "
                f"{interpreters.gil_words(server.interpreter)})",
                file=human,
            )
        result, interrupted, cpu_us, caught = measure_bench(
            url, load, server, not args.no_progress, args.allow_remote
        )
        for w in caught:
            print(f"WARNING: {w.message}", file=human)
    if server:  # what we know of a server we started, as it reported it
        from .processes import interpreters

        reenabled = interpreters.reenabled_warning(server.interpreter)
        if reenabled:
            print(f"WARNING: {reenabled}", file=human)
        result.summary = interpreters.record(result.summary, server).replace(
            server_cpu_us_per_request=cpu_us, runner=server_doc(spec, server)["runner"]
        )
    try:
        doc = save_run(
            result,
            json_path=args.json if args.json not in (None, "-") else None,
            records_path=args.records,
            server=server_doc(spec, server) if server else {"url": url},
        )
    except OSError as err:
        print(format_summary(result.summary), file=human)
        raise CliError(f"could not save the results: {err}") from None
    print(format_summary(result.summary), file=human)
    if cpu_us is not None and args.behind_nginx:
        print(
            "            (server CPU: the app servers behind nginx; nginx's own is not counted)",
            file=human,
        )
    if args.json == "-":
        sys.stdout.write(to_json(doc))
    if args.records:
        print(f"records: {args.records}", file=human)
    if interrupted:
        return 130
    if result.failed:
        print(f"conclab: error: {result.failed}", file=sys.stderr)
        return 1
    return 0


def cmd_slowclients(args: argparse.Namespace) -> int:
    from .measuring.slowclients import SlowLoad, describe, run_slow_clients

    try:
        load = SlowLoad(
            clients=args.clients,
            duration=args.duration,
            interval=args.interval,
            stagger=args.stagger,
            path=args.path,
        )
        check_reachable(args.url)
        result = run_slow_clients(args.url, load)
    except RemoteTargetError:
        raise CliError(
            f"slow clients go to loopback addresses only, not {shown(args.url)}"
        ) from None
    except LoadError as err:
        raise CliError(str(err)) from None
    except KeyboardInterrupt:
        return 130
    print(describe(result))
    return 0


def cmd_calibrate(args: argparse.Namespace) -> int:
    from .measuring.calibrate import calibrate

    calibrate(duration=args.duration)
    return 0


def cmd_charts(args: argparse.Namespace) -> int:
    import time

    from .base.paths import FIGURES_DIR, quick_mode
    from .figures.experiment import ServerPool, read_timing, timing_table
    from .figures.registry import REGISTRY

    if args.timing:
        return print_timing(args.out)
    names = (
        [n.strip() for n in args.only.split(",") if n.strip()]
        if args.only is not None
        else list(REGISTRY)
    )
    if not names:  # `--only ""` must not mean "measure everything"
        raise CliError("--only needs experiment names, e.g. --only gil,workers")
    unknown = [n for n in names if n not in REGISTRY]
    if unknown:
        raise CliError(
            f"unknown experiment {', '.join(map(shown, unknown))}; "
            f"choose from: {', '.join(REGISTRY)}"
        )
    mode = (
        "redrawing" if args.replot else ("measuring (QUICK mode)" if quick_mode() else "measuring")
    )
    print(f"{mode} {len(names)} experiment(s): {', '.join(names)}", flush=True)
    t = time.monotonic()
    # One server per spec for the whole run, where the experiments allow it.
    plan = [REGISTRY[n] for n in names if not args.replot and not REGISTRY[n].missing()]
    with ServerPool(plan, quick_mode()) as pool:
        code = _charts(names, args, pool)
    if code:
        return code
    print(f"done in {time.monotonic() - t:.0f} s")
    if not args.replot:
        measured = read_timing(args.out or FIGURES_DIR).get("quick" if quick_mode() else "full", {})
        measured = {n: measured[n] for n in names if n in measured}
        if measured:
            print("where the time went (seconds; also in data/timing.json):")
            print(timing_table(measured))
    return 0


def _charts(names: list[str], args: argparse.Namespace, pool) -> int:
    """Measure (or redraw) each named experiment; 130 when interrupted."""
    import time

    from .figures.registry import REGISTRY, run

    for name in names:
        t_exp = time.monotonic()
        why = REGISTRY[name].missing() if not args.replot else None
        if why:
            print(f"  skipped {name}: {why}", flush=True)
            continue
        try:
            png = run(
                name,
                **({"out_dir": args.out} if args.out else {}),
                **({"results_dir": args.results} if args.results else {}),
                replot=args.replot,
                fresh=args.fresh,
                pool=pool,
            )
        except FileNotFoundError as err:
            raise CliError(str(err)) from None
        except KeyboardInterrupt:
            print(
                f"conclab: interrupted during {name}; measured points are kept in "
                f"{args.results or 'results/'} and the same command resumes from them",
                file=sys.stderr,
            )
            return 130
        print(f"  wrote {png} ({time.monotonic() - t_exp:.0f} s)", flush=True)
    return 0


def print_timing(out: str | None) -> int:
    """`conclab charts --timing`: the seconds per figure
    and phase kept by the last measuring runs."""
    from .base.paths import FIGURES_DIR
    from .figures.experiment import read_timing, timing_table

    doc = read_timing(out or FIGURES_DIR)
    if not doc:
        raise CliError(
            f"no timing saved in {out or FIGURES_DIR}/data/timing.json: run `conclab charts` first"
        )
    for mode in ("quick", "full"):
        if doc.get(mode):
            print(f"\n{mode} ({'CONCLAB_QUICK=1 ' if mode == 'quick' else ''}conclab charts):\n")
            print(timing_table(doc[mode]))
    return 0


def build_parser() -> Parser:
    parser = Parser(prog="conclab", description="Concurrency Lab: measure Python web concurrency.")
    sub = parser.add_subparsers(dest="command", required=True, parser_class=Parser)

    p = sub.add_parser("serve", help="run a lab server on 127.0.0.1 until Ctrl-C")
    add_server_options(p, kind_positional=True)
    p.add_argument("--port", type=positive_int, default=None, help="port (default: a free one)")
    p.set_defaults(func=cmd_serve)

    p = sub.add_parser("bench", help="apply load and summarise throughput and latency")
    where = p.add_argument_group("target (one of)")
    kinds, kinds_help, _, _ = server_choices()
    where.add_argument(
        "--server", choices=kinds, help=f"start this lab server for the run ({kinds_help})"
    )
    where.add_argument("--url", help="an already running server, e.g. http://127.0.0.1:8000")
    add_server_options(p)
    p.add_argument("--path", required=True, help="route with query, e.g. '/io?ms=100'")
    p.add_argument("--concurrency", type=positive_int, help="closed loop: this many users")
    p.add_argument("--rate", type=positive_float, help="open loop: requests per second")
    p.add_argument(
        "--arrivals", choices=["constant", "poisson"], default="constant", help="open loop arrivals"
    )
    p.add_argument("--duration", type=positive_float, help="seconds to measure (after warm-up)")
    p.add_argument("--requests", type=positive_int, help="stop after this many requests")
    p.add_argument("--warmup", type=float, default=0.0, help="seconds excluded from the summary")
    p.add_argument("--timeout", type=positive_float, default=10.0, help="per-request timeout (s)")
    p.add_argument(
        "--transport",
        choices=["aiohttp", "httpx"],
        default="aiohttp",
        help="httpx transport: aiohttp (accurate) or httpx's default (slow under concurrency)",
    )
    p.add_argument(
        "--json", metavar="FILE|-", help="write the JSON summary to FILE, or stdout with -"
    )
    p.add_argument("--records", metavar="FILE.csv", help="write one CSV row per request")
    p.add_argument("--allow-remote", action="store_true", help="allow a non-loopback target")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.set_defaults(func=cmd_bench)

    p = sub.add_parser(
        "slowclients",
        help="hold slow connections to a server (loopback only) and report how they ended",
    )
    p.add_argument("--url", required=True, help="the server, e.g. http://127.0.0.1:8000")
    p.add_argument(
        "--clients", type=positive_int, default=4, help="slow connections (at most 2000)"
    )
    p.add_argument(
        "--duration", type=positive_float, default=10.0, help="seconds before every client gives up"
    )
    p.add_argument(
        "--interval", type=positive_float, default=1.0, help="seconds between header lines"
    )
    p.add_argument(
        "--stagger",
        type=float,
        default=0.0,
        help="seconds between one client's connect and the next",
    )
    p.add_argument("--path", default="/hello", help="the request's path")
    p.set_defaults(func=cmd_slowclients)

    p = sub.add_parser("charts", help="run the experiments and draw figures/*.png")
    p.add_argument("--only", help="comma-separated experiment names")
    p.add_argument("--replot", action="store_true", help="redraw from saved data, no measuring")
    p.add_argument("--fresh", action="store_true", help="re-measure even points cached in results/")
    p.add_argument("--out", default=None, help="output folder (default: figures/)")
    p.add_argument(
        "--results",
        default=None,
        metavar="DIR",
        help="cache of measured points (default: results/)",
    )
    p.add_argument(
        "--timing",
        action="store_true",
        help="print the seconds per figure and phase of the last measuring runs (data/timing.json)",
    )
    p.set_defaults(func=cmd_charts)

    p = sub.add_parser(
        "doctor",
        help="what runs on this machine (system, Python, cores, tools) and how to fix the rest",
    )
    p.set_defaults(func=cmd_doctor)

    p = sub.add_parser("calibrate", help="measure the load driver's own ceiling against /hello")
    p.add_argument("--duration", type=positive_float, default=3.0, help="seconds per point")
    p.set_defaults(func=cmd_calibrate)

    p = sub.add_parser("notebooks", help="execute the notebooks headless and write HTML")
    p.add_argument("--out", default="build", help="folder for the HTML pages (default build/)")
    p.add_argument("--only", help="one notebook, by number (02) or name (02-wsgi-vs-asgi)")
    p.add_argument(
        "--quick",
        action="store_true",
        help="quick mode (CONCLAB_QUICK=1): fewer points, shorter runs",
    )
    p.set_defaults(func=cmd_notebooks)

    p = sub.add_parser("handout", help="write student copies of the labs, solutions removed")
    p.add_argument("--out", default="dist/handout", help="folder to write (default dist/handout)")
    p.set_defaults(func=cmd_handout)

    p = sub.add_parser("grade", help="grade a lab: conclab grade 01 [--submission FOLDER]")
    p.add_argument("lab", nargs="?", help="lab number, e.g. 01")
    p.add_argument(
        "--submission", help="a student's copy of the lab folder (default: labs/NN-*/ itself)"
    )
    p.add_argument(
        "--format",
        choices=("text", "json", "gradescope"),
        default="text",
        help="text (default), json, or gradescope (its results.json)",
    )
    p.add_argument(
        "--check",
        metavar="NAME",
        help="run one check, e.g. 'requests_overlap[sleep]'; exit 0 if it passes",
    )
    p.add_argument(
        "--out", metavar="PATH", help="write the grade to a file (with --batch: the output folder)"
    )
    p.add_argument(
        "--batch",
        metavar="DIR",
        help="grade every submission under DIR (one subfolder per student)",
    )
    p.add_argument(
        "--jobs", type=positive_int, default=1, help="with --batch: graders at once (default 1)"
    )
    p.set_defaults(func=cmd_grade)

    p = sub.add_parser(
        "autograder", help="what a teacher uploads: a Gradescope zip or a GitHub Classroom template"
    )
    p.add_argument("lab", nargs="?", help="lab number, e.g. 01")
    p.add_argument("--gradescope", metavar="OUT.zip", help="write Gradescope's autograder zip")
    p.add_argument(
        "--classroom", metavar="DIR", help="write a GitHub Classroom template repository to DIR"
    )
    p.add_argument(
        "--run", action="store_true", help=argparse.SUPPRESS
    )  # what run_autograder calls
    p.set_defaults(func=cmd_autograder)

    p = sub.add_parser(
        "try", help="run your copy of a lab by hand: conclab try 01 --submission FOLDER"
    )
    p.add_argument("lab", nargs="?", help="lab number, e.g. 01")
    p.add_argument("--submission", help="your copy of the lab folder (default: the current folder)")
    p.add_argument(
        "--port", type=positive_int, default=8000, help="port for your app (default 8000)"
    )
    p.set_defaults(func=cmd_try)
    return parser


def cmd_notebooks(args: argparse.Namespace) -> int:
    from .teaching.notebooks import notebook_paths, run_all

    if not notebook_paths(args.only):
        names = ", ".join(p.stem for p in notebook_paths()) or "none found"
        raise CliError(f"no notebook matches {args.only!r}; choose from: {names}")
    failed = run_all(Path(args.out), args.only, quick=True if args.quick else None)
    if failed:
        print(
            f"conclab: error: {failed} notebook(s) failed; see the HTML for the failing cell",
            file=sys.stderr,
        )
        return 1
    return 0


def cmd_handout(args: argparse.Namespace) -> int:
    from .labs.handout import write_handout

    try:
        for folder in write_handout(args.out):
            print(f"wrote {folder}")
    except OSError as err:
        raise CliError(str(err)) from None
    print(f"wrote {Path(args.out) / 'README.md'} (the index)")
    return 0


def cmd_grade(args: argparse.Namespace) -> int:
    from .labs import results
    from .labs.grading import grade

    if args.batch:
        from .labs.batch import grade_batch

        return grade_batch(args.lab, args.batch, out=args.out, jobs=args.jobs)
    live = args.format == "text" and not args.out
    verdict = grade(args.lab, args.submission, check=args.check, live=live)
    if live:
        print("\n".join(results.summary_lines(verdict)), flush=True)
    else:
        text = results.FORMATTERS[args.format](verdict)
        if args.out:
            Path(args.out).parent.mkdir(parents=True, exist_ok=True)
            Path(args.out).write_text(text, encoding="utf-8")
            print(f"score {verdict.score:g}/{verdict.max_score:g}; wrote {args.out}")
        else:
            sys.stdout.write(text)
    return 0 if verdict.all_passed else 1


def cmd_autograder(args: argparse.Namespace) -> int:
    from .labs import autograder

    if args.run:
        return autograder.run_autograder(args.lab)
    if not (args.gradescope or args.classroom):
        raise CliError("say what to write: --gradescope OUT.zip and/or --classroom DIR")
    if args.gradescope:
        print(f"wrote {autograder.write_gradescope_zip(args.lab, args.gradescope)}")
    if args.classroom:
        print(f"wrote {autograder.write_classroom_template(args.lab, args.classroom)}")
    return 0


def cmd_doctor(args: argparse.Namespace) -> int:
    from .teaching.doctor import report

    return report()


def cmd_try(args: argparse.Namespace) -> int:
    from .labs.trying import try_lab

    return try_lab(args.lab, args.submission, args.port)


def main(argv: list[str] | None = None) -> int:
    from .base.system import WINDOWS_REFUSAL, native_windows

    if native_windows():  # before anything imports what Windows lacks (fcntl, resource)
        print(f"conclab: {WINDOWS_REFUSAL}", file=sys.stderr)
        return 2
    try:
        args = build_parser().parse_args(argv)
        return args.func(args) or 0
    except ServerStartError as err:  # quotes the server's own output: keep every line
        print(f"conclab: error: {err}", file=sys.stderr)
        return 1
    except UserError as err:
        print(f"conclab: error: {one_line(err)}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("conclab: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
