"""An app that fails on trio because it uses an asyncio-only library gets one log line per
cause naming it (``set async_backend = "asyncio"``), not one per failing request.

Real asyncio-only code under a real trio host: ``asyncio.sleep``, asgiref's
``sync_to_async``, an awaited asyncio future (``tests/programs/asyncio_only.py``) and a
Django app (``tests/programs/django_app.py``); on asyncio the same app says nothing.
"""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path
from typing import Any

import anyio
import httpx
import pytest

from hostkit.backend_hints import BackendHints, asyncio_only_cause
from hostkit.lifespan import Lifespan
from hostkit.testing import Program, python
from tests.support.paths import PROGRAMS

TIMEOUT = 20.0
HINT = 'the app uses an asyncio-only library on trio'
ADVICE = 'set async_backend = "asyncio"'


def _serve(program: str, backend: str, cwd: Path) -> Program:
    return Program(python(str(PROGRAMS / program), "--urls=http://127.0.0.1:0",
                          f"--async_backend={backend}"), cwd=cwd)


def _hints(program: Program) -> list[str]:
    return [line for line in program.lines if HINT in line]


async def _statuses(url: str, paths: list[str]) -> list[int]:
    async with httpx.AsyncClient(timeout=TIMEOUT) as client:
        return [(await client.get(url + path)).status_code for path in paths]


@pytest.mark.integration
def test_asyncio_only_calls_on_trio_are_named_once_per_cause(tmp_path: Path) -> None:
    paths = ["/sleep"] * 3 + ["/sync_to_async"] * 3 + ["/future"] * 3
    with _serve("asyncio_only.py", "trio", tmp_path) as program:
        (url,) = program.wait_started()
        statuses = anyio.run(_statuses, url, paths)
        program.wait_for_count("unhandled exception while serving", len(paths))
    assert statuses == [500] * len(paths)
    hints = _hints(program)
    # Two causes: asyncio.sleep and the future yield to trio ("unrecognized yield
    # message"); sync_to_async asks for the running asyncio loop ("no running event loop").
    assert len(hints) == 2, "\n".join(hints)
    assert all(ADVICE in line and line.startswith("WARNING: hostkit.request") for line in hints)
    assert sum("unrecognized yield message" in line for line in hints) == 1
    assert sum("RuntimeError: no running event loop" in line for line in hints) == 1


@pytest.mark.integration
def test_the_same_app_on_asyncio_gets_no_hint(tmp_path: Path) -> None:
    with _serve("asyncio_only.py", "asyncio", tmp_path) as program:
        (url,) = program.wait_started()
        statuses = anyio.run(_statuses, url, ["/sleep", "/sync_to_async", "/future"])
        program.wait_for_count("unhandled exception while serving", 1)  # /future's loop
    assert statuses == [200, 200, 500]
    assert _hints(program) == []


@pytest.mark.integration
def test_a_django_app_on_trio_is_named_once(tmp_path: Path) -> None:
    with _serve("django_app.py", "trio", tmp_path) as program:
        (url,) = program.wait_started()
        statuses = anyio.run(_statuses, url, ["/order"] * 5)
        program.wait_for_count("unhandled exception while serving", 5)
    assert statuses == [500] * 5
    hints = _hints(program)
    assert len(hints) == 1 and ADVICE in hints[0], program.output


def test_the_cause_is_found_in_the_chain_and_in_groups() -> None:
    try:
        try:
            asyncio.get_running_loop()
        except RuntimeError as error:
            raise ValueError("the framework's own wrapper") from error
    except ValueError as wrapped:
        chained = wrapped
    assert asyncio_only_cause(chained) == ("RuntimeError: no running event loop",
                                           "RuntimeError: no running event loop")
    group = ExceptionGroup("tasks", [KeyError("x"), chained])
    assert asyncio_only_cause(group) is not None
    assert asyncio_only_cause(RuntimeError("an ordinary failure")) is None


def test_a_hint_is_given_once_per_cause_and_only_on_trio() -> None:
    hints = BackendHints()
    error = TypeError("trio.run received unrecognized yield message <Future pending>. Are "
                      "you trying to use a library written for some other framework?")
    assert hints.first_hint(error, trio=False) is None
    first = hints.first_hint(error, trio=True)
    assert first is not None and ADVICE in first
    assert "trio.run received unrecognized yield message <Future pending>" in first
    assert "Are you trying" not in first  # one line: the cause, not trio's advice
    other = TypeError("trio.run received unrecognized yield message <Future pending cb=[]>")
    assert hints.first_hint(other, trio=True) is None  # the same cause
    assert hints.first_hint(RuntimeError("no running event loop"), trio=True) is not None


@pytest.mark.anyio
@pytest.mark.parametrize("anyio_backend", ["trio"])
async def test_a_lifespan_startup_with_asyncio_on_trio_is_named(
        anyio_backend: str, caplog: pytest.LogCaptureFixture) -> None:
    async def app(scope: Any, receive: Any, send: Any) -> None:
        await receive()
        await asyncio.sleep(0.01)  # e.g. a database driver made for asyncio

    caplog.set_level(logging.WARNING, "hostkit.lifespan")
    with anyio.fail_after(TIMEOUT):
        async with anyio.create_task_group() as task_group:
            failure = await Lifespan(app).startup(task_group)
    assert failure is not None
    hints = [record.getMessage() for record in caplog.records if HINT in record.getMessage()]
    assert len(hints) == 1 and ADVICE in hints[0]

