"""SIGTERM to the front while keep-alive clients have requests in flight.

``clients`` clients loop on ``GET /slow?SECONDS`` over keep-alive connections; once they
all have a request in flight the front gets SIGTERM. A request is **in flight** when it was
sent before the signal and answered after it. Figures: failed in-flight requests (must be 0),
the front's exit status (0), and how long the child took to stop once the module asked it
(at most ``module.shutdown_time_limit``, never killed).
"""

from __future__ import annotations

import dataclasses
import signal

import anyio
import anyio.to_thread

from tests.hardening.fronts import Front
from tests.hardening.report import timing
from tests.support.http import build, request_once
from tests.support.load import Sample, failed, now, run_clients

_TIMEOUT = 30.0
SHUTDOWN_TIME_LIMIT = 3.0


@dataclasses.dataclass(frozen=True)
class Settings:
    clients: int
    slow: float          # seconds each request takes in the app


#: the same in CI and in the full run: 64 clients with a request in flight.
QUICK = FULL = Settings(clients=64, slow=0.5)


@dataclasses.dataclass
class Figures:
    in_flight: int
    failed_in_flight: int
    exit_code: int
    child_stop_seconds: float     # from the last in-flight answer to the child's exit
    child_killed: bool
    stopped_after: float          # from SIGTERM to the front's exit
    after_signal: int             # requests sent after SIGTERM (refused, not counted)
    backend: str = ""

    def lines(self) -> list[str]:
        return [f"graceful stop ({self.backend}): SIGTERM with {self.in_flight} requests in "
                f"flight, {self.failed_in_flight} failed; exit status {self.exit_code} after "
                f"{self.stopped_after:.2f} s; the child stopped {self.child_stop_seconds:.2f} s "
                f"after the last answer (limit {SHUTDOWN_TIME_LIMIT:g} s), killed: "
                f"{self.child_killed}"]

    def problems(self) -> list[str]:
        found = []
        if self.failed_in_flight or not self.in_flight:
            found.append(f"{self.failed_in_flight} of {self.in_flight} in flight failed")
        if self.exit_code != 0:
            found.append(f"exit status {self.exit_code}")
        if self.child_killed:
            found.append("the child was killed, not stopped")
        if self.child_stop_seconds > SHUTDOWN_TIME_LIMIT:
            found.append(timing(f"the child stopped after {self.child_stop_seconds:.2f} s"))
        return found


def front_for(backend: str) -> Front:
    return Front(backend, shutdown_timeout=15,
                 module={"shutdown_time_limit": SHUTDOWN_TIME_LIMIT})


async def run(front: Front, settings: Settings) -> Figures:
    """Load ``front`` until every client has a request in flight, then SIGTERM it."""
    samples: list[Sample] = []
    stop = anyio.Event()
    slow = settings.slow
    request = build("GET", f"/slow?{slow}")
    signalled = 0.0

    await request_once(front.port, build("GET", "/"), _TIMEOUT)  # the child is up
    child = front.children[-1][0]

    async def signal_when_all_in_flight() -> None:
        nonlocal signalled
        await anyio.sleep(max(slow * 1.5, 0.5))  # every client has a request in flight
        signalled = now()
        front.signal(signal.SIGTERM)
        await anyio.sleep(slow + 0.5)
        stop.set()

    async with anyio.create_task_group() as task_group:
        task_group.start_soon(run_clients, front.port, settings.clients,
                              lambda c, n: ("GET", request, ""), stop, samples, _TIMEOUT)
        task_group.start_soon(signal_when_all_in_flight)
    code = await anyio.to_thread.run_sync(front.wait_exit, _TIMEOUT)
    exited = now()
    in_flight = [s for s in samples if s.sent < signalled <= s.done]
    last_answer = max((s.done for s in in_flight), default=signalled)
    stopped = [line for line in front.lines if f"child pid {child} stopped" in line
               or f"child pid {child} did not stop" in line]
    child_exit = front.line_time(f"child pid {child} stopped") or exited
    return Figures(
        in_flight=len(in_flight), failed_in_flight=len(failed(in_flight)), exit_code=code,
        child_stop_seconds=child_exit - last_answer,
        child_killed=any("did not stop" in line for line in stopped) or not stopped,
        stopped_after=exited - signalled,
        after_signal=sum(s.sent > signalled for s in samples), backend=front.backend)
