"""Bad input, fuzzed: odd URLs to the three servers, odd arguments to `conclab`.

A student pastes a URL with unicode digits, a number with 200 digits, the same
parameter ten times, or 3,000 characters of junk. The servers must answer every
one of them with a 4xx (400 with a one-line reason for a bad ``ms``, 404 for an
unknown path) - never a 500, never a hang. `conclab` must answer bad arguments
with one line on stderr and a non-zero exit - never a traceback.

Each server is started once per module; every request has a short timeout, so a
hang fails the test instead of stalling it.
"""

import contextlib
import io
import re
from unittest import mock
from urllib.parse import quote

import httpx
import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st
from runners import each_app_and_runner, spec_id

from conclab import cli
from conclab.base import system
from conclab.base.servers import APPS, MANAGERS
from conclab.processes.launcher import serve

pytestmark = pytest.mark.faults

REQUEST_TIMEOUT = 5.0  # seconds; no answer in time is a hang
FUZZ = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
ASGI_ROUTES_WITH_MS = [
    "/io",
    "/blocking-io",
    "/offload-io",
    "/cpu",
    "/offload-cpu",
    "/hash-cpu",
    "/process-cpu",
]
ROUTES_WITH_MS = {
    "wsgi": ["/io", "/cpu"],
    "asgi": ASGI_ROUTES_WITH_MS,
    "fastapi": [*ASGI_ROUTES_WITH_MS, "/def-io"],
}
KNOWN_PATHS = {
    "/health",
    "/hello",
    "/state",
    "/def-health",
    "/pool",
    *ROUTES_WITH_MS["fastapi"],
    "/docs",
    "/docs/oauth2-redirect",
    "/redoc",
    "/openapi.json",  # FastAPI's own pages
}
REASONS = {"ms must be an integer 0..60000", "ms must be given once", "ms is required"}


@pytest.fixture(scope="module", params=each_app_and_runner(), ids=spec_id)
def target(request):
    """(server, client): each app, and each runner
    (runners.py), for the module; one keep-alive client."""
    with serve(request.param) as server:
        with httpx.Client(base_url=server.url, timeout=REQUEST_TIMEOUT, trust_env=False) as client:
            yield server, client


def is_valid_ms(text):
    return re.fullmatch(r"[0-9]{1,5}", text) is not None and int(text) <= 60_000


# Text a URL can carry: anything but lone surrogates (they have no UTF-8 form).
url_text = st.characters(exclude_categories=["Cs"])
bad_ms = st.one_of(
    st.integers(min_value=60_001, max_value=10**200).map(str),  # huge numbers
    st.integers(max_value=-1).map(str),  # negative
    st.floats().map(repr),  # 1.5, nan, inf, 1e+300
    st.text(st.characters(categories=["Nd"]), min_size=1, max_size=6),  # digits of any script
    st.sampled_from(["", " 5", "5 ", "1_000", "+5", "0x10", "5ms", "%", "%zz", "\x00", "\n5"]),
    st.text(url_text, max_size=40),  # anything
    st.text(url_text, min_size=500, max_size=2500),  # long strings
).filter(lambda text: not is_valid_ms(text))
other_key = st.text(url_text, min_size=1, max_size=12).filter(lambda key: key != "ms")


def query(pairs):
    return "&".join(f"{quote(k, safe='')}={quote(v, safe='')}" for k, v in pairs)


def check_4xx(response, expected=None):
    """A 4xx; when our app wrote it (it carries X-Worker-Pid), one line of reason.

    Gunicorn itself answers a request line over 4094 bytes with 414 before the
    app sees it: a 4xx too, in Gunicorn's own words.
    """
    assert 400 <= response.status_code < 500, (response.status_code, response.text[:200])
    if "x-worker-pid" in response.headers:
        body = response.text
        assert body.endswith("\n") and body.count("\n") == 1 and body.strip(), repr(body[:200])
        if expected is not None:
            assert response.status_code == expected, (response.status_code, body)
    return response.text.strip()


@FUZZ
@given(
    data=st.data(),
    value=bad_ms,
    extra=st.lists(st.tuples(other_key, st.text(url_text, max_size=20)), max_size=3),
)
def test_a_bad_ms_is_a_400_with_a_one_line_reason(target, data, value, extra):
    server, client = target
    route = data.draw(st.sampled_from(ROUTES_WITH_MS[server.spec.kind]))
    pairs = data.draw(st.permutations([("ms", value), *extra]))
    r = client.get(f"{route}?{query(pairs)}")
    reason = check_4xx(r, expected=400)
    if r.status_code == 400 and "x-worker-pid" in r.headers:
        assert reason == "ms must be an integer 0..60000"


@FUZZ
@given(data=st.data(), values=st.lists(st.text(url_text, max_size=8), min_size=2, max_size=12))
def test_a_repeated_ms_is_a_400_even_when_each_value_is_fine(target, data, values):
    server, client = target
    route = data.draw(st.sampled_from(ROUTES_WITH_MS[server.spec.kind]))
    r = client.get(f"{route}?{query([('ms', v) for v in values])}")
    assert check_4xx(r, expected=400) in REASONS | {""}
    if "x-worker-pid" in r.headers:
        assert r.text.strip() == "ms must be given once"


@FUZZ
@given(extra=st.lists(st.tuples(other_key, st.text(url_text, max_size=30)), max_size=5))
def test_a_missing_ms_is_a_400_that_says_so(target, extra):
    server, client = target
    r = client.get(f"/io?{query(extra)}")
    check_4xx(r, expected=400)
    if "x-worker-pid" in r.headers:
        assert r.text.strip() == "ms is required"


segment = st.text(url_text, min_size=1, max_size=40).filter(lambda s: s not in (".", ".."))


@FUZZ
@given(segments=st.lists(segment, min_size=1, max_size=6), junk=st.text(url_text, max_size=60))
def test_an_unknown_path_is_a_404_with_one_line(target, segments, junk):
    server, client = target
    path = "/" + "/".join(quote(s, safe="") for s in segments)
    assume("/" + "/".join(segments) not in KNOWN_PATHS)
    r = client.get(f"{path}?{quote(junk, safe='=&')}")
    check_4xx(r, expected=404)


@FUZZ
@given(junk=st.text(url_text, max_size=300))
def test_a_plain_route_ignores_any_query(target, junk):
    _, client = target
    r = client.get(f"/hello?{quote(junk, safe='=&')}")
    assert r.status_code == 200 and r.text == "hello\n"


RAW_REQUESTS = [
    b"GET /\xff HTTP/1.1\r\nHost: x\r\n\r\n",  # a byte that is not UTF-8
    b"GET /io?ms=\xd9\xa1 HTTP/1.1\r\nHost: x\r\n\r\n",  # raw Arabic-Indic digit one
    b"GET /io?ms=5 5 HTTP/1.1\r\nHost: x\r\n\r\n",  # a space in the target
    b"GET io?ms=5 HTTP/1.1\r\nHost: x\r\n\r\n",  # no leading slash
    b"GET /io?ms=\x00 HTTP/1.1\r\nHost: x\r\n\r\n",  # a NUL byte
    b"GET /hello HTTP/9.9\r\nHost: x\r\n\r\n",  # no such HTTP version
    b"GARBAGE\r\n\r\n",
]


@pytest.mark.parametrize("raw", RAW_REQUESTS, ids=lambda raw: repr(raw[:24]))
def test_a_malformed_request_line_is_a_400_and_the_server_keeps_serving(target, raw):
    import socket

    server, client = target
    with socket.create_connection(("127.0.0.1", server.port), timeout=REQUEST_TIMEOUT) as sock:
        sock.sendall(raw)
        answer = b""
        # Until the status line and headers are in: a server may keep the connection
        # open after an answer of its app's (Granian does; it is HTTP/1.1 keep-alive).
        while b"\r\n\r\n" not in answer and (chunk := sock.recv(65536)):
            answer += chunk
    status = int(answer.split(b" ", 2)[1])
    assert 400 <= status < 500, answer[:200]
    assert client.get("/health").status_code == 200


# --- conclab arguments ------------------------------------------------------------


def run_cli(argv):
    """conclab.main(argv) in-process, with stdout/stderr like a terminal's (they
    escape what they cannot encode). Returns (exit code, stdout, stderr)."""
    out = io.TextIOWrapper(
        io.BytesIO(), encoding="utf-8", errors="backslashreplace", write_through=True
    )
    err = io.TextIOWrapper(
        io.BytesIO(), encoding="utf-8", errors="backslashreplace", write_through=True
    )
    must_not = AssertionError("a bad argument list got past validation and started real work")
    with (
        contextlib.redirect_stdout(out),
        contextlib.redirect_stderr(err),
        # Safety net: a strategy mistake fails here instead of starting servers or sweeps.
        mock.patch("conclab.processes.launcher.serve", side_effect=must_not),
        mock.patch("conclab.measuring.driver.run_load", side_effect=must_not),
        mock.patch("conclab.figures.registry.run", side_effect=must_not),
        mock.patch("conclab.measuring.calibrate.calibrate", side_effect=must_not),
    ):
        code = cli.main(argv)
    return code, out.buffer.getvalue().decode(), err.buffer.getvalue().decode()


def assert_one_line_error(code, stderr):
    assert code != 0
    assert "Traceback" not in stderr
    lines = stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("conclab: error: "), stderr


def fails(parse, text):
    try:
        parse(text)
    except Exception:  # noqa: BLE001 - any refusal is what we want
        return True
    return False


arg_text = st.text(st.characters(exclude_characters="\x00"), max_size=30)  # argv cannot hold NUL
not_positive_int = arg_text.filter(lambda t: fails(cli.positive_int, t))
not_positive_float = arg_text.filter(lambda t: fails(cli.positive_float, t))
USABLE = list(system.cpu_ids())


def _bad_cpus(text):
    try:
        cores = [int(c) for c in text.split(",")]
    except ValueError:
        return True
    return text == "all" or not all(c in USABLE for c in cores)


BAD_BENCH_OPTIONS = {
    "--concurrency": st.one_of(not_positive_int, st.integers(4097, 10**30).map(str)),
    "--requests": st.one_of(not_positive_int, st.integers(2_000_001, 10**30).map(str)),
    "--rate": st.one_of(not_positive_float, st.floats(20_001, 1e300).map(repr)),
    "--duration": st.one_of(not_positive_float, st.floats(601, 1e300).map(repr)),
    "--timeout": st.one_of(not_positive_float, st.floats(601, 1e300).map(repr)),
    "--warmup": st.one_of(
        arg_text.filter(lambda t: fails(float, t)), st.sampled_from(["-1", "nan", "inf", "1e9"])
    ),
    "--path": arg_text.filter(lambda t: not t.startswith("/")),
    "--workers": st.one_of(not_positive_int, st.integers(65, 10**30).map(str)),
    "--threads": st.one_of(not_positive_int, st.integers(1025, 10**30).map(str)),
    "--threadpool": st.one_of(not_positive_int, st.integers(1025, 10**30).map(str)),
    "--worker-timeout": st.one_of(not_positive_int, st.integers(3601, 10**30).map(str)),
    "--limit-concurrency": not_positive_int,
    "--cpus": arg_text.filter(_bad_cpus),
    "--server": arg_text.filter(lambda t: t not in APPS),
    "--manager": arg_text.filter(lambda t: t not in MANAGERS),
    "--loop": arg_text.filter(lambda t: t not in ("auto", "asyncio", "uvloop")),
    "--http": arg_text.filter(lambda t: t not in ("auto", "h11", "httptools")),
    "--transport": arg_text.filter(lambda t: t not in ("aiohttp", "httpx")),
    "--arrivals": arg_text.filter(lambda t: t not in ("constant", "poisson")),
}
GOOD_BENCH = [
    "bench",
    "--server=asgi",
    "--path=/hello",
    "--concurrency=1",
    "--requests=1",
    "--no-progress",
]


@FUZZ
@given(
    data=st.data(),
    options=st.lists(st.sampled_from(sorted(BAD_BENCH_OPTIONS)), min_size=1, max_size=3),
)
def test_bench_with_a_bad_value_is_one_line_and_no_traceback(data, options):
    argv = list(GOOD_BENCH)
    for option in options:  # argparse keeps the last value given: ours
        argv.append(f"{option}={data.draw(BAD_BENCH_OPTIONS[option], label=option)}")
    code, _, stderr = run_cli(argv)
    assert_one_line_error(code, stderr)


@FUZZ
@given(names=st.lists(arg_text, min_size=1, max_size=4), replot=st.booleans())
def test_charts_with_unknown_experiments_is_one_line_and_no_traceback(names, replot):
    from conclab.figures.registry import REGISTRY

    assume(
        not all(n.strip() in REGISTRY for n in names if n.strip())
        or not any(n.strip() for n in names)
    )
    argv = ["charts", f"--only={','.join(names)}"] + (["--replot"] if replot else [])
    code, _, stderr = run_cli(argv)
    assert_one_line_error(code, stderr)


def _commands():
    import argparse

    parser = cli.build_parser()
    sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    return set(sub.choices)


# Every real subcommand, read from the parser so a new one is never fuzzed into running.
COMMANDS = _commands()


@FUZZ
@given(argv=st.lists(arg_text.filter(lambda t: not t.startswith("-")), min_size=1, max_size=5))
def test_an_unknown_command_is_one_line_and_no_traceback(argv):
    assume(argv[0] not in COMMANDS)
    code, _, stderr = run_cli(argv)
    assert_one_line_error(code, stderr)


@FUZZ
@given(
    data=st.data(),
    kind=st.sampled_from(list(APPS)),
    option=st.sampled_from(
        [
            "--workers",
            "--threads",
            "--threadpool",
            "--worker-timeout",
            "--cpus",
            "--port",
            "--manager",
        ]
    ),
)
def test_serve_with_a_bad_value_is_one_line_and_no_traceback(data, kind, option):
    bad = (
        BAD_BENCH_OPTIONS[option]
        if option in BAD_BENCH_OPTIONS
        else st.one_of(not_positive_int, st.integers(65_536, 10**30).map(str))
    )
    code, _, stderr = run_cli(["serve", kind, f"{option}={data.draw(bad)}"])
    assert_one_line_error(code, stderr)


@FUZZ
@given(value=st.one_of(not_positive_float))
def test_calibrate_with_a_bad_duration_is_one_line_and_no_traceback(value):
    code, _, stderr = run_cli(["calibrate", f"--duration={value}"])
    assert_one_line_error(code, stderr)


def test_bench_refuses_unusable_output_paths_before_measuring(tmp_path):
    a_file = tmp_path / "a-file"
    a_file.write_text("x")
    for option, path in (("--json", tmp_path), ("--records", a_file / "under-a-file.csv")):
        code, _, stderr = run_cli([*GOOD_BENCH, f"{option}={path}"])
        assert_one_line_error(code, stderr)
        assert option in stderr


def test_charts_only_empty_is_an_error_not_every_experiment():
    for only in ("", " ", ",", " , "):
        code, _, stderr = run_cli(["charts", f"--only={only}"])
        assert_one_line_error(code, stderr)
