"""Children that fail to start: the rapid-fail budget, its recovery, and the startup timeout.

- **Rapid fail**: a child that crashes on start (``programs/flaky_start.py``, its first N
  starts) behind a front with ``rapid_fails_per_minute`` = N - 1. After N failures every
  request gets 503 with ``Retry-After`` at once, and nothing is spawned. Figures: the slowest
  503 (under 50 ms), the children started while refusing (0), and, once the window has passed,
  the time until the module serves 200 again by itself.
- **Startup timeout**: a child that never listens, ``startup_time_limit`` = L. Figures: every
  waiting request answered 502 "502.5" within L + 1 s, and the child killed.
"""

from __future__ import annotations

import dataclasses
import os
import sys
import tempfile
from pathlib import Path

import anyio

from hostkit.testing import write_settings
from tests.hardening.fronts import Front
from tests.hardening.report import timing
from tests.support.fronts import child_program
from tests.support.http import RequestFailed, Response, build, request_once
from tests.support.load import now
from tests.support.paths import PROGRAMS
from tests.support.processes import process_alive

_TIMEOUT = 30.0
FLAKY = PROGRAMS / "flaky_start.py"
NEVER_LISTENS = PROGRAMS / "never_listens.py"


@dataclasses.dataclass(frozen=True)
class Settings:
    crashes: int         # failed starts; the budget is one less
    refusals: int        # requests timed while the budget is spent
    recover: bool        # wait (the real minute) for a real front to serve again
    window: float        # the process manager's window in the in-process recovery
    limit: float         # startup_time_limit for the child that never listens
    waiting: int         # requests waiting for that child


#: CI's run (recovery through the process manager with a 1 s window) and the full run (a
#: real front, waiting out the real minute).
QUICK = Settings(crashes=3, refusals=20, recover=False, window=1.0, limit=1.5, waiting=5)
FULL = Settings(crashes=3, refusals=50, recover=True, window=1.0, limit=5.0, waiting=20)


@dataclasses.dataclass
class RapidFail:
    budget: int
    failed_starts: list[int]        # statuses while the budget was spent (502 each)
    refusals: int
    refusal_statuses: set[int]
    retry_after: int
    slowest_refusal_ms: float
    spawned_while_refusing: int
    recovered_after: float | None   # seconds from the first refusal to the next 200
    backend: str = ""
    waited_for_recovery: bool = False

    def lines(self) -> list[str]:
        recovery = ("not waited for" if self.recovered_after is None
                    else f"served 200 again {self.recovered_after:.1f} s after the first refusal"
                    ", by itself")
        return [f"rapid fail ({self.backend}): budget {self.budget}/min; starts answered "
                f"{self.failed_starts}, then {self.refusals} refusals {sorted(self.refusal_statuses)}"
                f" (Retry-After {self.retry_after}), the slowest in "
                f"{self.slowest_refusal_ms:.1f} ms, {self.spawned_while_refusing} children "
                f"started meanwhile; {recovery}"]

    def problems(self) -> list[str]:
        found = []
        if self.refusal_statuses != {503} or not 0 < self.retry_after <= 60:
            found.append(f"refusals {self.refusal_statuses}, Retry-After {self.retry_after}")
        if self.slowest_refusal_ms >= 50:
            found.append(timing(f"a 503 took {self.slowest_refusal_ms:.1f} ms"))
        if self.spawned_while_refusing:
            found.append(f"{self.spawned_while_refusing} children started while refusing")
        if self.waited_for_recovery and self.recovered_after is None:
            found.append("the module did not serve again after the window")
        return found


@dataclasses.dataclass
class Recovery:
    """The process manager's own recovery, with a short window."""

    window: float
    pid: int
    waited: float            # from the first refusal until a child ran

    def lines(self) -> list[str]:
        return [f"rapid-fail recovery (process manager, {self.window:g} s window): a child "
                f"(pid {self.pid}) running {self.waited:.2f} s after the first refusal, no "
                "one acting"]

    def problems(self) -> list[str]:
        return [] if self.pid else ["no child ran after the window"]


@dataclasses.dataclass
class StartupTimeout:
    limit: float
    statuses: list[int]
    pages: int                      # answers carrying the 502.5 page
    slowest: float                  # seconds, for the slowest waiting request
    child_killed: bool
    backend: str = ""

    def lines(self) -> list[str]:
        return [f"startup timeout ({self.backend}): a child that never listens, "
                f"startup_time_limit {self.limit:g} s: {len(self.statuses)} waiting requests "
                f"answered {sorted(set(self.statuses))} ({self.pages} with the 502.5 page), the "
                f"last after {self.slowest:.2f} s; child killed: {self.child_killed}"]

    def problems(self) -> list[str]:
        found = []
        if set(self.statuses) != {502} or self.pages != len(self.statuses):
            found.append(f"answers {self.statuses}, {self.pages} with the 502.5 page")
        if not self.limit <= self.slowest <= self.limit + 1:
            found.append(timing(f"the last answer came after {self.slowest:.2f} s"))
        if not self.child_killed:
            found.append("the child was not killed")
        return found


async def _get(port: int, path: str = "/") -> tuple[Response | None, float]:
    """A GET and how long it took; ``None`` for no answer."""
    started = now()
    try:
        return await request_once(port, build("GET", path), _TIMEOUT), now() - started
    except RequestFailed:
        return None, now() - started


def flaky_front(backend: str, crashes: int, counter: Path) -> Front:
    return Front(backend, module={
        **child_program(FLAKY), "rapid_fails_per_minute": crashes - 1,
        "environment_variables": {"FLAKY_COUNTER": str(counter), "FLAKY_CRASHES": str(crashes)}})


async def rapid_fail(front: Front, settings: Settings) -> RapidFail:
    """Spend the budget, then time the refused requests; with ``recover``, wait (up to the
    60 s window and a bit) until the module serves again by itself."""
    crashes, refusals, wait_for_recovery = settings.crashes, settings.refusals, \
        settings.recover
    failed_starts = []
    for _ in range(crashes):
        response, _ = await _get(front.port)
        failed_starts.append(response.status if response else 0)
    spawned = len(front.children)
    times = []
    statuses = set()
    retry_after = 0
    first_refusal = now()
    for _ in range(refusals):
        response, took = await _get(front.port)
        times.append(took)
        statuses.add(response.status if response else 0)
        if response is not None and response.header(b"retry-after"):
            retry_after = int(response.header(b"retry-after") or 0)
    spawned_while_refusing = len(front.children) - spawned
    recovered_after = None
    if wait_for_recovery:
        with anyio.move_on_after(75):
            while True:
                response, _ = await _get(front.port)
                if response is not None and response.status == 200:
                    recovered_after = now() - first_refusal
                    break
                await anyio.sleep(0.5)
    return RapidFail(crashes - 1, failed_starts, refusals, statuses, retry_after,
                     1000 * max(times, default=0.0), spawned_while_refusing, recovered_after,
                     front.backend, wait_for_recovery)


async def recovery_in_process(settings: Settings) -> Recovery:
    """The process manager alone, with a short rolling window: spend the budget, and acquire
    again until a child runs (the window passes; nobody acts)."""
    from hostkit_outofprocess.children import ChildManager
    from hostkit_outofprocess.children import ChildSettings, RapidFailLimit
    from hostkit_outofprocess.children import ChildStartupFailure

    crashes, window = settings.crashes, settings.window
    with tempfile.TemporaryDirectory(prefix="hostkit-flaky-") as root:
        counter = Path(root) / "starts"
        write_settings(Path(root), {"hosting_model": "OutOfProcess"})
        environment = {**os.environ, "FLAKY_COUNTER": str(counter),
                       "FLAKY_CRASHES": str(crashes)}
        child = ChildSettings([sys.executable, str(FLAKY)], Path(root), environment, "/",
                              15, 3, crashes - 1, None)
        manager = ChildManager(child, 1, rapid_fail_window=window)
        with anyio.fail_after(_TIMEOUT):
            async with anyio.create_task_group() as task_group:
                await task_group.start(manager.run)
                for _ in range(crashes):
                    try:
                        await manager.acquire()
                    except ChildStartupFailure:
                        pass
                try:
                    await manager.acquire()
                    raise AssertionError("the budget was not enforced")
                except RapidFailLimit:
                    refused_at = now()
                while True:  # no one acts: the window passes and the next start works
                    try:
                        running = await manager.acquire()
                        break
                    except RapidFailLimit:
                        await anyio.sleep(0.05)
                waited = now() - refused_at
                task_group.cancel_scope.cancel()
        return Recovery(window, running.pid, waited)


def never_listening_front(backend: str, limit: float) -> Front:
    return Front(backend, module={**child_program(NEVER_LISTENS), "startup_time_limit": limit})


async def startup_timeout(front: Front, settings: Settings) -> StartupTimeout:
    """``waiting`` requests arrive together while a child never listens (``limit``)."""
    limit = settings.limit
    results: list[tuple[Response | None, float]] = []

    async def one() -> None:
        results.append(await _get(front.port))

    async with anyio.create_task_group() as task_group:
        for _ in range(settings.waiting):
            task_group.start_soon(one)
    (pid, _), = front.children[:1]
    killed = False
    with anyio.move_on_after(2):
        while process_alive(pid):
            await anyio.sleep(0.02)
        killed = True
    return StartupTimeout(
        limit, [r.status if r else 0 for r, _ in results],
        sum(b"502.5" in r.body for r, _ in results if r), max(t for _, t in results), killed,
        front.backend)
