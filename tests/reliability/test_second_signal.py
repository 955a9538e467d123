"""A second SIGINT stops an InProcess host at once, on asyncio and trio, in the drain and in
the app's own shutdown; and an OutOfProcess front with its children: the front passes the
second signal on (the child stops at once too) instead of giving the child its whole
``module.shutdown_time_limit``.

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
from tests.support.fronts import child_program, front_settings
from tests.support.paths import PROGRAMS
from tests.support.processes import LOOPBACK, process_alive

pytestmark = pytest.mark.integration

#: How long the in-flight request would take, and the graceful stop would wait for it.
REQUEST_SECONDS = 60
SHUTDOWN_TIMEOUT = 30
#: How long the host has to exit after the second signal.
STOP_NOW_WITHIN = 3.0
#: How long a front has, its child stopping at once too (a second process's exit).
FRONT_STOP_NOW_WITHIN = 6.0


def _port(url: str) -> int:
    return int(url.rpartition(":")[2])


def _second_sigint_ends(program: Program, within: float = STOP_NOW_WITHIN) -> int:
    """SIGINT ``program`` and return its exit code; AssertionError unless it exits within
    ``within`` seconds."""
    program.signal(signal.SIGINT)
    try:
        return program.wait_exit(timeout=within)
    except subprocess.TimeoutExpired:
        raise AssertionError(f"still running {within:g} s after the second SIGINT; "
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


@pytest.mark.parametrize("backend", ["asyncio", "trio"])
def test_second_sigint_stops_a_front_and_its_child_at_once(backend: str,
                                                           tmp_path: Path) -> None:
    # The child would get 30 s to drain (module.shutdown_time_limit) and drain 30 s itself.
    write_settings(tmp_path, front_settings(
        shutdown_timeout=SHUTDOWN_TIMEOUT,
        module={**child_program(PROGRAMS / "probe.py"), "stdout_log_enabled": False,
                "shutdown_time_limit": SHUTDOWN_TIMEOUT}))
    with Program(python(str(PROGRAMS / "probe.py"), f"--urls=http://{LOOPBACK}:0",
                        f"--async_backend={backend}"), cwd=tmp_path) as front, \
            socket.create_connection((LOOPBACK, _port(front.wait_started()[0])),
                                     timeout=10) as client:
        client.sendall(f"GET /slow?{REQUEST_SECONDS} HTTP/1.1\r\nHost: test\r\n\r\n".encode())
        front.wait_for_line("probe: slow request started")  # in the child, relayed
        ((child, _),) = front.started_children()

        front.signal(signal.SIGINT)
        front.wait_for_line("SIGINT received: stopping gracefully")
        with pytest.raises(subprocess.TimeoutExpired):
            front.wait_exit(timeout=1)  # still draining: the request is in flight

        code = _second_sigint_ends(front, FRONT_STOP_NOW_WITHIN)

        assert code == 0, front.output
        assert "SIGINT received again: stopping now" in front.output
        # The child was stopped at once, not killed after module.shutdown_time_limit:
        assert f"child: [{child}] WARNING: hostkit.host: SIGINT received again: stopping now" \
            in front.output or f"child: [{child}] WARNING: hostkit.host: SIGTERM received " \
            "again: stopping now" in front.output, front.output
        assert f"child pid {child} stopped (exited with code 0)" in front.output
        assert not process_alive(child)
