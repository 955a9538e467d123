"""The supervisor end to end (SPEC §8): the web garden, crash restart, rapid-fail protection,
failed starts, bad settings, and the warning of a host without a supervisor.

Real supervisors and workers in subprocesses (``tests/programs/supervised_probe.py``, the
probe with start failures on demand), HTTP over real sockets; each test about a program runs
it on asyncio and on trio, and each async test runs its client on the same backend. The
recovery from rapid-fail protection runs a :class:`hostkit.supervisor.Supervisor` in this
process, with a rapid-fail "minute" of a few seconds. Lifecycle (app_offline, configuration
change, stopping, SIGKILL) is in ``test_supervisor_lifecycle.py``.
"""

from __future__ import annotations

import logging
import os
import re
import signal
import socket
import time
from pathlib import Path
from typing import Any

import anyio
import pytest

from hostkit.asgi import Receive, Scope, Send
from hostkit.configuration import load_configuration
from hostkit.content_root import ContentRootRules
from hostkit.server_contract import HostRole
from hostkit.supervisor import Supervisor
from hostkit.testing import Program, python, write_settings
from tests.support.paths import PROGRAMS
from tests.support.processes import LOOPBACK, process_state

pytestmark = [pytest.mark.anyio, pytest.mark.integration]

from tests.support.supervisors import (
    BACKENDS,
    FAILED_START,
    RAPID_FAIL,
    SUPERVISED,
    TIMEOUT,
    assert_503_retry_after,
    get,
    pids_answering,
    port_of,
    served_by,
    start,
    supervised_settings,
    worker_lines,
)

# -- 1. the web garden ----------------------------------------------------------------------


@pytest.mark.parametrize(("backend", "how"), [("asyncio", "settings"), ("trio", "settings"),
                                              ("asyncio", "--workers 2")])
def test_two_workers_serve_and_the_supervisor_does_not(backend: str, how: str,
                                                       tmp_path: Path) -> None:
    if how == "settings":
        supervised_settings(tmp_path, {"processes": 2})
        arguments: tuple[str, ...] = ()
    else:
        write_settings(tmp_path, {"shutdown_timeout": 1})
        arguments = ("--workers", "2")
    with start(tmp_path, backend, *arguments) as program:
        workers = program.wait_workers_ready(2)
        seen = anyio.run(pids_answering, port_of(program), 2, backend=backend)
        assert set(seen) == set(workers), (seen, workers)
        assert len(set(workers)) == 2
        assert program.pid not in seen
        assert "Supervising 2 worker processes (InProcess, server hypercorn)" in program.output


# -- 2. crash restart -----------------------------------------------------------------------


async def test_a_worker_killed_with_sigkill_is_replaced(anyio_backend: str,
                                                        tmp_path: Path) -> None:
    supervised_settings(tmp_path, {"processes": 2})
    with start(tmp_path, anyio_backend) as program:
        killed, survivor = program.wait_workers_ready(2)
        os.kill(killed, signal.SIGKILL)
        program.wait_for_line(f"worker pid {killed} killed by SIGKILL", TIMEOUT)
        replacement = program.wait_workers_ready(3, TIMEOUT)[2]
        assert replacement not in (killed, survivor)
        seen = await pids_answering(port_of(program), 2)
        assert set(seen) == {survivor, replacement}, seen
        assert process_state(killed) is None  # reaped, not a zombie
        assert program.running


# -- 3. rapid-fail protection ----------------------------------------------------------------


async def test_crash_looping_workers_get_503_with_retry_after(anyio_backend: str,
                                                              tmp_path: Path) -> None:
    supervised_settings(tmp_path, {"processes": 2, "rapid_fails_per_minute": 1},
                        worker_start={"mode": "exit"})
    with start(tmp_path, anyio_backend) as program:
        program.wait_for_line(RAPID_FAIL, TIMEOUT)
        port = port_of(program)
        for _ in range(5):  # for about a second: no worker starts any more
            retry_after = assert_503_retry_after(await get(port, "/"))
            assert retry_after <= 60
            await anyio.sleep(0.2)
        # Two failures exhaust the budget; a start already under way in the other slot may
        # fail after them, then nothing starts for the rest of the minute.
        assert program.output.count(FAILED_START) in (2, 3), program.output
        assert "exited with code 3 " + FAILED_START in program.output
        assert program.ready_workers() == []
        assert program.running


async def _app_never_called(scope: Scope, receive: Receive, send: Send) -> None:
    raise AssertionError("a supervisor serves through its workers, never its app")


async def test_crash_looping_workers_recover_once_the_window_has_passed(
        anyio_backend: str, tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="hostkit.supervisor")
    write_settings(tmp_path, {
        "urls": [f"http://{LOOPBACK}:0"], "shutdown_timeout": 1,
        "workers": {"processes": 1, "supervise": True, "rapid_fails_per_minute": 1},
        "worker_start": {"mode": "exit_until_fixed", "fixed_by": "fixed"}})
    configuration = load_configuration([], {}, content_root=tmp_path)
    supervisor = Supervisor(
        configuration, worker_role=HostRole.SERVE, rules=ContentRootRules(),
        command=python(str(SUPERVISED), f"--content_root={tmp_path}",
                       f"--async_backend={anyio_backend}"), rapid_fail_window=3)
    stopping = anyio.Event()
    with anyio.fail_after(30):
        async with anyio.create_task_group() as task_group:
            (url,) = await task_group.start(supervisor.serve, _app_never_called, stopping)
            port = int(url.rpartition(":")[2])
            while RAPID_FAIL not in caplog.text:  # the second failed start exhausts it
                await anyio.sleep(0.05)
            assert_503_retry_after(await get(port, "/"))
            (tmp_path / "fixed").touch()
            fixed_at = time.monotonic()
            statuses: list[int] = []
            while not statuses or statuses[-1] != 200:
                assert time.monotonic() - fixed_at < 10, (statuses, caplog.text)
                statuses.append((await get(port)).status)
                await anyio.sleep(0.1)
            assert set(statuses[:-1]) <= {503}, statuses
            worker = await served_by(port)
            assert worker != os.getpid()
            assert f"worker pid {worker} ready after" in caplog.text
            stopping.set()
    assert process_state(worker) is None  # stopped and reaped with the supervisor
    assert f"worker pid {worker} stopped (exited with code 0)" in caplog.text


# -- 4. an app that cannot start --------------------------------------------------------------


def _cannot_import(backend: str) -> list[str]:
    return python("-m", "hostkit", "run", "nosuchmodule:app", f"--urls=http://{LOOPBACK}:0",
                  f"--async_backend={backend}")


def _lifespan_fails(backend: str) -> list[str]:
    return python(str(PROGRAMS / "failing_start.py"), f"--urls=http://{LOOPBACK}:0",
                  f"--async_backend={backend}")


@pytest.mark.parametrize(("command", "cause"), [
    (_cannot_import, "No module named 'nosuchmodule'"),
    (_lifespan_fails, "database unreachable (on purpose)"),
], ids=["import fails", "lifespan startup fails"])
async def test_an_app_that_cannot_start_is_a_failed_start(anyio_backend: str, command: Any,
                                                          cause: str, tmp_path: Path) -> None:
    supervised_settings(tmp_path, {"supervise": True, "rapid_fails_per_minute": 1})
    with start(tmp_path, anyio_backend, command=command(anyio_backend)) as program:
        program.wait_for_line(RAPID_FAIL, TIMEOUT)
        assert_503_retry_after(await get(port_of(program), "/"))
        assert program.output.count("exited with code 1 " + FAILED_START) == 2, program.output
        said = [line for line in worker_lines(program) if "the app failed to start" in line]
        assert len(said) == 2, program.output  # each worker said it, and why:
        assert program.output.count(cause) >= 2
        assert program.ready_workers() == []
        assert not any("Application started." in line for line in worker_lines(program))


# -- 5. startup_time_limit -------------------------------------------------------------------


@pytest.mark.parametrize("backend", BACKENDS)
def test_a_worker_not_ready_within_the_startup_time_limit_is_killed(backend: str,
                                                                   tmp_path: Path) -> None:
    supervised_settings(tmp_path, {"supervise": True, "startup_time_limit": 1,
                                   "rapid_fails_per_minute": 0},
                        worker_start={"mode": "hang"})
    with Program(python(str(SUPERVISED), f"--urls=http://{LOOPBACK}:0",
                        f"--async_backend={backend}"), cwd=tmp_path) as program:
        line = program.wait_for_line(
            "did not report ready within workers.startup_time_limit = 1 s; killing it", TIMEOUT)
        killed_at = program.line_time("workers.startup_time_limit = 1 s")
        assert killed_at is not None and 1 <= killed_at - program.started_at <= 6
        match = re.search(r"worker pid (\d+) did not report ready", line)
        assert match is not None
        program.wait_for_line(RAPID_FAIL, TIMEOUT)  # the kill counted as a failure
        program.wait_started()
        assert process_state(int(match.group(1))) is None  # killed and reaped
        assert program.ready_workers() == []


# -- 6. bad input ----------------------------------------------------------------------------


# The settings are read before an event loop runs: each value once, the backends in turn.
@pytest.mark.parametrize(("backend", "key", "value", "shown", "allowed"), [
    ("asyncio", "processes", 0, "0", "a whole number at least 1 and at most 256"),
    ("trio", "processes", -1, "-1", "a whole number at least 1 and at most 256"),
    ("asyncio", "processes", "two", "'two'", "a whole number at least 1 and at most 256"),
    ("trio", "processes", 1.5, "1.5", "a whole number at least 1 and at most 256"),
    ("asyncio", "rapid_fails_per_minute", -1, "-1", "a whole number at least 0"),
])
def test_a_bad_workers_setting_is_one_error_line(backend: str, key: str, value: object,
                                                 shown: str, allowed: str,
                                                 tmp_path: Path) -> None:
    supervised_settings(tmp_path, {key: value})
    with Program(python(str(SUPERVISED), f"--urls=http://{LOOPBACK}:0",
                        f"--async_backend={backend}"), cwd=tmp_path) as program:
        assert program.wait_exit(TIMEOUT) == 1
    (line,) = program.lines
    assert str(tmp_path / "hostkit.toml") in line
    assert f"invalid value {shown} for 'workers.{key}'; allowed: {allowed}" in line


@pytest.mark.parametrize("backend", BACKENDS)
def test_an_address_in_use_is_one_error_line_and_no_worker(backend: str,
                                                           tmp_path: Path) -> None:
    supervised_settings(tmp_path, {"processes": 2})
    with socket.socket() as taken:
        taken.bind((LOOPBACK, 0))
        taken.listen()
        url = f"http://{LOOPBACK}:{taken.getsockname()[1]}"
        with Program(python(str(SUPERVISED), f"--urls={url}", f"--async_backend={backend}"),
                     cwd=tmp_path) as program:
            assert program.wait_exit(TIMEOUT) == 1
    (line,) = program.lines
    assert f"cannot listen on {url}: address already in use" in line


# -- 7. without a supervisor -----------------------------------------------------------------


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("cause", ["app_offline_file set", "app_offline.htm exists"])
def test_a_plain_inprocess_host_warns_that_the_rules_need_a_supervisor(
        backend: str, cause: str, tmp_path: Path) -> None:
    if cause == "app_offline_file set":
        write_settings(tmp_path, {"module": {"app_offline_file": "down.htm"}})
        expected = "sets module.app_offline_file, which an InProcess host applies only under"
    else:
        write_settings(tmp_path, {})
        (tmp_path / "app_offline.htm").write_text("down")
        expected = "app_offline.htm exists but an InProcess host takes itself offline only"
    with start(tmp_path, backend) as program:
        warning = program.wait_for_line(expected)
        assert "supervise = true" in warning
        assert program.ready_workers() == []  # one plain process: no supervisor
        assert anyio.run(served_by, port_of(program), backend=backend) == program.pid


@pytest.mark.parametrize("backend", BACKENDS)
def test_under_a_supervisor_there_is_no_such_warning(backend: str, tmp_path: Path) -> None:
    supervised_settings(tmp_path, {"supervise": True},
                        module={"app_offline_file": "down.htm",
                                "restart_on_config_change": True})
    with start(tmp_path, backend) as program:
        (worker,) = program.wait_workers_ready(1)
        assert anyio.run(served_by, port_of(program), backend=backend) == worker
        program.stop()
    assert "Application stopped." in program.output
    assert "supervise = true" not in program.output  # neither the supervisor nor its worker

