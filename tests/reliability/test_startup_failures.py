"""Children that cannot start: a crash on start (the rapid-fail budget and its recovery) and a
child that never listens (``startup_time_limit``)."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import anyio
import pytest

from tests.hardening import startup
from tests.hardening.report import measure_twice, only_timing

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
