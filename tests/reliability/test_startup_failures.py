"""Children that cannot start: a crash on start (the rapid-fail budget and its recovery), a
child that never listens (``startup_time_limit``), and a hostkit child whose app fails to
start (its lifespan startup raises or hangs past the top-level ``startup_time_limit``, or its
module does not import): the child ends with status 3, so the front answers 502.5 with the
child's output (Development), logs each failed start once and spends the rapid-fail budget,
instead of the child serving 500.30 forever."""

from __future__ import annotations

import dataclasses
import sys
import time
from pathlib import Path

import anyio
import httpx
import pytest

from hostkit.testing import Program, python, write_settings
from tests.hardening import startup
from tests.hardening.report import measure_twice, only_timing
from tests.support.fronts import child_program, front_settings
from tests.support.paths import PROGRAMS

pytestmark = pytest.mark.integration


@pytest.mark.parametrize("backend", ["asyncio", "trio"])
def test_rapid_fail_refuses_fast_without_spawning(backend: str, tmp_path: Path) -> None:
    quick = startup.QUICK
    with startup.flaky_front(backend, quick.crashes, tmp_path / "starts") as front:
        figures = anyio.run(startup.rapid_fail, front, quick, backend=backend)
        failed_starts = figures.failed_starts
        if only_timing(figures.problems()):  # a loaded runner; the budget is spent already
            figures = anyio.run(startup.rapid_fail, front, dataclasses.replace(quick, crashes=0),
                                backend=backend)
    assert figures.problems() == [], figures.lines()
    assert failed_starts == [502] * quick.crashes


@pytest.mark.anyio
async def test_rapid_fail_recovers_when_the_window_has_passed(anyio_backend: str) -> None:
    recovery = await startup.recovery_in_process(startup.QUICK)
    assert recovery.problems() == [], recovery.lines()
    assert recovery.waited >= startup.QUICK.window / 2


@pytest.mark.parametrize("backend", ["asyncio", "trio"])
def test_a_child_that_never_listens_gets_502_5_and_is_killed(backend: str) -> None:
    with startup.never_listening_front(backend, startup.QUICK.limit) as front:
        figures = measure_twice(
            lambda: anyio.run(startup.startup_timeout, front, startup.QUICK, backend=backend),
            lambda figures: figures.problems())
    assert figures.problems() == [], figures.lines()


# -- a hostkit child whose app fails to start ----------------------------------------------

_TIMEOUT = 30.0
_BUDGET = 2  # rapid_fails_per_minute: the third failed start spends it
_STARTUP_FAILURE_PAGE = "502.5 Out-Of-Process Startup Failure"
_IMPORT_FAILS = {"process_path": sys.executable,
                 "arguments": ["-m", "hostkit", "run", "broken_import:app"],
                 "environment_variables": {"PYTHONPATH": str(PROGRAMS)}}


def _front(root: Path, backend: str, child: dict[str, object], **top: object) -> Program:
    """A Development front (``probe.py``) in ``root`` whose children run ``child``, their
    output relayed to the front's (so the 502.5 page carries it)."""
    write_settings(root, front_settings(
        module={**child, "rapid_fails_per_minute": _BUDGET, "stdout_log_enabled": False},
        **top))
    front = Program(python(str(PROGRAMS / "probe.py"), "--urls=http://127.0.0.1:0",
                           f"--async_backend={backend}", "--environment=Development"),
                    cwd=root)
    front.wait_started()
    return front


@pytest.mark.anyio
@pytest.mark.parametrize(("child", "cause"), [
    (child_program(PROGRAMS / "failing_start.py"),
     "RuntimeError: database unreachable (on purpose)"),
    (_IMPORT_FAILS, "ImportError: a dependency of the app is missing (on purpose)"),
], ids=["lifespan startup raises", "module does not import"])
async def test_a_child_whose_app_fails_to_start_gets_502_5_and_spends_the_budget(
        anyio_backend: str, tmp_path: Path, child: dict[str, object], cause: str) -> None:
    with _front(tmp_path, anyio_backend, child) as front:
        (url,) = front.urls
        async with httpx.AsyncClient(timeout=_TIMEOUT) as client:
            failed = [await client.get(url + "/") for _ in range(_BUDGET + 1)]
            children = front.started_children()
            refused = await client.get(url + "/")
        assert len(front.started_children()) == len(children)  # no spawn once spent
    for response in failed:
        assert response.status_code == 502, response.text
        assert _STARTUP_FAILURE_PAGE in response.text
        assert "500.30" not in response.text
        assert cause in response.text  # the child's output, in Development
    assert refused.status_code == 503 and 0 < int(refused.headers["retry-after"]) <= 60
    assert len(children) == _BUDGET + 1
    for pid, _ in children:  # the front logged each failed start, once
        assert front.output.count(f"ERROR: hostkit.module: child pid {pid} exited with "
                                  "code 3") == 1, front.output
    assert "every request gets 500.30" not in front.output


@pytest.mark.anyio
async def test_a_child_whose_startup_hangs_exits_at_its_startup_time_limit(
        anyio_backend: str, tmp_path: Path) -> None:
    limit = 1.0  # the app's (top level); the module waits up to 15 s for a listener
    with _front(tmp_path, anyio_backend, child_program(PROGRAMS / "slow_start.py"),
                startup_time_limit=limit) as front:
        (url,) = front.urls
        async with httpx.AsyncClient(timeout=_TIMEOUT) as client:
            started = time.monotonic()
            response = await client.get(url + "/")
            elapsed = time.monotonic() - started
        ((pid, _),) = front.started_children()
    assert response.status_code == 502 and _STARTUP_FAILURE_PAGE in response.text
    assert f"startup_time_limit = {limit:g} s" in response.text
    assert elapsed < 10  # the child's own limit, not the module's 15 s
    assert f"child pid {pid} exited with code 3" in front.output
