"""A second SIGINT stops an InProcess host at once, on asyncio and trio, in the drain and in
the app's own shutdown.

The first SIGINT starts the graceful stop, which waits up to ``shutdown_timeout`` (30 s here)
for a request that would take 60 s; the second cuts that wait short: the process exits within
a few seconds, with the status of a normal stop, and the cut request gets no answer.
"""

from __future__ import annotations

import signal
import socket
import subprocess
from pathlib import Path

import pytest

from hostkit.testing import Program, python, write_settings
from tests.support.paths import PROGRAMS
from tests.support.processes import LOOPBACK

pytestmark = pytest.mark.integration

#: How long the in-flight request would take, and the graceful stop would wait for it.
REQUEST_SECONDS = 60
SHUTDOWN_TIMEOUT = 30
#: How long the host has to exit after the second signal.
STOP_NOW_WITHIN = 3.0


def _port(url: str) -> int:
    return int(url.rpartition(":")[2])


def _second_sigint_ends(program: Program) -> int:
    """SIGINT ``program`` and return its exit code; AssertionError unless it exits within
    :data:`STOP_NOW_WITHIN` seconds."""
    program.signal(signal.SIGINT)
    try:
        return program.wait_exit(timeout=STOP_NOW_WITHIN)
    except subprocess.TimeoutExpired:
        raise AssertionError(f"still running {STOP_NOW_WITHIN:g} s after the second SIGINT; "
                             f"output:\n{program.output}") from None


@pytest.mark.parametrize("backend", ["asyncio", "trio"])
def test_second_sigint_stops_at_once_with_a_request_in_flight(backend: str,
                                                               tmp_path: Path) -> None:
    write_settings(tmp_path, {"hosting_model": "InProcess", "shutdown_timeout": SHUTDOWN_TIMEOUT})
    with Program(python(str(PROGRAMS / "probe.py"), f"--urls=http://{LOOPBACK}:0",
                        f"--async_backend={backend}"), cwd=tmp_path) as program, \
            socket.create_connection((LOOPBACK, _port(program.wait_started()[0])),
                                     timeout=10) as client:
        client.sendall(f"GET /slow?{REQUEST_SECONDS} HTTP/1.1\r\nHost: test\r\n\r\n".encode())
        program.wait_for_line("probe: slow request started")

        program.signal(signal.SIGINT)
        program.wait_for_line("SIGINT received: stopping gracefully")
        with pytest.raises(subprocess.TimeoutExpired):
            program.wait_exit(timeout=1)  # still draining: the request is in flight
        client.setblocking(False)
        with pytest.raises(BlockingIOError):
            client.recv(1)  # no answer yet, and the connection is open

        code = _second_sigint_ends(program)

        assert code == 0, program.output  # what a graceful stop exits with
        assert "SIGINT received again: stopping now" in program.output
        assert "Application stopped." in program.output
        client.settimeout(5)
        try:
            answer = client.recv(65536)
        except ConnectionResetError:
            answer = b""
        assert answer == b"", answer  # the request was cut, not answered


@pytest.mark.parametrize("backend", ["asyncio", "trio"])
def test_second_signal_cuts_a_slow_app_shutdown_short(backend: str, tmp_path: Path) -> None:
    write_settings(tmp_path, {"shutdown_timeout": SHUTDOWN_TIMEOUT})
    with Program(python(str(PROGRAMS / "slow_shutdown.py"), f"--urls=http://{LOOPBACK}:0",
                        f"--async_backend={backend}"), cwd=tmp_path) as program:
        program.wait_started()
        program.signal(signal.SIGTERM)
        program.wait_for_line("slow_shutdown: shutting down")
        code = _second_sigint_ends(program)
        assert code == 0, program.output
        assert "SIGINT received again: stopping now" in program.output
