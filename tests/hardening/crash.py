"""The child killed under load: SIGKILL every ``interval`` s while keep-alive clients run.

Half the requests are ``GET /``, half ``POST /apply`` with a unique ``x-apply-tag``; the app
appends every applied id to a ledger file. A request is **in flight** at a kill when it was
sent before the kill and answered after it; it **arrived while the child was down** when it
was sent after a kill and before the next child was listening. Figures: every failure (no
answer, or a 5xx) must be in flight at some kill; none among the requests that arrived while
the child was down (they wait for the next child); no POST applied twice; every POST answered
200 applied once.
"""

from __future__ import annotations

import collections
import dataclasses
import os
import signal
from pathlib import Path

import anyio

from tests.hardening.fronts import Front
from tests.support.http import build
from tests.support.load import Request, Sample, failed, now, run_clients
from tests.support.processes import process_alive

_TIMEOUT = 20.0


@dataclasses.dataclass(frozen=True)
class Settings:
    clients: int
    kills: int
    interval: float      # seconds between kills (a new child serves at least half of it)


#: CI's run and the full run (python -m tests.hardening --full): every 2 s for 60 s.
QUICK = Settings(clients=64, kills=3, interval=1.0)
FULL = Settings(clients=64, kills=30, interval=2.0)


@dataclasses.dataclass
class Kill:
    """One SIGKILL: sent ``at``, the child seen dead (its sockets closed) ``dead_at``."""

    at: float
    pid: int
    dead_at: float = 0.0
    in_flight: int = 0
    failed: int = 0


@dataclasses.dataclass
class Figures:
    kills: list[Kill]
    requests: int
    posts: int
    failures: int
    failures_in_flight: int
    failures_not_in_flight: int
    failures_while_down: int
    arrived_while_down: int
    applied_twice: int
    answered_but_not_applied: int
    failure_kinds: collections.Counter[str]

    backend: str = ""

    @property
    def in_flight(self) -> int:
        return sum(kill.in_flight for kill in self.kills)

    def lines(self) -> list[str]:
        return [f"child killed under load ({self.backend}): {len(self.kills)} SIGKILLs, "
                f"{self.requests} requests ({self.posts} POST); {self.failures} failed "
                f"({dict(self.failure_kinds) or 'none'}), all of them in flight at a kill: "
                f"{self.failures_not_in_flight == 0} ({self.failures_in_flight} failed of "
                f"{self.in_flight} in flight; per kill failed/in flight "
                f"{' '.join(f'{k.failed}/{k.in_flight}' for k in self.kills)}); "
                f"{self.failures_while_down} failed of {self.arrived_while_down} arriving "
                f"while the child was down; {self.applied_twice} POSTs applied twice, "
                f"{self.answered_but_not_applied} answered 200 but not applied once"]

    def problems(self) -> list[str]:
        found = []
        if not self.kills:
            found.append("no kill happened")
        if self.failures_not_in_flight:
            found.append(f"{self.failures_not_in_flight} failures not in flight at any kill")
        if any(kill.failed > kill.in_flight for kill in self.kills):
            found.append("more failures than requests in flight at a kill")
        if self.failures_while_down:
            found.append(f"{self.failures_while_down} requests failed that arrived while the "
                         "child was down")
        if self.applied_twice or self.answered_but_not_applied:
            found.append(f"{self.applied_twice} POSTs applied twice, "
                         f"{self.answered_but_not_applied} answered but not applied once")
        return found


def front_for(backend: str, ledger: Path) -> Front:
    """A front whose children append applied POSTs to ``ledger``; kills are on purpose, so
    the rapid-fail budget is out of the way."""
    return Front(backend, module={"rapid_fails_per_minute": 100000,
                                  "environment_variables": {"LEDGER_FILE": str(ledger)}})


async def run(front: Front, ledger: Path, settings: Settings) -> Figures:
    """Load ``front`` with keep-alive clients, killing its child every ``interval`` s."""
    interval = settings.interval

    def next_request(client: int, n: int) -> Request:
        if n % 2:
            tag = f"{client}-{n}"
            return "POST", build("POST", "/apply", [("x-apply-tag", tag)], b"x"), tag
        return "GET", build("GET", "/"), ""

    samples: list[Sample] = []
    kills: list[Kill] = []
    stop = anyio.Event()

    async def killer() -> None:
        for _ in range(settings.kills):
            await anyio.sleep(interval)
            # A child that was just replaced serves for a while before the next kill.
            pid = await _live_child(front, serving_for=interval / 2)
            kill = Kill(now(), pid)
            os.kill(pid, signal.SIGKILL)
            while process_alive(pid):
                await anyio.sleep(0.001)
            kill.dead_at = now()
            kills.append(kill)
        await anyio.sleep(interval)  # requests after the last kill count too
        stop.set()

    async with anyio.create_task_group() as task_group:
        task_group.start_soon(run_clients, front.port, settings.clients, next_request, stop,
                              samples, _TIMEOUT)
        task_group.start_soon(killer)
    figures = _figures(front, ledger, samples, kills)
    figures.backend = front.backend
    return figures


async def _live_child(front: Front, serving_for: float) -> int:
    """The pid of the child serving now, once it has listened for ``serving_for`` s."""
    with anyio.fail_after(_TIMEOUT):
        while True:
            children = [pid for pid, _ in front.children if pid in front.listening]
            if children and process_alive(children[-1]) \
                    and now() - front.listening[children[-1]] >= serving_for:
                return children[-1]
            await anyio.sleep(0.01)


def _figures(front: Front, ledger: Path, samples: list[Sample], kills: list[Kill]) -> Figures:
    # Down: from the child's death until the next child was listening. In flight: sent
    # before the death, not answered before the kill.
    downs = []
    for kill in kills:
        later = [at for at in front.listening.values() if at > kill.at]
        downs.append((kill.dead_at, min(later) if later else float("inf")))
    failures = failed(samples)

    def in_flight_at(sample: Sample, kill: Kill) -> bool:
        return sample.sent < kill.dead_at and sample.done >= kill.at

    for kill in kills:
        kill.in_flight = sum(in_flight_at(s, kill) for s in samples)
        kill.failed = sum(in_flight_at(s, kill) for s in failures)
    in_flight = [s for s in failures if any(in_flight_at(s, k) for k in kills)]
    # Arrived while down: they wait for the next child, so none may fail, unless a later
    # kill caught them in flight there too.
    while_down = [s for s in samples if any(start <= s.sent <= end for start, end in downs)]
    failed_while_down = [s for s in while_down if s in failures and s not in in_flight]
    applied = collections.Counter(ledger.read_text().split()) if ledger.exists() else \
        collections.Counter()
    posts = [s for s in samples if s.kind == "POST"]
    return Figures(
        kills=kills, requests=len(samples), posts=len(posts), failures=len(failures),
        failures_in_flight=len(in_flight),
        failures_not_in_flight=len(failures) - len(in_flight),
        failures_while_down=len(failed_while_down),
        arrived_while_down=len(while_down),
        applied_twice=sum(count > 1 for count in applied.values()),
        answered_but_not_applied=sum(1 for s in posts if s.status == 200
                                     and applied[s.tag] != 1),
        failure_kinds=collections.Counter(s.failure or str(s.status) for s in failures))
