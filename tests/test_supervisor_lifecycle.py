"""The supervisor's workers over their lifetime (SPEC §8): app_offline and a configuration
change InProcess, the OutOfProcess web garden, and stopping: SIGTERM under load, a second
SIGINT, SIGKILL.

Real supervisors and workers in subprocesses, HTTP over real sockets, real signals; each test
about a program runs it on asyncio and on trio, and each async test runs its client on the
same backend. The helpers are ``test_supervisor.py``'s.
"""

from __future__ import annotations

import signal
import socket
import subprocess
import time
from pathlib import Path

import anyio
import anyio.to_thread
import pytest

from hostkit.testing import Program, worker_of_line, write_settings
from hostkit.testing.program import child_listening, started_children
from tests.support.fronts import child_program, front_settings
from tests.support.http import build
from tests.support.load import Sample, failed, now, run_clients
from tests.support.paths import PROGRAMS
from tests.support.processes import LOOPBACK, process_state
from tests.support.supervisors import (
    BACKENDS,
    TIMEOUT,
    get,
    pids_answering,
    port_of,
    start,
    supervised_settings,
)

pytestmark = [pytest.mark.anyio, pytest.mark.integration]


def wait_stopped(program: Program, pids: list[int]) -> None:
    """Wait until the supervisor has logged each of ``pids`` stopped."""
    for pid in pids:
        program.wait_for_line(f"worker pid {pid} stopped", TIMEOUT)


def still_there(pids: list[int]) -> list[int]:
    """The ``pids`` still there: alive, or a zombie nobody reaped."""
    return [pid for pid in pids if process_state(pid) is not None]


def listening_children(program: Program) -> list[int]:
    """The pid of every child a worker logged listening, oldest first."""
    return [listened[0] for line in list(program.lines) if (listened := child_listening(line))]


def children_by_worker(program: Program) -> dict[int, list[int]]:
    """Each worker's pid with the pids of the children it logged it started."""
    found: dict[int, list[int]] = {}
    for line in list(program.lines):
        worker = worker_of_line(line)
        if worker is not None:
            found.setdefault(worker, []).extend(pid for pid, _ in started_children([line]))
    return found


def start_garden(root: Path, backend: str, url: str = f"http://{LOOPBACK}:0") -> Program:
    """An OutOfProcess supervisor of two workers on ``url``, once each worker's child
    listens."""
    write_settings(root, front_settings(
        module={**child_program(PROGRAMS / "probe.py"), "eager_start": True},
        workers={"processes": 2}, shutdown_timeout=1))
    program = start(root, backend, url=url)
    try:
        program.wait_workers_ready(2)
        program.wait_until(lambda: len(listening_children(program)) >= 2, TIMEOUT + 10,
                           "2 children listening")
    except AssertionError:
        program.stop()
        raise
    return program


# -- 8. app_offline InProcess ------------------------------------------------------------------


async def test_app_offline_stops_the_workers_and_the_supervisor_answers_with_it(
        anyio_backend: str, tmp_path: Path) -> None:
    supervised_settings(tmp_path, {"processes": 2})
    with start(tmp_path, anyio_backend) as program:
        first = program.wait_workers_ready(2)
        port = port_of(program)
        assert (await get(port)).status == 200
        content = b"<h1>Down for maintenance</h1>"
        # Written whole, then renamed into place, as a deployment does.
        (tmp_path / "offline.tmp").write_bytes(content)
        (tmp_path / "offline.tmp").rename(tmp_path / "app_offline.htm")
        await anyio.to_thread.run_sync(wait_stopped, program, first)
        response = await get(port)
        assert response.status == 503, response
        assert bytes(response.body) == content
        assert response.header(b"content-type") == b"text/html"
        assert still_there(first) == []
        assert len(program.ready_workers()) == 2  # none starts while offline

        (tmp_path / "app_offline.htm").unlink()
        again = (await anyio.to_thread.run_sync(program.wait_workers_ready, 4, TIMEOUT))[2:]
        assert set(await pids_answering(port, 2)) == set(again)
        assert not set(again) & set(first)


# -- 9. a configuration change InProcess ---------------------------------------------------


async def test_a_configuration_change_replaces_the_workers_and_no_request_fails(
        anyio_backend: str, tmp_path: Path) -> None:
    supervised_settings(tmp_path, {"processes": 2}, probe_app={"greeting": "before"})
    with start(tmp_path, anyio_backend) as program:
        old = program.wait_workers_ready(2)
        port = port_of(program)
        request = build("GET", "/features", [("Connection", "close")])
        samples: list[Sample] = []
        stop = anyio.Event()
        async with anyio.create_task_group() as task_group:
            task_group.start_soon(run_clients, port, 4, lambda c, n: ("GET", request, ""),
                                  stop, samples, TIMEOUT, 0.01)
            await anyio.sleep(0.3)
            changed = now()
            supervised_settings(tmp_path, {"processes": 2}, probe_app={"greeting": "after"})
            await anyio.to_thread.run_sync(wait_stopped, program, old)
            replaced = now()
            await anyio.sleep(0.3)
            stop.set()
        new = program.ready_workers()[2:]
        assert len(new) == 2 and not set(new) & set(old), program.ready_workers()
        assert "configuration changed: replacing the app's processes" in program.output
        assert failed(samples) == [], failed(samples)
        assert sum(changed < s.sent < replaced for s in samples) >= 10  # during the change
        assert set(await pids_answering(port, 2)) == set(new)
        assert still_there(old) == []


# -- 10. SIGTERM under load ------------------------------------------------------------------


async def test_sigterm_under_load_answers_every_request_in_flight(anyio_backend: str,
                                                                  tmp_path: Path) -> None:
    shutdown_timeout = 2  # time enough for a request of 1 s
    supervised_settings(tmp_path, {"processes": 2}, shutdown_timeout=shutdown_timeout)
    slow, quick = build("GET", "/slow?1"), build("GET", "/features")
    samples: list[Sample] = []
    stop = anyio.Event()

    def next_request(client: int, count: int) -> tuple[str, bytes, str]:
        return ("slow", slow, "") if client % 2 == 0 else ("quick", quick, "")

    with start(tmp_path, anyio_backend) as program:
        workers = program.wait_workers_ready(2)
        async with anyio.create_task_group() as task_group:
            task_group.start_soon(run_clients, port_of(program), 16, next_request, stop,
                                  samples, TIMEOUT, 0.01)
            await anyio.sleep(1.3)  # every slow client has a request in flight
            signalled = now()
            program.signal(signal.SIGTERM)
            await anyio.sleep(1.0)  # past the slow requests' end
            stop.set()
        code = await anyio.to_thread.run_sync(program.wait_exit, TIMEOUT)
        exited = now()
    in_flight = [s for s in samples if s.sent < signalled <= s.done]
    assert failed(in_flight) == [], failed(in_flight)
    assert sum(s.kind == "slow" for s in in_flight) >= 8
    assert code == 0, program.output
    # Each worker drains within shutdown_timeout, then exits; the supervisor follows.
    assert exited - signalled < shutdown_timeout + 2, program.output
    assert still_there(workers) == []
    for pid in workers:
        assert f"worker pid {pid} stopped (exited with code 0)" in program.output


# -- 11. SIGKILL of the supervisor: tests/reliability/test_supervisor_kill.py ------------------


# -- 12. the OutOfProcess web garden ---------------------------------------------------------


async def test_an_out_of_process_web_garden_serves_from_each_workers_own_child(
        anyio_backend: str, tmp_path: Path) -> None:
    with start_garden(tmp_path, anyio_backend) as program:
        workers = program.ready_workers()
        children = children_by_worker(program)
        assert sorted(children) == sorted(workers)
        assert all(len(theirs) == 1 for theirs in children.values()), children
        own_children = {pid for theirs in children.values() for pid in theirs}
        seen = await pids_answering(port_of(program), 2)
        assert set(seen) == own_children, (seen, children)
        assert not set(seen) & {*workers, program.pid}
        assert "Supervising 2 worker processes (OutOfProcess" in program.output


# -- 13. a second SIGINT ---------------------------------------------------------------------


@pytest.mark.parametrize("backend", BACKENDS)
def test_a_second_sigint_stops_the_supervisor_and_its_workers_at_once(backend: str,
                                                                      tmp_path: Path) -> None:
    supervised_settings(tmp_path, {"processes": 2}, shutdown_timeout=30)
    with start(tmp_path, backend) as program, \
            socket.create_connection((LOOPBACK, port_of(program)), timeout=TIMEOUT) as client:
        workers = program.wait_workers_ready(2)
        client.sendall(b"GET /slow?60 HTTP/1.1\r\nHost: test\r\n\r\n")
        busy = program.wait_for_line("probe: slow request started", TIMEOUT)
        program.signal(signal.SIGINT)
        program.wait_for_line("SIGINT received: stopping gracefully", TIMEOUT)
        with pytest.raises(subprocess.TimeoutExpired):
            program.wait_exit(timeout=0.5)  # draining: the slow request is in flight
        program.signal(signal.SIGINT)
        second = time.monotonic()
        try:
            code = program.wait_exit(timeout=5)
        except subprocess.TimeoutExpired:
            raise AssertionError(f"still running 5 s after the second SIGINT:\n"
                                 f"{program.output}") from None
        stopped_after = time.monotonic() - second
        assert code == 0, program.output  # what a graceful stop exits with
        assert stopped_after < 5
        assert still_there(workers) == [], program.output
        assert "INFO: hostkit.host: SIGINT received: stopping gracefully" in program.output
        assert "WARNING: hostkit.host: SIGINT received again: stopping now" in program.output
        # The busy worker got the supervisor's second signal: it stopped at once, unkilled.
        busy_worker = worker_of_line(busy)
        assert busy_worker in workers
        assert (f"[{busy_worker}] hostkit.host: SIGINT received again: stopping now"
                in program.output)
        assert f"worker pid {busy_worker} stopped (exited with code 0)" in program.output
