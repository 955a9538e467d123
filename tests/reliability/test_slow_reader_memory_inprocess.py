"""Slow readers InProcess cost a bounded buffer each, and a reader that leaves ends its
requests at once.

100 clients with a 4 KB receive buffer each ask for a 10 MB response sent in 2 MiB chunks
(the same chunk objects for every client, so the app holds nothing per connection and what
the server's memory grows by is the server's own), two requests pipelined per connection,
and read nothing. A normal client is served meanwhile. Without a bound, asyncio's transport
buffers the rest of each chunk it cannot send (over 1 MB per reader); hostkit's writes add
at most 32 KiB to a transport, so the growth stays under 15 MB. On trio a write holds no
copy. Then the readers leave: each connection's first request ends (one access-log line
each), the pipelined second is never started (without the fix it was, on both backends,
and answered into the void), and the memory is given back (``malloc_trim``).

The full figures (slowhttptest -X with 1000 connections) are in the report of issue 17.
"""

from __future__ import annotations

import socket
import time
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlsplit

import pytest

from hostkit.testing import Program, python, write_settings
from tests.support.paths import PROGRAMS

pytestmark = pytest.mark.integration

READERS = 100
ROUTE = "/stream?chunk=2097152&shared"
#: Growth allowed while the readers wait (150 KB each; unbounded it is over 1 MB each).
GROWTH_LIMIT_KB = 15 * 1024


def _rss_kb(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise AssertionError(f"no VmRSS for pid {pid}")


def _get(port: int, target: str, timeout: float = 5) -> bytes:
    """A whole answer to one ``GET`` (``Connection: close``) from a fresh connection."""
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as sock:
        sock.sendall(f"GET {target} HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n".encode())
        chunks = []
        while chunk := sock.recv(1 << 16):
            chunks.append(chunk)
    return b"".join(chunks)


def _slow_reader(port: int) -> socket.socket:
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)  # before connect: the window
    sock.settimeout(5)
    sock.connect(("127.0.0.1", port))
    request = f"GET {ROUTE} HTTP/1.1\r\nHost: t\r\n\r\n".encode()
    sock.sendall(request * 2)
    return sock


@pytest.fixture(params=["asyncio", "trio"])
def server(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[tuple[Program, int]]:
    write_settings(tmp_path, {"hosting_model": "InProcess", "shutdown_timeout": 5})
    with Program(python(str(PROGRAMS / "stream_10mb.py"), "--urls=http://127.0.0.1:0",
                        f"--async_backend={request.param}"), cwd=tmp_path) as program:
        port = urlsplit(program.wait_started()[0]).port
        assert port is not None
        yield program, port


def test_slow_readers_cost_a_bounded_buffer_and_leave_at_once(server: tuple[Program, int]
                                                               ) -> None:
    program, port = server
    # Warm up: the shared chunks are made once, by the first request for them.
    assert len(_get(port, ROUTE, timeout=20)) > 10 * 2**20
    time.sleep(0.5)
    before = _rss_kb(program.pid)
    readers = [_slow_reader(port) for _ in range(READERS)]
    try:
        peak = before
        served = []
        deadline = time.monotonic() + 3
        while time.monotonic() < deadline:  # the readers wait; a normal client is served
            started = time.monotonic()
            served.append((_get(port, "/").endswith(b"\r\n\r\nok"), time.monotonic() - started))
            peak = max(peak, _rss_kb(program.pid))
            time.sleep(0.2)
        assert all(ok for ok, _ in served), served
        assert max(seconds for _, seconds in served) < 5, served
        assert peak - before < GROWTH_LIMIT_KB, f"{READERS} slow readers: +{peak - before} kB"
    finally:
        for sock in readers:
            sock.close()  # with unread bytes: the kernel resets the connection

    # Each reader's first request ends (the warm-up's line is the first), its second never
    # starts.
    program.wait_for_count("GET /stream?", READERS + 1, timeout=10)
    time.sleep(2)  # the trim's settling time, and time for a wrongly started second request
    assert program.output.count("GET /stream?") == READERS + 1
    assert _rss_kb(program.pid) - before < GROWTH_LIMIT_KB
    assert "socket.send() raised exception" not in program.output
    assert "Traceback" not in program.output
