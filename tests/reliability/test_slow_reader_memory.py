"""Slow readers of a large response cost the OutOfProcess front a bounded buffer each, and
the memory goes back to the system once they leave (issue 17.1).

100 clients with a 1 KB receive window ask for a 10 MB streamed response
(``tests/programs/stream_app.py``, three requests pipelined, as ``slowhttptest -X -k 3``
does) and read nothing. The front's resident memory may grow by at most
:data:`PER_CONNECTION` bytes per slow client while they hold their responses: its buffers
(one read of the child's response, the client transport's) and the connection's objects.
Before the fix the front read the child's response up to 512 KB ahead of each client and
held every chunk twice while it waited (about 580 KB a client). Once the clients close, the
front's memory falls back to within :data:`RELEASED` of where it began within 30 s (glibc
kept the freed memory before: ``hostkit.memory``). A normal client is served meanwhile.

By hand, the figures of the issue: ``slowhttptest -X -c 1000 -r 200 -w 512 -y 1024 -n 5 -z 32
-k 3 -l 20 -u http://127.0.0.1:PORT/big`` against the same program.
"""

from __future__ import annotations

import socket
import time
import urllib.request
from collections.abc import Iterator

import pytest

from tests.hardening.fronts import Front
from tests.support.paths import PROGRAMS
from tests.support.processes import LOOPBACK

pytestmark = pytest.mark.integration

CLIENTS = 100
PER_CONNECTION = 250 * 1024
RELEASED = 12 * 1024 * 1024
_REQUEST = b"GET /big HTTP/1.1\r\nHost: test\r\n\r\n"


def rss(pid: int) -> int:
    """The resident memory of process ``pid``, in bytes."""
    with open(f"/proc/{pid}/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    raise AssertionError(f"no VmRSS for {pid}")


def settled_peak(pid: int, seconds: float) -> int:
    """The highest resident memory of ``pid`` seen over ``seconds`` (sampled every 0.1 s)."""
    peak = 0
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        peak = max(peak, rss(pid))
        time.sleep(0.1)
    return peak


def slow_reader(port: int) -> socket.socket:
    """A connection with a 1 KB receive window that asks for /big three times and reads
    nothing."""
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1024)
    sock.connect((LOOPBACK, port))
    sock.sendall(_REQUEST * 3)
    return sock


def get(front: Front, path: str) -> bytes:
    with urllib.request.urlopen(f"{front.url}{path}", timeout=10) as response:
        return response.read()  # type: ignore[no-any-return]


@pytest.fixture(params=["asyncio", "trio"])
def front(request: pytest.FixtureRequest) -> Iterator[Front]:
    with Front(request.param, program=PROGRAMS / "stream_app.py") as started:
        yield started


def test_slow_readers_cost_a_bounded_buffer_given_back_after(front: Front) -> None:
    assert len(get(front, "/big")) == 10_000_000  # the child runs; a fast reader is served
    baseline = settled_peak(front.pid, 1.0)
    readers = [slow_reader(front.port) for _ in range(CLIENTS)]
    try:
        began = time.monotonic()
        assert get(front, "/") == b"hello"  # a normal client meanwhile
        served_in = time.monotonic() - began
        peak = settled_peak(front.pid, 4.0)
    finally:
        for sock in readers:
            sock.close()
    growth = peak - baseline
    assert growth <= CLIENTS * PER_CONNECTION, \
        f"{growth / CLIENTS / 1024:.0f} KB per slow reader ({growth >> 20} MB)"
    assert served_in < 5, served_in
    deadline = time.monotonic() + 30
    while rss(front.pid) - baseline > RELEASED and time.monotonic() < deadline:
        time.sleep(0.5)
    left = rss(front.pid) - baseline
    assert left <= RELEASED, f"{left >> 20} MB still held 30 s after the slow readers left"


def test_memory_is_given_back_once_a_burst_has_fallen_to_a_quarter() -> None:
    from hostkit.memory import BURST, ConnectionMemory

    memory = ConnectionMemory()
    for _ in range(BURST - 1):
        memory.opened()
    assert not any(memory.closed() for _ in range(BURST - 1))  # too few to be a burst
    for _ in range(100):
        memory.opened()
    trims = [memory.closed() for _ in range(100)]
    assert trims.index(True) == 74 and trims.count(True) == 1  # at 25 open of a peak of 100
