"""A stop InProcess does not wait for a client that has left.

A client asks for a 10 MB response with 50 more requests pipelined behind it, reads a little
and stops reading; the host gets SIGTERM while that response is being written; then the
client leaves (closes its socket with unread bytes: a reset). The connection ends at once:
the host exits well within ``shutdown_timeout``, none of the pipelined requests is started,
and the stop logs no traceback and no ``socket.send() raised exception``. Without the fix,
on asyncio the drain waited the whole ``shutdown_timeout``, logged that warning for every
write after the client left and ended with a ``CancelledError`` traceback; on trio the
pipelined requests were served into the void.

A client that stays but does not read is closed at the end of ``shutdown_timeout`` (on trio
hypercorn's write to it is shielded from cancellation: without the fix the stop waited for
that client for ever).
"""

from __future__ import annotations

import signal
import socket
import time
from pathlib import Path
from urllib.parse import urlsplit

import pytest

from hostkit.testing import Program, python, write_settings
from tests.support.paths import PROGRAMS

pytestmark = pytest.mark.integration

SHUTDOWN_TIMEOUT = 15
PIPELINED = 50


def _start(backend: str, root: Path, shutdown_timeout: float) -> tuple[Program, int]:
    write_settings(root, {"hosting_model": "InProcess", "shutdown_timeout": shutdown_timeout})
    program = Program(python(str(PROGRAMS / "stream_10mb.py"), "--urls=http://127.0.0.1:0",
                             f"--async_backend={backend}"), cwd=root)
    try:
        port = urlsplit(program.wait_started()[0]).port
    except BaseException:
        program.stop()
        raise
    assert port is not None
    return program, port


def _stop_reading_after_the_head(port: int, pipelined: int) -> socket.socket:
    """A client asking for ``1 + pipelined`` 10 MB responses, which reads the first head and
    then nothing."""
    client = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    client.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    client.settimeout(5)
    client.connect(("127.0.0.1", port))
    client.sendall(b"GET /stream HTTP/1.1\r\nHost: t\r\n\r\n" * (1 + pipelined))
    assert client.recv(1024).startswith(b"HTTP/1.1 200 OK\r\n")
    time.sleep(1)  # the server fills the buffers and waits for the client to read
    return client


@pytest.mark.parametrize("backend", ["asyncio", "trio"])
def test_a_client_that_left_does_not_hold_up_the_stop(backend: str, tmp_path: Path) -> None:
    program, port = _start(backend, tmp_path, SHUTDOWN_TIMEOUT)
    with program:
        client = _stop_reading_after_the_head(port, PIPELINED)
        try:
            program.signal(signal.SIGTERM)
            program.wait_for_line("SIGTERM received", timeout=5)
            time.sleep(0.5)
        finally:
            client.close()  # the client leaves, its unread bytes make it a reset
        left_at = time.monotonic()
        assert program.wait_exit(timeout=SHUTDOWN_TIMEOUT + 10) == 0, program.output
        stopped_in = time.monotonic() - left_at
        output = program.output
    assert stopped_in < 5, f"stopped {stopped_in:.1f} s after the client left:\n{output}"
    assert output.count("GET /stream") <= 1, output  # no pipelined request was started
    assert "socket.send() raised exception" not in output
    assert "Traceback" not in output, output
    assert "CancelledError" not in output, output


@pytest.mark.parametrize("backend", ["asyncio", "trio"])
def test_a_client_that_stays_and_does_not_read_is_closed_at_the_drains_end(
        backend: str, tmp_path: Path) -> None:
    shutdown_timeout = 2
    program, port = _start(backend, tmp_path, shutdown_timeout)
    with program:
        client = _stop_reading_after_the_head(port, 0)
        with client:
            program.signal(signal.SIGTERM)
            signalled_at = time.monotonic()
            assert program.wait_exit(timeout=shutdown_timeout + 15) == 0, program.output
            stopped_in = time.monotonic() - signalled_at
        output = program.output
    assert shutdown_timeout <= stopped_in < shutdown_timeout + 3, output
    assert "Traceback" not in output, output
    assert "socket.send() raised exception" not in output
