"""Reloads and recycles under load (issue 14): every replacement of a process that runs the
app is a rolling one, so no request fails and none waits for a cold start.

Keep-alive clients (:class:`~tests.hardening.worker_kill.Clients`, ``GET /features``, whose
answer names the pid that ran it) load the probe; each client keeps its connection for as
long as the server does, and opens another only when it sees, before it sends, that the
server closed the idle one (as a pooled client does). A **failure** is a request that was
sent and got no complete answer, or a 5xx. The probe runs in one of two models
(:class:`Served`): InProcess under a supervisor with two workers, or OutOfProcess as a single
front with one child.

- :func:`reloads`: SIGHUP every ``interval`` s (each once the previous replacement is done):
  targets 0 failures, and a p99 latency of the requests sent during a replacement (from the
  trigger until every process it replaces has stopped) at most twice the steady p99 (the
  requests sent outside any replacement, after the first second).
- :func:`reloads` with ``trigger="change"``: the same, each replacement made by an edit of
  ``hostkit.toml`` (OutOfProcess, ``restart_on_config_change``): 0 failures, and the slowest
  request during a replacement at most twice the steady p99, so none waited for a cold start
  (the cold start itself, the latency of the lazy front's first request, is measured first:
  no request during a replacement may be as slow).
- :func:`recycles`: ``[workers] max_requests`` under load: 0 failures across every recycle
  (each waited for until its old process stopped).

Each scenario runs whole (host started and stopped) in a ``measure_*`` function.
"""

from __future__ import annotations

import dataclasses
import os
import re
import signal
import sys
from collections.abc import Awaitable, Callable
from typing import Literal

import anyio

from hostkit.testing import Program
from hostkit.testing.program import child_listening
from tests.hardening.fronts import Front
from tests.hardening.report import timing
from tests.hardening.supervisor_kill import PROBE, START_TIMEOUT, Supervised
from tests.hardening.worker_kill import Answer, Clients
from tests.support.http import build, request_once
from tests.support.load import Sample, failed, now, percentile
from tests.support.processes import process_alive

MODELS = ("InProcess", "OutOfProcess")
#: Seconds a replacement may take, from its trigger until every process it replaces stopped.
_REPLACED_WITHIN = 30.0
#: The first requests (connects of every client at once) are no steady state.
_WARM_UP = 1.0
#: Clients keep their connection until the server closes it.
_FOREVER = sys.maxsize
#: The targets: the p99 latency during replacements (SIGHUP), or the slowest request
#: (a configuration change), at most this many times the steady p99.
TARGET_RATIO = 2.0
#: The log lines of a replacement begun: InProcess (the supervisor), OutOfProcess (the front).
_BEGUN = re.compile(r"(?:replacing worker|recycling child) pid (\d+) \(slot \d+\): (.*)")


@dataclasses.dataclass(frozen=True)
class Reloads:
    clients: int
    reloads: int
    interval: float    # seconds from one trigger to the next, at least (each once the
    #                    previous replacement is done)
    steady: float      # seconds of load before the first trigger


@dataclasses.dataclass(frozen=True)
class Recycles:
    clients: int
    seconds: float     # of load
    max_requests: int = 1000


#: CI's runs and the full ones (python -m tests.hardening --full).
RELOADS_QUICK = Reloads(clients=16, reloads=2, interval=5.0, steady=2.0)
RELOADS_FULL = Reloads(clients=64, reloads=12, interval=5.0, steady=5.0)  # 60 s of SIGHUPs
CHANGES_QUICK = Reloads(clients=16, reloads=2, interval=3.5, steady=1.5)
CHANGES_FULL = Reloads(clients=64, reloads=6, interval=5.0, steady=5.0)
RECYCLES_QUICK = Recycles(clients=16, seconds=5.0)
RECYCLES_FULL = Recycles(clients=64, seconds=60.0)


class Served:
    """The probe serving on :attr:`port` in ``model``, in a ``with`` block: InProcess, a
    supervisor with two workers (:class:`Supervised`); OutOfProcess, a single front
    (:class:`Front`, no supervisor) with one child, started at once unless ``lazy`` (then
    by the first request). ``recycling`` adds ``[workers]`` keys, ``module`` ``[module]``
    keys (OutOfProcess)."""

    def __init__(self, backend: str, model: str, *,
                 recycling: dict[str, object] | None = None,
                 module: dict[str, object] | None = None, lazy: bool = False):
        self.backend = backend
        self.model = model
        self.program: Supervised | Front
        if model == "InProcess":
            self.program = Supervised(backend, recycling=recycling)
            self.kind = "worker"
        else:
            # No access log, as for Supervised: its lines would load the measuring side.
            tables: dict[str, dict[str, object]] = {"logging": {"access_log": False}}
            if recycling:
                tables["workers"] = recycling
            self.program = Front(backend, program=PROBE, tables=tables,
                                 module={"processes_per_application": 1,
                                         "eager_start": not lazy, **(module or {})})
            self.kind = "child"
            if not lazy:
                try:
                    self.program.wait_until(self.serving, START_TIMEOUT, "the child listening")
                except AssertionError:
                    self.program.stop()
                    raise
        self.port = self.program.port

    def serving(self) -> list[int]:
        """The processes running the app and not stopped, oldest first: ready workers, or
        children that listened (one being replaced is among them until it has exited)."""
        program = self.program
        if isinstance(program, Supervised):
            return program.serving_workers()
        return [pid for pid in program.listening if process_alive(pid)]

    def started(self) -> list[int]:
        """Every process that ran the app so far (ready, or listening), oldest first."""
        program = self.program
        if isinstance(program, Supervised):
            return program.ready_workers()
        return list(program.listening)

    def stopped_at(self, pid: int) -> float | None:
        """When the log said process ``pid`` stopped (asked to); None while it has not."""
        return self.program.line_time(f"{self.kind} pid {pid} stopped")

    def replacements(self) -> list[tuple[int, str]]:
        """``(old pid, reason)`` of every replacement begun so far."""
        return [(int(match.group(1)), match.group(2)) for line in list(self.program.lines)
                if (match := _BEGUN.search(line))]

    def __enter__(self) -> Served:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.program.stop()


# -- a replacement and when it was done -----------------------------------------------------


@dataclasses.dataclass
class Replacement:
    """One trigger at ``at`` of the replacement of ``old`` (the processes serving then)."""

    at: float
    old: list[int]
    #: when the last of ``old`` stopped; None: not within the bound.
    done: float | None = None

    def during(self, answer: Answer) -> bool:
        return self.done is not None and self.at <= answer.sent <= self.done


async def _wait_stopped(host: Served, pids: Callable[[], list[int]]) -> float | None:
    """Wait until every process of ``pids()`` (asked again each time) has stopped: the log
    says so, and it has exited. When the last one stopped; None when not within
    :data:`_REPLACED_WITHIN`."""
    with anyio.move_on_after(_REPLACED_WITHIN):
        while True:
            old = pids()
            stops = [host.stopped_at(pid) for pid in old]
            if None not in stops and not any(map(process_alive, old)):
                return max((stop for stop in stops if stop is not None), default=now())
            await anyio.sleep(0.02)
    return None


def _edit_configuration(front: Front, edition: int) -> None:
    """Write ``hostkit.toml`` anew with ``[app] edition`` changed, in one rename (as an
    editor saves it): the watcher sees one change, and nobody reads half a file."""
    path = front.root / "hostkit.toml"
    text = path.read_text().split("\n[app]\n")[0].rstrip("\n")
    staging = front.root / "hostkit.toml.new"
    staging.write_text(f"{text}\n[app]\nedition = {edition}\n")
    os.replace(staging, path)


def _trigger(host: Served, trigger: str, number: int) -> None:
    if trigger == "sighup":
        host.program.signal(signal.SIGHUP)
    else:
        assert isinstance(host.program, Front), "configuration changes are OutOfProcess's"
        _edit_configuration(host.program, number)


# -- figures --------------------------------------------------------------------------------


def _ms(seconds: float) -> str:
    return f"{1000 * seconds:.1f} ms"


@dataclasses.dataclass
class Load:
    """What the clients saw: every answer, the connections they opened, the processes."""

    clients: int
    answers: list[Answer]
    connections: int
    first_pids: set[int]     # serving when the load began
    started: list[int]       # every process that ran the app, by the end

    @property
    def failures(self) -> list[Sample]:
        return failed(list[Sample](self.answers))

    @property
    def new_pids(self) -> set[int]:
        """Pids that answered and were not serving when the load began."""
        return {a.pid for a in self.answers if a.pid} - self.first_pids


@dataclasses.dataclass
class ReloadFigures:
    backend: str
    model: str
    trigger: Literal["sighup", "change"]
    seconds: float
    load: Load
    replacements: list[Replacement]
    steady: list[float]       # latencies outside every replacement
    during: list[float]       # latencies of the requests sent during one
    cold_start: float | None = None   # "change": the front's first request, child started
    #: "change": the children's start to listening, per replacement (the module's log)
    listening_after: list[float] = dataclasses.field(default_factory=list)

    @property
    def what(self) -> str:
        return (f"SIGHUP ({self.model}, {self.backend})" if self.trigger == "sighup"
                else f"configuration change ({self.model}, {self.backend})")

    @property
    def measured(self) -> str:
        """What the target compares with twice the steady p99: SIGHUP, the p99 during
        replacements; a configuration change, the slowest request during one."""
        return "p99" if self.trigger == "sighup" else "max"

    @property
    def ratio(self) -> float:
        """:attr:`measured` over the steady p99 (inf without a steady p99)."""
        during = (percentile(self.during, 0.99) if self.measured == "p99"
                  else max(self.during, default=0.0))
        steady = percentile(self.steady, 0.99)
        return during / steady if steady else float("inf")

    def lines(self) -> list[str]:
        failures = self.load.failures
        kinds = sorted({a.failure or str(a.status) for a in failures})
        done = [r.done - r.at for r in self.replacements if r.done is not None]
        lines = [
            f"{self.what}: {len(self.replacements)} in {self.seconds:.0f} s under "
            f"{self.load.clients} keep-alive clients, {len(self.load.answers)} requests "
            f"({len(self.during)} during a replacement), {len(failures)} failed "
            f"({', '.join(kinds) or 'none'}); {self.load.connections} connections opened; "
            f"replacement took median {_ms(percentile(done, 0.5))}, max "
            f"{_ms(max(done, default=0.0))}; "
            f"{len(self.load.started) - len(self.load.first_pids)} new processes ready, "
            f"{len(self.load.new_pids)} new pids answered",
            f"{self.what} latency: steady p99 {_ms(percentile(self.steady, 0.99))}, max "
            f"{_ms(max(self.steady, default=0.0))}; during replacements p99 "
            f"{_ms(percentile(self.during, 0.99))}, max {_ms(max(self.during, default=0.0))}; "
            f"{self.measured} during / steady p99 = {self.ratio:.2f} (target <= "
            f"{TARGET_RATIO:g})"]
        if self.cold_start is not None:
            lines.append(
                f"{self.what}: cold start (the front's first request, its child started for "
                f"it) {_ms(self.cold_start)}; the replacement children listened after median "
                f"{_ms(percentile(self.listening_after, 0.5))}, max "
                f"{_ms(max(self.listening_after, default=0.0))}")
        return lines

    def problems(self, ratio: float = TARGET_RATIO) -> list[str]:
        """The targets not met, :attr:`ratio` at most ``ratio`` among them; with a cold start
        measured, also: no request during a replacement as slow as it."""
        found = []
        if self.load.failures:
            found.append(f"{self.what}: {len(self.load.failures)} failed requests")
        unfinished = [r for r in self.replacements if r.done is None]
        if unfinished:
            found.append(f"{self.what}: {len(unfinished)} replacements not done within "
                         f"{_REPLACED_WITHIN:g} s (old {[r.old for r in unfinished]})")
        replaced = len(self.load.started) - len(self.load.first_pids)
        expected = sum(len(r.old) for r in self.replacements)
        if replaced < expected:
            found.append(f"{self.what}: {replaced} new processes ready for {expected} "
                         "replaced")
        if not self.steady or not self.during:
            found.append(f"{self.what}: nothing measured (steady {len(self.steady)}, during "
                         f"{len(self.during)} requests)")
            return found
        if self.ratio > ratio:
            found.append(timing(f"{self.what}: {self.measured} latency during replacements "
                                f"is {self.ratio:.2f} x the steady p99 (more than {ratio:g})"))
        if self.cold_start is not None and max(self.during) >= self.cold_start:
            found.append(timing(f"{self.what}: a request during a replacement took "
                                f"{_ms(max(self.during))}, as long as a cold start "
                                f"({_ms(self.cold_start)})"))
        return found


@dataclasses.dataclass
class RecycleFigures:
    backend: str
    model: str
    max_requests: int
    seconds: float
    load: Load
    recycles: list[int]        # the pids recycled for max_requests
    other_replacements: list[tuple[int, str]]
    finished: bool             # every recycle begun finished (its old process stopped)

    @property
    def what(self) -> str:
        return f"max_requests = {self.max_requests} ({self.model}, {self.backend})"

    def lines(self) -> list[str]:
        failures = self.load.failures
        kinds = sorted({a.failure or str(a.status) for a in failures})
        latencies = [a.done - a.sent for a in self.load.answers if a.status]
        return [f"{self.what}: {len(self.recycles)} recycles in {self.seconds:.0f} s under "
                f"{self.load.clients} keep-alive clients ("
                f"{len(self.load.started) - len(self.load.first_pids)} new processes ready, "
                f"{len(self.load.new_pids)} new pids answered), {len(self.load.answers)} "
                f"requests, {len(failures)} failed ({', '.join(kinds) or 'none'}); "
                f"{self.load.connections} connections opened; p99 "
                f"{_ms(percentile(latencies, 0.99))}, max {_ms(max(latencies, default=0.0))}"]

    def problems(self) -> list[str]:
        found = []
        if not self.recycles:
            found.append(f"{self.what}: no recycle happened: nothing was measured")
        if self.load.failures:
            found.append(f"{self.what}: {len(self.load.failures)} failed requests")
        if self.other_replacements:
            found.append(f"{self.what}: replacements for other reasons: "
                         f"{self.other_replacements}")
        if not self.finished:
            found.append(f"{self.what}: recycles not finished {_REPLACED_WITHIN:g} s after "
                         "the load")
        return found


# -- runs -----------------------------------------------------------------------------------


async def _loaded(host: Served, clients: int,
                  during: Callable[[], Awaitable[None]]) -> tuple[Load, float]:
    """Run ``await during()`` under ``clients`` keep-alive clients; the load seen and the
    seconds it ran."""
    load = Clients(host.port, clients, _FOREVER)
    first = set(host.serving())
    stop = anyio.Event()
    started = now()

    async def then_stop() -> None:
        try:
            await during()
        finally:
            stop.set()

    async with anyio.create_task_group() as task_group:
        task_group.start_soon(load.run, stop)
        task_group.start_soon(then_stop)
    return (Load(clients, load.answers, len(load.opened), first, host.started()),
            now() - started)


async def cold_start(host: Served) -> float:
    """The latency of a lazy front's first request (which starts its child)."""
    sent = now()
    response = await request_once(host.port, build("GET", "/features"), START_TIMEOUT)
    assert response.status == 200, response
    return now() - sent


async def reloads(host: Served, settings: Reloads,
                  trigger: Literal["sighup", "change"] = "sighup") -> ReloadFigures:
    """Trigger ``settings.reloads`` replacements of every process of ``host`` under load
    (``sighup``: SIGHUP; ``change``: an edit of ``hostkit.toml``, which needs
    ``restart_on_config_change``); see the module docstring. With ``change`` the front is
    expected lazy (:class:`Served`): its first request measures the cold start."""
    cold = await cold_start(host) if trigger == "change" else None
    replacements: list[Replacement] = []

    async def triggers() -> None:
        next_at = now() + settings.steady
        for number in range(1, settings.reloads + 1):
            await anyio.sleep(max(0.0, next_at - now()))
            replacement = Replacement(now(), host.serving())
            replacements.append(replacement)
            _trigger(host, trigger, number)
            replacement.done = await _wait_stopped(host, lambda: replacement.old)
            if replacement.done is None:
                return
            next_at = replacement.at + settings.interval
        await anyio.sleep(1.0)  # steady again after the last one

    load, seconds = await _loaded(host, settings.clients, triggers)
    start = min((a.sent for a in load.answers), default=0.0) + _WARM_UP
    steady, during = [], []
    for answer in load.answers:
        if not answer.status:
            continue
        if any(r.during(answer) for r in replacements):
            during.append(answer.done - answer.sent)
        elif answer.sent >= start:
            steady.append(answer.done - answer.sent)
    listening = [ms / 1000 for pid, ms in _listening_ms(host.program)
                 if pid not in load.first_pids] if trigger == "change" else []
    return ReloadFigures(host.backend, host.model, trigger, seconds, load, replacements,
                         steady, during, cold, listening)


def _listening_ms(program: Program) -> list[tuple[int, float]]:
    """``(pid, ms)`` of every "child pid N listening after M ms" line of ``program``."""
    return [listened for line in list(program.lines) if (listened := child_listening(line))]


async def recycles(host: Served, settings: Recycles) -> RecycleFigures:
    """Load ``host`` (started with ``max_requests``) for ``settings.seconds``; the recycles
    it did meanwhile, each waited for until its old process stopped (so it counts whole,
    and the host is not stopped in the middle of one)."""
    async def wait() -> None:
        await anyio.sleep(settings.seconds)

    load, seconds = await _loaded(host, settings.clients, wait)
    finished = await _wait_stopped(
        host, lambda: [pid for pid, _ in host.replacements()]) is not None
    load.started = host.started()
    reason = f"(workers.max_requests = {settings.max_requests})"
    done = host.replacements()
    return RecycleFigures(host.backend, host.model, settings.max_requests, seconds, load,
                          [pid for pid, why in done if why.endswith(reason)],
                          [(pid, why) for pid, why in done if not why.endswith(reason)],
                          finished)


# -- each scenario from start to stop (CI's tests and python -m tests.hardening) ------------


def measure_sighups(backend: str, model: str, settings: Reloads) -> ReloadFigures:
    """:func:`reloads` by SIGHUP of the probe in ``model``, started and stopped here."""
    with Served(backend, model) as host:
        return anyio.run(reloads, host, settings, backend=backend)


def measure_changes(backend: str, settings: Reloads) -> ReloadFigures:
    """:func:`reloads` by configuration changes of a lazy OutOfProcess front with
    ``restart_on_config_change``, started and stopped here."""
    with Served(backend, "OutOfProcess", module={"restart_on_config_change": True},
                lazy=True) as host:
        return anyio.run(reloads, host, settings, "change", backend=backend)


def measure_recycles(backend: str, model: str, settings: Recycles) -> RecycleFigures:
    """:func:`recycles` of the probe in ``model`` with ``settings.max_requests``, started and
    stopped here."""
    with Served(backend, model, recycling={"max_requests": settings.max_requests}) as host:
        return anyio.run(recycles, host, settings, backend=backend)
