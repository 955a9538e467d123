"""InProcess start failures: ``capture_startup_errors`` and ``startup_time_limit`` (SPEC §3).

- ``capture_startup_errors = false``: a lifespan startup that raises, a program's own setup
  that fails after ``build()`` (``Host.fail_startup``) and ``hostkit run`` with a module that
  does not import each log the error and exit with status 3 (uvicorn's), instead of serving
  500.30; ``Host.run_async`` raises :class:`hostkit.lifespan.AppStartError`.
- ``startup_time_limit``: a lifespan startup that hangs is a start failure after that many
  seconds: the 500.37 page (requests that waited for the app get it too) and a log line
  naming the setting and its value; with ``capture_startup_errors = false``, exit status 3.

Real programs on real sockets, on asyncio and trio.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import anyio
import httpx
import pytest

import hostkit
from hostkit.configuration import load_configuration
from hostkit.lifespan import AppStartError, Lifespan
from hostkit.plugin_manager import Plugins
from hostkit.testing import Program, python
from tests.support.paths import PROGRAMS

pytestmark = [pytest.mark.anyio, pytest.mark.integration]

TIMEOUT = 20.0
EXIT_STATUS = 3
NOT_CAPTURED = "exiting with status 3 (capture_startup_errors = false)"
TIME_LIMIT_PAGE = "500.37 Failed to Start Within Startup Time Limit"


def _program(script: str, backend: str, *args: str) -> list[str]:
    return python(str(PROGRAMS / script), "--urls=http://127.0.0.1:0",
                  f"--async_backend={backend}", *args)


def _exit_status(program: Program) -> int:
    try:
        return program.wait_exit(TIMEOUT)
    except Exception:
        raise AssertionError(f"still running; output:\n{program.output}") from None


# -- capture_startup_errors = false --------------------------------------------------------


@pytest.mark.parametrize(("script", "cause"), [
    ("failing_start.py", "RuntimeError: database unreachable (on purpose)"),
    ("setup_failure.py", "FileNotFoundError: settings.json is missing (on purpose)"),
], ids=["lifespan startup raises", "setup after build fails"])
async def test_without_capture_a_start_failure_exits_with_status_3(
        anyio_backend: str, tmp_path: Path, script: str, cause: str) -> None:
    with Program(_program(script, anyio_backend, "--capture_startup_errors=false"),
                 cwd=tmp_path) as program:
        code = await anyio.to_thread.run_sync(_exit_status, program)
    assert code == EXIT_STATUS, program.output
    assert program.output.count(NOT_CAPTURED) == 1, program.output
    assert cause in program.output  # the error, with its traceback
    assert "Traceback (most recent call last)" in program.output
    assert "Application started." not in program.output


async def test_without_capture_a_setup_failure_never_listens(anyio_backend: str,
                                                             tmp_path: Path) -> None:
    """A failure known before the host runs (``fail_startup``) ends it before it binds."""
    with Program(_program("setup_failure.py", anyio_backend, "--capture_startup_errors=false"),
                 cwd=tmp_path) as program:
        code = await anyio.to_thread.run_sync(_exit_status, program)
    assert code == EXIT_STATUS
    assert "Now listening on" not in program.output


async def test_hostkit_run_exits_with_status_3_when_the_module_does_not_import(
        anyio_backend: str) -> None:
    with Program(python("-m", "hostkit", "run", "broken_import:app",
                        "--urls=http://127.0.0.1:0", f"--async_backend={anyio_backend}",
                        "--capture_startup_errors=false"), cwd=PROGRAMS) as program:
        code = await anyio.to_thread.run_sync(_exit_status, program)
    assert code == EXIT_STATUS, program.output
    assert "ImportError: a dependency of the app is missing (on purpose)" in program.output
    assert NOT_CAPTURED in program.output
    assert "Now listening on" not in program.output


async def test_with_capture_the_default_still_serves_500_30(anyio_backend: str,
                                                            tmp_path: Path) -> None:
    with Program(_program("failing_start.py", anyio_backend), cwd=tmp_path) as program:
        (url,) = program.wait_started()
        async with httpx.AsyncClient(timeout=TIMEOUT) as client:
            response = await client.get(url + "/")
        assert program.running
    assert response.status_code == 500
    assert "500.30 In-Process Start Failure" in response.text
    assert "every request gets 500.30" in program.output


def _make_builder(tmp_path: Path, *args: str) -> hostkit.HostBuilder:
    plugins = Plugins({})
    plugins.load_entry_points()
    configuration = load_configuration(["--urls=http://127.0.0.1:0", *args], {},
                                       content_root=tmp_path)
    return hostkit.HostBuilder(configuration, plugins)


async def _failing_lifespan(scope: Any, receive: Any, send: Any) -> None:
    assert scope["type"] == "lifespan"
    await receive()
    raise RuntimeError("no database (on purpose)")


async def test_run_async_raises_app_start_error_without_capture(tmp_path: Path) -> None:
    host = _make_builder(tmp_path, "--capture_startup_errors=false").use_app(
        _failing_lifespan).build()
    with anyio.fail_after(TIMEOUT), pytest.raises(AppStartError) as raised:
        await host.run_async()
    assert isinstance(raised.value, hostkit.HostkitError)
    assert raised.value.exit_status == EXIT_STATUS
    assert "RuntimeError: no database (on purpose)" in str(raised.value)


# -- startup_time_limit --------------------------------------------------------------------


async def test_lifespan_startup_over_the_time_limit_is_cancelled(anyio_backend: str) -> None:
    cancelled = anyio.Event()

    async def hangs(scope: Any, receive: Any, send: Any) -> None:
        await receive()
        try:
            await anyio.sleep_forever()
        finally:
            cancelled.set()

    with anyio.fail_after(TIMEOUT):
        async with anyio.create_task_group() as task_group:
            started = time.monotonic()
            failure = await Lifespan(hangs).startup(task_group, 0.3)
            elapsed = time.monotonic() - started
            await cancelled.wait()
    assert failure is not None
    assert failure.title == TIME_LIMIT_PAGE
    assert "startup_time_limit = 0.3 s" in failure.message
    assert 0.3 <= elapsed < 2


async def test_a_hanging_startup_gets_500_37_after_the_limit(anyio_backend: str,
                                                             tmp_path: Path) -> None:
    limit = 1.0
    with Program(_program("slow_start.py", anyio_backend, f"--startup_time_limit={limit:g}"),
                 cwd=tmp_path) as program:
        program.wait_for_line("slow start: waiting for SIGUSR1")
        (url,) = [line.rpartition(" ")[2] for line in program.lines
                  if "Now listening on:" in line]
        async with httpx.AsyncClient(timeout=TIMEOUT) as client:
            started = time.monotonic()
            waited = await client.get(url + "/")  # sent while the app starts
            waited_for = time.monotonic() - started
            later = await client.get(url + "/other")
        assert program.running  # captured: the host keeps serving the page
    for response in (waited, later):
        assert response.status_code == 500
        assert TIME_LIMIT_PAGE in response.text
    assert waited_for < limit + 5
    line = program.wait_for_line("every request gets 500.37")
    assert f"startup_time_limit = {limit:g} s" in line
    assert program.output.count("the app failed to start") == 1


async def test_a_hanging_startup_without_capture_exits_with_status_3(anyio_backend: str,
                                                                     tmp_path: Path) -> None:
    limit = 1.0
    with Program(_program("slow_start.py", anyio_backend, f"--startup_time_limit={limit:g}",
                          "--capture_startup_errors=false"), cwd=tmp_path) as program:
        program.wait_for_line("slow start: waiting for SIGUSR1")
        (url,) = [line.rpartition(" ")[2] for line in program.lines
                  if "Now listening on:" in line]
        async with httpx.AsyncClient(timeout=TIMEOUT) as client:
            waited = await client.get(url + "/")  # waits for the app, then gets its page
        started = time.monotonic()
        code = await anyio.to_thread.run_sync(_exit_status, program)
    assert code == EXIT_STATUS, program.output
    assert time.monotonic() - started < 5
    assert waited.status_code == 500 and TIME_LIMIT_PAGE in waited.text
    assert f"startup_time_limit = {limit:g} s" in program.output
    assert NOT_CAPTURED in program.output
