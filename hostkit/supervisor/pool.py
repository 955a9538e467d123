"""The supervisor's workers: start them, wait for ready, replace them, stop them.

A :class:`WorkerPool` keeps one worker running in each of ``[workers] processes`` slots. A
worker that exits without being asked to is replaced at once; each such exit, and each
start that fails (an exit before ready, no ready within ``startup_time_limit``), is a
failure for the rapid-fail budget. Past ``rapid_fails_per_minute`` no slot starts a worker
until the budget allows it again. While the app is offline no worker runs. Every worker is a
:class:`~hostkit.processes.ManagedProcess`: it dies with the supervisor, even one killed with
SIGKILL, and leads its own process group (so its own children are stopped with it).
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import logging
import math
import os
import signal
import socket
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import anyio
from anyio.abc import TaskGroup, TaskStatus

from hostkit.configuration.tables import HealthOptions, WorkersOptions
from hostkit.metrics import WORKER_PROCESS, exit_reason
from hostkit.processes import ManagedProcess, ProcessSpec, RapidFailBudget
from hostkit.processes.rapid_fail import MINUTE
from hostkit.processes.recycling import MEMORY_CHECK_INTERVAL, RecyclePolicy
from hostkit.worker_contract import (
    HEALTH_FAILED,
    HEALTH_OK,
    RECYCLE,
    SupervisorChannel,
    WorkerContract,
)

if TYPE_CHECKING:
    from hostkit.metrics import Metrics

logger = logging.getLogger("hostkit.supervisor")

#: Seconds a worker asked to stop at once (a second signal) has before it is killed.
STOP_NOW_GRACE = 3.0


@dataclasses.dataclass(eq=False)
class Worker:
    """One worker process in a slot; ``ready`` once it reported that its host started."""

    process: ManagedProcess
    slot: int
    channel: SupervisorChannel
    ready: bool = False
    #: its failure was counted already (a failed start), so its exit is not counted again.
    failure_counted: bool = False
    #: stopped because a new worker replaced it.
    recycled: bool = False

    @property
    def pid(self) -> int:
        return self.process.pid


@dataclasses.dataclass(frozen=True)
class Unavailable:
    """Why no worker serves: the offline file's ``content``, or (``None``) the rapid-fail
    budget, with the seconds until the next start."""

    content: bytes | None
    retry_after: int


class _Slot:
    def __init__(self, index: int):
        self.index = index
        self.worker: Worker | None = None
        self.lock = anyio.Lock()  # one start at a time: a replacement, or a crash's


class WorkerPool:
    """Runs ``options.processes`` workers of ``command``; see the module docstring.

    Call :meth:`run` in a task group (it reports started once every slot's first start has
    succeeded or failed); then :meth:`set_offline`, :meth:`replace_all` and :meth:`drain`.
    Cancelling :meth:`run` stops the workers that are left at once (a second SIGINT, then
    SIGKILL after :data:`STOP_NOW_GRACE`), shielded and bounded.
    """

    def __init__(self, *, command: Sequence[str], cwd: Path, environment: Mapping[str, str],
                 listeners: Sequence[tuple[socket.socket, str]], options: WorkersOptions,
                 health: HealthOptions, stop_limit: float, rapid_fail_window: float = MINUTE,
                 metrics: Metrics | None = None):
        """``listeners`` are the bound sockets with the URL each serves; ``health`` says how
        workers report their probes of the app (only InProcess workers probe); ``stop_limit``
        is how long a worker asked to stop (SIGTERM) may drain before it is killed;
        ``metrics`` (None: none) counts the workers' starts, exits and recycles."""
        self.metrics = metrics
        self.command = list(command)
        self.cwd = cwd
        self.environment = dict(environment)
        self.listeners = list(listeners)
        self.stop_limit = stop_limit
        self.configure(options, health)
        self._slots = [_Slot(i) for i in range(self.options.processes)]
        self._budget = RapidFailBudget(self.options.rapid_fails_per_minute, rapid_fail_window)
        self._offline: bytes | None = None
        self._online = anyio.Event()
        self._online.set()
        self._draining = False
        #: every worker started and not reaped yet: in a slot, or still starting in one.
        self._live: set[Worker] = set()
        self._changed = anyio.Event()
        self._task_group: TaskGroup | None = None

    def configure(self, options: WorkersOptions, health: HealthOptions) -> None:
        """Take new settings (a reload): the next workers start, are recycled and have their
        health watched under them. The number of workers is kept."""
        self.options = options
        self.health = health
        self.recycling = RecyclePolicy.from_options(options)

    # -- what the supervisor asks ---------------------------------------------------------

    def workers(self) -> list[Worker]:
        """The workers that are ready and running now."""
        return [slot.worker for slot in self._slots
                if slot.worker is not None and slot.worker.ready and slot.worker.process.running]

    def unavailable(self) -> Unavailable | None:
        """Why requests cannot reach a worker now, or ``None``: some worker serves, or one is
        starting (connections then wait in the listen backlog for it)."""
        if self.workers():
            return None
        if self._offline is not None:
            return Unavailable(self._offline, 0)
        exhausted = self._budget.exhausted()
        if exhausted is not None:
            return Unavailable(None, exhausted.retry_after)
        return None

    async def wait_changed(self) -> None:
        """Return at the next change of what :meth:`unavailable` may say."""
        await self._changed.wait()

    def _notify(self) -> None:
        self._changed.set()
        self._changed = anyio.Event()

    # -- lifecycle ------------------------------------------------------------------------

    async def run(self, *, task_status: TaskStatus[None] = anyio.TASK_STATUS_IGNORED) -> None:
        """Keep every slot's worker running until cancelled; then stop the rest at once."""
        async with anyio.create_task_group() as task_group:
            self._task_group = task_group
            try:
                first_starts = [anyio.Event() for _ in self._slots]
                for slot, first in zip(self._slots, first_starts):
                    task_group.start_soon(self._keep_running, slot, first)
                task_group.start_soon(self._check_memory)
                for first in first_starts:
                    await first.wait()
                task_status.started()
                await anyio.sleep_forever()
            finally:
                with anyio.CancelScope(shield=True):
                    await self._stop_now()

    async def drain(self) -> None:
        """Stop every worker gracefully (SIGTERM: it drains under ``shutdown_timeout``) and
        start no other; returns once all have exited. The caller bounds the wait."""
        self._draining = True
        self._online.set()  # a slot waiting for the app to come online returns
        live = list(self._live)  # a replacement that is still starting too
        for worker in live:
            worker.process.stopping = True
            worker.process.signal_group(signal.SIGTERM)
        for worker in live:
            await worker.process.exited.wait()

    async def set_offline(self, content: bytes | None) -> None:
        """With ``content``: stop every worker and start none until called with ``None``."""
        self._offline = content
        if content is None:
            self._online.set()
            self._notify()
            return
        self._online = anyio.Event()
        self._notify()
        async with anyio.create_task_group() as stops:
            for slot in self._slots:
                if slot.worker is not None:
                    stops.start_soon(self._stop, slot.worker)

    def signal_workers(self, signum: int) -> None:
        """Send ``signum`` to every ready worker (not to their groups: their own children are
        theirs to tell)."""
        for worker in self.workers():
            with contextlib.suppress(ProcessLookupError):  # it exited just now
                os.kill(worker.pid, signum)

    async def replace_all(self, reason: str) -> None:
        """Replace every worker, one slot at a time (:meth:`replace`)."""
        for slot in self._slots:
            if slot.worker is not None:
                await self.replace(slot, slot.worker, reason)

    async def replace(self, slot: _Slot, old: Worker, reason: str) -> None:
        """Rolling replacement of ``old``, the worker of ``slot``: a new worker is started and
        ready before ``old`` is asked to stop (it then drains), so requests always have a
        worker. A new worker that fails to start (or a spent rapid-fail budget) leaves ``old``
        serving. Nothing happens when ``old`` is no longer the slot's running worker."""
        async with slot.lock:
            if slot.worker is not old or not old.process.running or self._draining:
                return
            logger.info("replacing worker pid %d (slot %d): %s", old.pid, slot.index, reason)
            exhausted = self._budget.exhausted()
            if exhausted is not None:
                logger.error("cannot replace worker pid %d now: %d worker failures in the last "
                             "minute; it keeps serving", old.pid, exhausted.failures)
                return
            new = await self._start(slot)
            if new is None:
                if not self._draining:
                    logger.error("the replacement of worker pid %d failed to start; it "
                                 "keeps serving", old.pid)
                return
            slot.worker = new
        old.recycled = True
        if self.metrics is not None:
            self.metrics.process_recycled(WORKER_PROCESS, reason)
        await self._stop(old)

    # -- one slot -------------------------------------------------------------------------

    async def _keep_running(self, slot: _Slot, first_start: anyio.Event) -> None:
        while not self._draining:
            worker = slot.worker
            if worker is not None and worker.process.running:
                await worker.process.exited.wait()
                continue
            if self._offline is not None:
                first_start.set()
                await self._online.wait()
                continue
            exhausted = self._budget.exhausted()
            if exhausted is not None:
                first_start.set()
                await anyio.sleep(exhausted.retry_after)
                continue
            async with slot.lock:
                if slot.worker is None or not slot.worker.process.running:
                    slot.worker = await self._start(slot)
            first_start.set()

    async def _start(self, slot: _Slot) -> Worker | None:
        """Start a worker for ``slot`` and wait for its ready; ``None`` when it failed (the
        failure is logged and counted)."""
        assert self._task_group is not None, "WorkerPool.run() is not running"
        contract, channel, theirs = WorkerContract.new(self.listeners)
        process = ManagedProcess(ProcessSpec(
            self.command, self.cwd, {**self.environment, **contract.to_environ()},
            inherit_output=True, pass_fds=contract.descriptors))
        worker = Worker(process, slot.index, channel)
        started = time.monotonic()
        self._notify()
        self._live.add(worker)
        try:
            await self._task_group.start(functools.partial(
                process.run, on_exit=lambda _: self._exited(worker)))
        except OSError as error:
            self._live.discard(worker)
            channel.close()
            logger.error("cannot start a worker (%s): %s", self.command[0], error)
            self._record_failure(None)
            return None
        finally:
            theirs.close()  # the worker has its own descriptor now
        if self.metrics is not None:
            self.metrics.process_started(WORKER_PROCESS)
        ready = False
        try:
            with anyio.move_on_after(self.options.startup_time_limit) as deadline:
                ready = await channel.wait_ready()
        except BaseException:
            process.kill()  # cancelled while it starts: nobody else would stop it
            raise
        if not ready and process.stopping:  # stopped while it started: the pool drains
            await process.exited.wait()
            return None
        if not ready:
            if deadline.cancelled_caught:
                logger.error("worker pid %d did not report ready within "
                             "workers.startup_time_limit = %g s; killing it", worker.pid,
                             self.options.startup_time_limit)
                process.kill()
            await process.exited.wait()
            if not deadline.cancelled_caught:
                logger.error("worker pid %d %s before it was ready (its output is above)",
                             worker.pid, process.describe_exit())
            self._record_failure(worker)
            return None
        if self._draining:  # ready just as the pool drains: it takes no request
            await self._stop(worker)
            return None
        worker.ready = True
        logger.info("worker pid %d ready after %.0f ms (slot %d)", worker.pid,
                    (time.monotonic() - started) * 1000, slot.index)
        self._task_group.start_soon(self._watch, slot, worker)
        self._notify()
        return worker

    # -- watching a worker ----------------------------------------------------------------

    async def _watch(self, slot: _Slot, worker: Worker) -> None:
        """Read ``worker``'s messages until it exits, and replace it when it asks to be
        recycled, when ``app_failures`` health reports in a row failed or did not come (its
        loop is stuck), or after ``max_lifetime``."""
        health = self.health
        # A report is due every app_interval, plus the probe's own timeout, plus leeway.
        report_due = health.app_interval * 2 + 1 if health.app_path else math.inf
        lifetime_end = (anyio.current_time() + self.recycling.max_lifetime
                        if self.recycling.max_lifetime else math.inf)
        failures = 0
        while worker.process.running:
            wait = min(report_due, lifetime_end - anyio.current_time())
            with anyio.move_on_after(max(wait, 0)) as waited:
                message = await worker.channel.receive()
            if waited.cancelled_caught:
                if anyio.current_time() >= lifetime_end:
                    await self.replace(slot, worker, self.recycling.lifetime_reason())
                    return
                message = f"{HEALTH_FAILED} no health report for {report_due:g} s"
            if message is None:
                return
            if message.startswith(RECYCLE):
                await self.replace(slot, worker, message[len(RECYCLE):].strip())
                return
            if message == HEALTH_OK:
                failures = 0
            elif message.startswith(HEALTH_FAILED):
                failures += 1
                logger.warning("worker pid %d failed health check %d of %d: %s", worker.pid,
                               failures, health.app_failures,
                               message[len(HEALTH_FAILED):].strip())
                if failures >= health.app_failures:
                    await self.replace(slot, worker, f"{failures} failed health checks of "
                                                     f"health.app_path = {health.app_path}")
                    return

    async def _check_memory(self) -> None:
        """Every :data:`MEMORY_CHECK_INTERVAL` seconds, replace the workers over
        ``max_memory`` (nothing to do without it)."""
        while True:
            await anyio.sleep(MEMORY_CHECK_INTERVAL)
            if not self.recycling.max_memory_mib:
                continue
            for slot in self._slots:
                worker = slot.worker
                if worker is not None and worker.ready and worker.process.running:
                    reason = self.recycling.over_memory(worker.pid)
                    if reason is not None:
                        self._task_group_or_fail().start_soon(self.replace, slot, worker,
                                                               reason)

    def _task_group_or_fail(self) -> TaskGroup:
        assert self._task_group is not None, "WorkerPool.run() is not running"
        return self._task_group

    def _exited(self, worker: Worker) -> None:
        """Called in the loop once ``worker`` is reaped: a failure unless it was asked to
        stop, or its failed start was counted already."""
        self._live.discard(worker)
        worker.channel.close()
        if self.metrics is not None:
            self.metrics.process_exited(WORKER_PROCESS, exit_reason(
                served=worker.ready, asked_to_stop=worker.process.stopping,
                replaced=worker.recycled, owner_stopping=self._draining), worker.pid)
        if worker.ready and not worker.process.stopping:
            logger.error("worker pid %d %s; starting another", worker.pid,
                         worker.process.describe_exit())
            self._record_failure(worker)
        elif worker.ready:
            # Asked to stop and killed: by the supervisor, past its stop limit, not for memory.
            how = ("killed by SIGKILL" if worker.process.returncode == -signal.SIGKILL
                   else worker.process.describe_exit())
            logger.info("worker pid %d stopped (%s)", worker.pid, how)
        self._notify()

    def _record_failure(self, worker: Worker | None) -> None:
        if worker is not None:
            if worker.failure_counted:
                return
            worker.failure_counted = True
        was_exhausted = self._budget.exhausted() is not None
        self._budget.record()
        exhausted = self._budget.exhausted()
        if exhausted is not None and not was_exhausted:
            logger.error(
                "%d worker failures in the last minute (more than "
                "workers.rapid_fails_per_minute = %d): no worker starts for %d s; while none "
                "is up, requests get 503", exhausted.failures,
                self.options.rapid_fails_per_minute, exhausted.retry_after)
        self._notify()

    # -- stopping -------------------------------------------------------------------------

    async def _stop(self, worker: Worker) -> None:
        """SIGTERM the worker (it drains), SIGKILL it after ``stop_limit``, wait for the reap."""
        def overdue() -> None:
            logger.warning("worker pid %d did not stop within %g s; killing it", worker.pid,
                           self.stop_limit)

        await worker.process.stop(self.stop_limit, overdue=overdue)

    async def _stop_now(self) -> None:
        """Every worker still running: a second SIGINT (its host stops at once), SIGKILL
        after :data:`STOP_NOW_GRACE`, then the reap."""
        self._draining = True
        running = [worker for worker in self._live if worker.process.running]
        for worker in running:
            worker.process.stopping = True
            worker.process.signal_group(signal.SIGINT)
        async with anyio.create_task_group() as stops:
            for worker in running:
                stops.start_soon(worker.process.stop, STOP_NOW_GRACE)
