"""Clients that leave in the middle of a request: no ERROR line, no traceback (issue 17.2).

Each connection sends part of a request and closes, in turn: a head cut short, a body cut
short after its ``Content-Length``, a chunked body cut short; each closed with a FIN (the
front may still answer 400) or a reset (``SO_LINGER`` 0: nobody reads an answer). Before the
fix, the front's 400 to a head whose client had reset escaped as ``ClientGone`` and was
logged as ``ERROR … error while serving a connection`` with a traceback.

CI sends 300 connections per backend; by hand, ``python -m tests.reliability.test_client_gone
10000`` sends 10 000 on each backend and prints the counts.
"""

from __future__ import annotations

import socket
import struct
import sys
import time
import urllib.request
from collections.abc import Iterator

import pytest

from tests.hardening.fronts import Front
from tests.support.processes import LOOPBACK

pytestmark = pytest.mark.integration

CI_CONNECTIONS = 300

#: What a leaving client sent before it closed.
PARTS = (
    b"GET / HTTP/1.1\r\nHost: a\r\nX-Cut-Sh",
    b"POST /whoami HTTP/1.1\r\nHost: a\r\nContent-Length: 1000\r\n\r\nabc",
    b"POST /whoami HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n10\r\nabc",
)
_RESET = struct.pack("ii", 1, 0)  # SO_LINGER on, 0 s: close() sends a RST


def leave_mid_request(port: int, count: int) -> None:
    """Open ``count`` connections one after another; each sends one of :data:`PARTS` and
    closes, with a FIN for the first half of each six and a reset for the second."""
    for number in range(count):
        with socket.create_connection((LOOPBACK, port), timeout=10) as sock:
            sock.sendall(PARTS[number % len(PARTS)])
            if number % (2 * len(PARTS)) >= len(PARTS):
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, _RESET)


def open_connections(port: int) -> int:
    """How many TCP connections accepted on ``port`` the kernel still has open on the
    server's side (established, or closed by the peer and not yet by the server)."""
    count = 0
    with open("/proc/net/tcp") as table:
        for line in list(table)[1:]:
            fields = line.split()
            local_port = int(fields[1].rpartition(":")[2], 16)
            if local_port == port and fields[3] in ("01", "08"):  # ESTABLISHED, CLOSE_WAIT
                count += 1
    return count


def wait_all_closed(port: int, timeout: float) -> None:
    """Return once the front has closed every connection on ``port``; AssertionError after
    ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while open_connections(port):
        assert time.monotonic() < deadline, f"{open_connections(port)} connections still open"
        time.sleep(0.05)


def get(front: Front, path: str) -> bytes:
    with urllib.request.urlopen(f"{front.url}{path}", timeout=15) as response:
        return response.read()  # type: ignore[no-any-return]


def run(front: Front, count: int) -> tuple[list[str], list[str]]:
    """Send ``count`` leaving clients to ``front`` and wait until it is done with them.
    Returns the front's ERROR lines and traceback lines written meanwhile."""
    assert get(front, "/") == b"hello"  # the child is up: the clients meet a working front
    first = len(front.lines)
    leave_mid_request(front.port, count)
    wait_all_closed(front.port, 60)
    # A request through the child after every connection closed: what the front logged of
    # them (after closing them) is written before this request's own line.
    assert get(front, "/?after-the-leaving-clients") == b"hello"
    front.wait_for_line("after-the-leaving-clients")
    lines = front.lines[first:]
    return ([line for line in lines if "ERROR" in line],
            [line for line in lines if "Traceback" in line])


@pytest.fixture(scope="module", params=["asyncio", "trio"])
def front(request: pytest.FixtureRequest) -> Iterator[Front]:
    with Front(request.param) as started:
        yield started


def test_clients_leaving_mid_request_log_no_error(front: Front) -> None:
    errors, tracebacks = run(front, CI_CONNECTIONS)
    assert errors == [] and tracebacks == [], "\n".join(errors + tracebacks)
    # Each cut-short body is recorded: 400 after a FIN (the client may read it), 499 after
    # a reset (no response started).
    bodies = [line for line in front.lines if '"POST /whoami HTTP/1.1"' in line]
    statuses = {line.split('"')[2].split()[0] for line in bodies}
    assert statuses == {"400", "499"}, bodies[:6]


def main(count: int) -> None:
    for backend in ("asyncio", "trio"):
        with Front(backend) as started:
            began = time.monotonic()
            errors, tracebacks = run(started, count)
            print(f"{backend}: {count} leaving clients in {time.monotonic() - began:.1f} s: "
                  f"{len(errors)} ERROR lines, {len(tracebacks)} tracebacks")


if __name__ == "__main__":
    main(int(sys.argv[1]) if len(sys.argv) > 1 else CI_CONNECTIONS)
