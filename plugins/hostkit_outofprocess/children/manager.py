"""The front's children: start on demand, replace after a crash, offline, drain, stop.

One :class:`ChildManager` per front owns ``processes_per_application`` slots; each slot runs
at most one :class:`Child` at a time and starts a new one when a request needs it. All child
work runs in the manager's task group, so nothing outlives the front. Each child is a
:class:`~hostkit.plugin.ManagedProcess`: it dies with the front, even a front killed with
SIGKILL, and leads its own process group.
"""

from __future__ import annotations

import functools
import logging
import time

import anyio
from anyio.abc import TaskGroup, TaskStatus

from hostkit.plugin import (
    ChildContract,
    ManagedProcess,
    ProcessSpec,
    RapidFailBudget,
    free_loopback_port,
)

from hostkit_outofprocess.children.child import Child
from hostkit_outofprocess.children.errors import (
    AppOffline,
    ChildStartupFailure,
    ChildUnavailable,
    RapidFailLimit,
)
from hostkit_outofprocess.children.settings import ChildSettings
from hostkit_outofprocess.children.stdout_log import StdoutLog

logger = logging.getLogger("hostkit.module")

# Connect attempts while a child starts back off from the first to the last delay.
_PROBE_FIRST_DELAY = 0.005
_PROBE_LAST_DELAY = 0.1
# The exit may be seen before the last output is read: how long to give the reader.
_OUTPUT_GRACE = 0.2


class _Slot:
    """One of ``processes_per_application`` places a child runs in."""

    def __init__(self, index: int):
        self.index = index
        self.child: Child | None = None
        self.starting: anyio.Event | None = None
        self.start_error: ChildUnavailable | None = None


class ChildManager:
    """Starts children on demand, restarts them after a crash, stops them all on shutdown.

    Call :meth:`run` in a task group (it reports started at once, or after the eager start);
    requests call :meth:`acquire` for a listening child; the front calls :meth:`recycle` on
    a configuration change, :meth:`set_offline` for ``app_offline_file``, and cancels
    :meth:`run` to stop, which stops every child within ``shutdown_time_limit``.
    """

    def __init__(self, settings: ChildSettings, processes: int, *, eager_start: bool = False,
                 rapid_fail_window: float | None = None):
        """``rapid_fail_window`` replaces the budget's rolling minute (tests shorten it)."""
        self.settings = settings
        self.eager_start = eager_start
        self._slots = [_Slot(i) for i in range(processes)]
        self._next_slot = 0
        allowed = settings.rapid_fails_per_minute
        self._budget = (RapidFailBudget(allowed) if rapid_fail_window is None
                        else RapidFailBudget(allowed, rapid_fail_window))
        self._task_group: TaskGroup | None = None
        self._offline: bytes | None = None

    # -- lifecycle --------------------------------------------------------------------------

    async def run(self, *, task_status: TaskStatus[None] = anyio.TASK_STATUS_IGNORED) -> None:
        """Own the children until cancelled, then stop them all (shielded, bounded).

        The stop runs inside the task group: each child's owner task waits for its reap
        whatever is cancelled, and the stop makes the reap happen.
        """
        async with anyio.create_task_group() as task_group:
            self._task_group = task_group
            try:
                if self.eager_start:
                    for slot in self._slots:
                        try:
                            await self._acquire_slot(slot)
                        except ChildUnavailable as error:
                            logger.error("eager start failed: %s", error)
                task_status.started()
                await anyio.sleep_forever()
            finally:
                with anyio.CancelScope(shield=True):
                    await self.stop_all()

    async def stop_all(self) -> None:
        """Ask every child to stop, kill those still running after the time limit, reap."""
        async with anyio.create_task_group() as task_group:
            for slot in self._slots:
                if slot.child is not None:
                    task_group.start_soon(self._stop_child, slot.child)
                    slot.child = None

    async def recycle(self) -> None:
        """Drain the running children; the next request starts new ones."""
        await self.stop_all()

    @property
    def offline(self) -> bool:
        return self._offline is not None

    async def set_offline(self, content: bytes | None) -> None:
        """With ``content``: stop the children and answer 503 with it. ``None``: online again."""
        self._offline = content
        if content is not None:
            await self.stop_all()

    # -- serving ----------------------------------------------------------------------------

    async def acquire(self) -> Child:
        """A listening child for the next request, starting one if its slot has none.

        Requests arriving while a child starts wait for that start. Raises
        :class:`AppOffline`, :class:`RapidFailLimit` or :class:`ChildStartupFailure`.
        """
        slot = self._slots[self._next_slot]
        self._next_slot = (self._next_slot + 1) % len(self._slots)
        return await self._acquire_slot(slot)

    def children(self) -> list[Child]:
        """The children running now."""
        return [s.child for s in self._slots if s.child is not None and s.child.running]

    async def _acquire_slot(self, slot: _Slot) -> Child:
        while True:
            if self._offline is not None:
                raise AppOffline(self._offline)
            child = slot.child
            if child is not None and child.running:
                return child
            if slot.starting is not None:
                await slot.starting.wait()
                if slot.start_error is not None:
                    raise slot.start_error
                continue
            self._check_budget()
            slot.starting = done = anyio.Event()
            slot.start_error = None
            try:
                slot.child = await self._start(slot)
            except ChildUnavailable as error:
                slot.start_error = error
                raise
            finally:
                slot.starting = None
                done.set()

    def _check_budget(self) -> None:
        exhausted = self._budget.exhausted()
        if exhausted is not None:
            raise RapidFailLimit(
                f"{exhausted.failures} child failures in the last minute (more than "
                f"module.rapid_fails_per_minute = {self.settings.rapid_fails_per_minute})",
                exhausted.retry_after)

    def _record_failure(self, child: Child | None = None) -> None:
        if child is not None:
            if child.failure_counted:
                return
            child.failure_counted = True
        self._budget.record()

    async def _start(self, slot: _Slot) -> Child:
        assert self._task_group is not None, "ChildManager.run() is not running"
        settings = self.settings
        contract = ChildContract.new(free_loopback_port(), settings.path_base)
        log = StdoutLog.open(settings.log_prefix) if settings.log_prefix else None
        process = ManagedProcess(ProcessSpec(
            settings.command, settings.cwd, {**settings.environment, **contract.to_environ()},
            output=log.file if log is not None else None))
        child = Child(process, contract, log.path if log is not None else None)
        started = time.monotonic()
        try:
            await self._task_group.start(functools.partial(
                process.run, on_exit=lambda _: self._report_exit(slot, child)))
        except OSError as error:
            self._record_failure()
            raise ChildStartupFailure(f"cannot start {settings.command[0]}: {error}") from None
        finally:
            if log is not None:
                log.file.close()  # the child has its own descriptor now
        if log is not None:
            child.log_path = log.name_for(child.pid)
        logger.info("started child pid %d on 127.0.0.1:%d (slot %d)", child.pid, child.port,
                    slot.index)
        try:
            await self._wait_listening(child)
        except ChildStartupFailure:
            self._record_failure(child)
            raise
        except BaseException:
            # Cancelled while it starts (the front stops): no slot holds it, so no stop
            # sequence would reach it.
            process.kill()
            raise
        logger.info("child pid %d listening after %.0f ms", child.pid,
                    (time.monotonic() - started) * 1000)
        return child

    async def _wait_listening(self, child: Child) -> None:
        """Return once the child accepts a connection on its port.

        A child need not be hostkit, so the port itself is the only signal there is (as ANCM
        does): connect attempts back off from 5 ms to 100 ms, and the child's exit ends the
        wait at once.
        """
        limit = self.settings.startup_time_limit
        process = child.process
        delay = _PROBE_FIRST_DELAY
        with anyio.move_on_after(limit):
            while process.running:
                try:
                    stream = await anyio.connect_tcp("127.0.0.1", child.port)
                except OSError:
                    with anyio.move_on_after(delay):
                        await process.exited.wait()
                    delay = min(delay * 2, _PROBE_LAST_DELAY)
                    continue
                await stream.aclose()
                return
            with anyio.move_on_after(_OUTPUT_GRACE):
                await process.output_done.wait()
            raise ChildStartupFailure(f"the child (pid {child.pid}) {child.describe_exit()} "
                                      "while starting", child.output())
        process.kill()
        await process.exited.wait()
        raise ChildStartupFailure(
            f"the child (pid {child.pid}) did not listen on 127.0.0.1:{child.port} within "
            f"module.startup_time_limit = {limit:g} s; it was killed", child.output())

    def _report_exit(self, slot: _Slot, child: Child) -> None:
        """Called in the loop once ``child`` is reaped: a failure unless it was asked to stop."""
        if not child.process.stopping:
            self._record_failure(child)
            tail = child.output().strip()
            logger.error("child pid %d %s%s", child.pid, child.describe_exit(),
                         f"; its last output:\n{tail[-2000:]}" if tail else "")
        else:
            logger.info("child pid %d stopped (%s)", child.pid, child.describe_exit())
        if slot.child is child:
            slot.child = None

    async def _stop_child(self, child: Child) -> None:
        """SIGTERM the child's group, SIGKILL after ``shutdown_time_limit``, wait for the reap."""
        limit = self.settings.shutdown_time_limit

        def overdue() -> None:
            logger.warning("child pid %d did not stop within module.shutdown_time_limit = %g s;"
                           " killing it", child.pid, limit)

        await child.process.stop(limit, overdue=overdue)
