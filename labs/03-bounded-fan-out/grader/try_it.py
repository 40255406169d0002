"""`make try LAB=03 SUBMISSION=<your folder>`: your fetch_all by hand, against the grader's server.

Starts the grader's own server (upstream.py here), calls YOUR fetch_all once
with slow, failing and hanging URLs, and prints what came back for each URL,
how long the call took, and how many requests the server saw in flight at
once. Nothing is graded: run it as often as you like.
"""

import asyncio
import importlib.util
import json
import time
import traceback
from pathlib import Path

import httpx

from conclab.base.errors import LabError
from conclab.base.specs import ServerSpec
from conclab.labs.harness import load_module
from conclab.labs.trying import serve_for_trying
from conclab.processes.launcher import free_port

HERE = Path(__file__).resolve().parent
LIMIT, TIMEOUT = 3, 1.0


def demo_urls(base):
    """(what it is, URL, seconds it takes when it succeeds)"""
    return [
        ("600 ms", f"{base}/item/0?ms=600", 0.6),
        *[("200 ms", f"{base}/item/{i}?ms=200", 0.2) for i in range(1, 6)],
        ("answers 500", f"{base}/status/500?ms=50", 0.05),
        ("nobody listens", f"http://127.0.0.1:{free_port()}/nobody", 0.0),
        ("hangs 2.5 s", f"{base}/hang", TIMEOUT),
    ]


def sliding_window(seconds, limit):
    """The grader's own ideal time (test_fanout.window_time), so both say the same."""
    return load_module("lab03_grader", HERE / "test_fanout.py").window_time(seconds, limit)


def load_fanout(submission):
    path = submission / "fanout.py"
    spec = importlib.util.spec_from_file_location("student_fanout", path)
    module = importlib.util.module_from_spec(spec)
    try:
        spec.loader.exec_module(module)
    except Exception as err:  # noqa: BLE001 - the student's error, shown to the student
        raise LabError(f"{path} could not be imported: {type(err).__name__}: {err}") from None
    return module.fetch_all


def your_frames(err, submission):
    """The lines of the traceback that are in the student's own files."""
    frames = [f for f in traceback.extract_tb(err.__traceback__) if str(submission) in f.filename]
    return [f"  {Path(f.filename).name} line {f.lineno}, in {f.name}: {f.line}" for f in frames]


def call(fetch_all, urls, limit):
    """One call; (results or None, the exception raised or None, seconds)."""
    start = time.monotonic()
    try:
        results = asyncio.run(
            asyncio.wait_for(fetch_all([u for _, u, _ in urls], limit, TIMEOUT), 30)
        )
        return results, None, time.monotonic() - start
    except Exception as err:  # noqa: BLE001 - shown to the student
        return None, err, time.monotonic() - start


def show(urls, results, raised, submission):
    if raised is not None:
        print(f"  fetch_all raised {first_line(raised)}")
        print("\n".join(your_frames(raised, submission)))
        print("  It must not raise: each URL's error belongs in that URL's place in the list.")
        return
    for (what, url, _), result in zip(urls, results, strict=False):
        shown = result if isinstance(result, str) else first_line(result)
        print(f"  {what:15} {url.split('/', 3)[-1]:32} -> {shown:.70}")
    if len(results) != len(urls):
        print(f"  ({len(results)} results for {len(urls)} URLs: there must be one per URL)")


def first_line(err):
    text = str(err).strip().splitlines()
    return f"{type(err).__name__}: {text[0]}" if text else type(err).__name__


def try_it(submission: Path, port: int) -> None:
    fetch_all = load_fanout(submission)
    spec = ServerSpec("asgi", app="upstream:app", app_dir=str(HERE), cpus="all")
    with serve_for_trying(spec, "the grader's server", quiet=True) as server:
        run = f"{server.url}/try{time.monotonic_ns()}"
        urls = demo_urls(run)
        print(f"fetch_all({len(urls)} URLs, limit={LIMIT}, timeout={TIMEOUT}):", flush=True)
        results, raised, elapsed = call(fetch_all, urls, LIMIT)
        stats = json.loads(httpx.get(f"{run}/stats", trust_env=False).text)
        show(urls, results, raised, submission)
        ideal = sliding_window([s for *_, s in urls], LIMIT)
        print(f"took {elapsed:.2f} s; a sliding window of {LIMIT} needs about {ideal:.1f} s")
        print(
            f"the server saw at most {stats['max_inflight']} "
            f"request(s) in flight at once (limit {LIMIT})"
        )

        # README step 5: URLs queued behind one that hangs, one slot.
        queue = f"{server.url}/queue{time.monotonic_ns()}"
        urls = [("hangs 2.5 s", f"{queue}/hang", TIMEOUT)] + [
            ("50 ms", f"{queue}/item/{i}?ms=50", 0.05) for i in range(1, 4)
        ]
        print(
            f"\nfetch_all([a URL that hangs, 3 URLs of 50 ms], limit=1, timeout={TIMEOUT}):",
            flush=True,
        )
        results, raised, elapsed = call(fetch_all, urls, 1)
        stats = json.loads(httpx.get(f"{queue}/stats", trust_env=False).text)
        show(urls, results, raised, submission)
        print(
            f"took {elapsed:.2f} s; the server answered "
            f"{stats['served']} of the {len(urls)} requests"
        )
