"""Slow clients: each connection ends one of five ways, the run is bounded, loopback only.

The servers here are a few lines of real sockets, each misbehaving in one way,
so every outcome is produced for real.
"""

import socket
import struct
import threading
import time

import pytest

from conclab.base.errors import LoadError
from conclab.measuring.slowclients import SlowLoad, run_slow_clients


class TinyServer:
    """A loopback listener that treats every connection with ``handle(conn)`` in a thread."""

    def __init__(self, handle):
        self.sock = socket.create_server(("127.0.0.1", 0))
        self.port = self.sock.getsockname()[1]
        self.url = f"http://127.0.0.1:{self.port}"
        self.handle = handle
        self.received = []
        self.conns = []
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def _serve(self):
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            self.conns.append(conn)
            threading.Thread(target=self.handle, args=(self, conn), daemon=True).start()

    def close(self):
        self.sock.close()
        for c in self.conns:
            c.close()


def read_some(server, conn):
    """Keep reading, never answering: the patient server."""
    while data := conn.recv(4096):
        server.received.append(data)


def answer_408(server, conn):
    server.received.append(conn.recv(4096))
    conn.sendall(b"HTTP/1.1 408 Request Timeout\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")


def hang_up(server, conn):
    conn.recv(4096)
    conn.shutdown(socket.SHUT_RDWR)


def reset(server, conn):
    conn.recv(4096)
    # SO_LINGER with a zero timeout turns close() into a RST.
    conn.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    conn.close()


@pytest.fixture
def tiny(request):
    servers = []

    def make(handle):
        servers.append(TinyServer(handle))
        return servers[-1]

    yield make
    for s in servers:
        s.close()


def test_a_patient_server_keeps_every_slow_client_until_it_gives_up(tiny):
    server = tiny(read_some)
    t = time.monotonic()
    result = run_slow_clients(server.url, clients=3, duration=1.6, interval=0.5)
    took = time.monotonic() - t
    assert 1.5 < took < 3.0
    assert result.counts() == {
        "clients": 3,
        "accepted": 3,
        "answered": 0,
        "closed": 0,
        "reset": 0,
        "timed_out": 3,
        "refused": 0,
    }
    sent = b"".join(server.received)
    assert sent.count(b"GET /hello HTTP/1.1\r\n") == 3
    assert b"X-Slow-1: 1\r\n" in sent
    assert b"\r\n\r\n" not in sent, "a slow client must never finish its header"
    # One header line per interval: 1.6 s at 0.5 s is 3 lines each.
    assert all(c.lines_sent == 3 for c in result.connections)


@pytest.mark.parametrize(
    "handle,outcome", [(answer_408, "answered"), (hang_up, "closed"), (reset, "reset")]
)
def test_each_way_a_server_can_end_a_slow_client_is_counted(tiny, handle, outcome):
    server = tiny(handle)
    t = time.monotonic()
    result = run_slow_clients(server.url, clients=2, duration=5)
    assert time.monotonic() - t < 3, "a connection the server ended must not wait for the deadline"
    counts = result.counts()
    assert counts["accepted"] == 2
    assert counts[outcome] == 2, counts
    if outcome == "answered":
        assert result.summary()["statuses"] == {"408": 2}


def test_nobody_listening_is_refused():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # bound, never listening: connections are refused
        result = run_slow_clients(f"http://127.0.0.1:{port}", clients=2, duration=1)
    assert result.counts()["refused"] == 2
    assert result.counts()["accepted"] == 0


def test_a_stop_event_ends_the_run_early(tiny):
    server = tiny(read_some)
    stop = threading.Event()
    threading.Timer(0.5, stop.set).start()
    t = time.monotonic()
    result = run_slow_clients(server.url, clients=2, duration=30, stop=stop)
    assert time.monotonic() - t < 2.5
    assert result.stopped_early
    assert result.counts()["timed_out"] == 2


def test_the_load_stops_by_itself_and_leaves_no_thread_behind(tiny):
    server = tiny(read_some)
    before = {t.name for t in threading.enumerate()}
    run_slow_clients(server.url, clients=20, duration=1.0, interval=0.2)
    time.sleep(0.1)
    assert "conclab-slowclients" not in {t.name for t in threading.enumerate()} - before


def test_the_cli_reports_how_the_slow_connections_ended(tiny):
    import subprocess
    import sys
    from pathlib import Path

    server = tiny(read_some)
    conclab = str(Path(sys.executable).with_name("conclab"))
    out = subprocess.run(
        [conclab, "slowclients", "--url", server.url, "--clients", "3", "--duration", "1"],
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert out.returncode == 0, out.stderr
    assert "accepted      3" in out.stdout and "timed out     3" in out.stdout
    refused = subprocess.run(
        [conclab, "slowclients", "--url", "http://10.1.2.3", "--duration", "1"],
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert (
        refused.returncode == 2 and refused.stderr.count("\n") == 1 and "loopback" in refused.stderr
    )


@pytest.mark.parametrize(
    "url", ["http://10.1.2.3:80", "http://example.com", "https://127.0.0.1:1", "ftp://127.0.0.1"]
)
def test_slow_clients_go_to_loopback_http_only(url):
    with pytest.raises(LoadError):
        run_slow_clients(url, clients=1, duration=1)


@pytest.mark.parametrize(
    "bad",
    [
        {"clients": 0},
        {"clients": 5000},
        {"clients": 2.5},
        {"duration": 0},
        {"duration": 3600},
        {"interval": 0},
        {"path": "hello"},
        {"path": "/a b"},
    ],
    ids=lambda d: "-".join(f"{k}={v!r}" for k, v in d.items()),
)
def test_slow_load_rejects_unbounded_or_bad_values(bad):
    with pytest.raises(LoadError, match=next(iter(bad))):
        SlowLoad(**bad)
