"""The front's children: start on demand, replace after a crash, recycle, offline, stop.

One :class:`ChildManager` per front owns ``processes_per_application`` slots; each slot runs
at most one serving :class:`Child` at a time and starts a new one when a request needs it.
Every planned restart is a **rolling replacement** (:meth:`ChildManager.replace`): a new child
is started and ready (listening, and answering ``[health] app_path`` with 2xx when that is
set) while the old one serves, then takes the slot's new requests; only then is the old one
drained and stopped. A new child that fails to start leaves the old one serving. A reload
replaces every child that way, one slot at a time; ``[workers] max_requests``,
``max_lifetime`` and ``max_memory`` and failed health probes replace one.

All child work runs in the manager's task group, so nothing outlives the front. Each child is
a :class:`~hostkit.plugin.ManagedProcess`: it dies with the front, even a front killed with
SIGKILL, and leads its own process group.
"""

from __future__ import annotations

import functools
import logging
import signal
import time
from collections.abc import Awaitable, Callable, Coroutine
from typing import Any

import anyio
from anyio.abc import TaskGroup, TaskStatus

from hostkit.plugin import (
    CHILD_PROCESS,
    MEMORY_CHECK_INTERVAL,
    ChildContract,
    ManagedProcess,
    Metrics,
    ProcessSpec,
    RapidFailBudget,
    RecyclePolicy,
    exit_reason,
    free_loopback_port,
)

from hostkit_outofprocess.children.child import Child
from hostkit_outofprocess.children.errors import (
    AppOffline,
    ChildStartupFailure,
    ChildUnavailable,
    RapidFailLimit,
)
from hostkit_outofprocess.children.health import HealthCheck, probe_child
from hostkit_outofprocess.children.settings import ChildSettings
from hostkit_outofprocess.children.stdout_log import StdoutLog

logger = logging.getLogger("hostkit.module")

# Connect attempts (and health probes) while a child starts back off from the first to the
# last delay.
_PROBE_FIRST_DELAY = 0.005
_PROBE_LAST_DELAY = 0.1
# The exit may be seen before the last output is read: how long to give the reader.
_OUTPUT_GRACE = 0.2

#: Seconds a child asked to stop at once (the front's second signal) has before it is killed.
STOP_NOW_GRACE = 3.0

#: What a child that no longer takes new requests is given to finish those it has; called by
#: the manager, which bounds the wait with ``shutdown_time_limit``, before it stops the child.
Drain = Callable[[Child], Awaitable[None]]


class _Slot:
    """One of ``processes_per_application`` places a child runs in."""

    def __init__(self, index: int):
        self.index = index
        self.child: Child | None = None
        #: set while a child starts for the slot (on demand or to replace its child).
        self.starting: anyio.Event | None = None
        self.start_error: ChildUnavailable | None = None
        #: held by a replacement: one at a time per slot.
        self.replacing = anyio.Lock()


class ChildManager:
    """Starts children on demand, restarts them after a crash, replaces them without a gap,
    stops them all on shutdown.

    Call :meth:`run` in a task group (it reports started at once, or after the eager start);
    requests call :meth:`acquire` for a listening child; the front calls :meth:`reconfigure`
    and :meth:`replace_all` on a reload, :meth:`set_offline` for ``app_offline_file``,
    :meth:`begin_shutdown` once it stops taking requests, and cancels :meth:`run` to stop,
    which stops every child (old and new) within ``shutdown_time_limit``.

    ``drain`` is called for a replaced child once it no longer gets new requests, before it
    is asked to stop: it returns once the requests the front sent it are done.
    """

    def __init__(self, settings: ChildSettings, processes: int, *, eager_start: bool = False,
                 rapid_fail_window: float | None = None, drain: Drain | None = None,
                 metrics: Metrics | None = None):
        """``rapid_fail_window`` replaces the budget's rolling minute (tests shorten it);
        ``metrics`` (None: none) counts the children's starts, exits and recycles."""
        self.metrics = metrics
        #: children that got a slot (served), until reaped: what their exit is counted as.
        self._served: set[Child] = set()
        self.settings = settings
        self.eager_start = eager_start
        self._drain = drain
        self._slots = [_Slot(i) for i in range(processes)]
        self._next_slot = 0
        allowed = settings.rapid_fails_per_minute
        self._budget = (RapidFailBudget(allowed) if rapid_fail_window is None
                        else RapidFailBudget(allowed, rapid_fail_window))
        self._task_group: TaskGroup | None = None
        self._offline: bytes | None = None
        self._closing = False
        #: whether the last child start failed (until one succeeds): a reason not to be ready.
        self._start_failed = False
        #: replaced children not reaped yet: draining, then stopping.
        self._retiring: set[Child] = set()
        #: children :meth:`stop_all` is stopping, and the scopes of those graceful stops,
        #: which :meth:`stop_now` cuts short.
        self._being_stopped: set[Child] = set()
        self._graceful_stops: set[anyio.CancelScope] = set()
        self._stopping_now = False

    # -- lifecycle --------------------------------------------------------------------------

    async def run(self, *, task_status: TaskStatus[None] = anyio.TASK_STATUS_IGNORED) -> None:
        """Own the children until cancelled, then stop them all (shielded, bounded).

        The stop runs inside the task group: each child's owner task waits for its reap
        whatever is cancelled, and the stop makes the reap happen.
        """
        try:
            async with anyio.create_task_group() as task_group:
                self._task_group = task_group
                try:
                    if self.eager_start:
                        for slot in self._slots:
                            try:
                                self._check_budget()
                                await self._start_in(slot)
                            except ChildUnavailable as error:
                                logger.error("eager start failed: %s", error)
                    task_status.started()
                    await anyio.sleep_forever()
                finally:
                    self._closing = True
                    with anyio.CancelScope(shield=True):
                        await self.stop_all()
        finally:
            self._task_group = None

    async def stop_all(self) -> None:
        """Ask every child to stop (those being replaced too), kill those still running after
        the time limit, reap. After :meth:`stop_now`, at once: every child still running
        is killed :data:`STOP_NOW_GRACE` seconds after its second signal."""
        children = [slot.child for slot in self._slots if slot.child is not None]
        for slot in self._slots:
            slot.child = None
        children += [child for child in self._retiring if child not in children]
        self._being_stopped.update(children)
        graceful = anyio.CancelScope()
        self._graceful_stops.add(graceful)
        try:
            with graceful:
                if not self._stopping_now:
                    async with anyio.create_task_group() as task_group:
                        for child in children:
                            task_group.start_soon(self._stop_child, child)
            if self._stopping_now:
                async with anyio.create_task_group() as task_group:
                    for child in children:
                        task_group.start_soon(child.process.stop, STOP_NOW_GRACE)
        finally:
            self._graceful_stops.discard(graceful)
            self._being_stopped.difference_update(children)

    def stop_now(self) -> None:
        """The front stops at once (the host's second SIGINT/SIGTERM): every running child
        gets a signal now (SIGINT: its first, or its second, which makes a hostkit child stop
        at once too), a graceful stop in progress is cut short, and the stop that follows
        (:meth:`stop_all`, when :meth:`run` is cancelled) gives each child
        :data:`STOP_NOW_GRACE` seconds after a SIGTERM before it kills it. Returns at once;
        called in the front's event loop."""
        self._closing = True
        self._stopping_now = True
        live = {slot.child for slot in self._slots if slot.child is not None}
        live |= self._retiring | self._being_stopped
        running = [child for child in live if child.running]
        if running:
            logger.warning("stopping %d child(ren) at once (pid %s): SIGINT now, SIGKILL %g s "
                           "after a SIGTERM", len(running),
                           ", ".join(str(child.pid) for child in running), STOP_NOW_GRACE)
        for child in running:
            child.process.stopping = True
            child.process.signal_group(signal.SIGINT)
        for graceful in list(self._graceful_stops):
            graceful.cancel()

    def begin_shutdown(self) -> None:
        """The front stops taking requests: no replacement starts from now on (the children
        serve what is in flight until :meth:`run` is cancelled)."""
        self._closing = True

    def reconfigure(self, settings: ChildSettings) -> None:
        """Start the next children with ``settings`` (a reload); the running ones go on until
        replaced (:meth:`replace_all`)."""
        self.settings = settings
        self._budget.allowed = settings.rapid_fails_per_minute

    @property
    def offline(self) -> bool:
        return self._offline is not None

    def unready_reason(self) -> str | None:
        """Why requests cannot all be served now, for the front's readiness: ``"offline"``
        (``app_offline_file`` exists), or, while a slot has no running child,
        ``"rapid-failed"`` (the rapid-fail budget allows no start) or ``"start-failed"``
        (the last start failed). None: every slot has a child, or the next request starts
        one (before the first start too: the child starts on the first request)."""
        if self._offline is not None:
            return "offline"
        if all(slot.child is not None and slot.child.running for slot in self._slots):
            return None
        if self._budget.exhausted() is not None:
            return "rapid-failed"
        return "start-failed" if self._start_failed else None

    async def set_offline(self, content: bytes | None) -> None:
        """With ``content``: stop the children and answer 503 with it. ``None``: online again."""
        self._offline = content
        if content is not None:
            await self.stop_all()

    # -- rolling replacement ----------------------------------------------------------------

    async def replace_all(self, reason: str) -> None:
        """Replace every running child by rolling replacement, one slot at a time (the next
        slot once the previous one's old child is stopped); returns once done. The work runs
        in the manager's task group, so the front's stop ends it; a slot without a running
        child is left to start on demand."""
        task_group = self._task_group
        if task_group is None or self._closing:
            return
        done = anyio.Event()

        async def replace_each() -> None:
            try:
                for slot in self._slots:
                    await self.replace(slot.index, reason)
            finally:
                done.set()

        task_group.start_soon(replace_each)
        await done.wait()

    async def replace(self, index: int, reason: str, *, only: Child | None = None) -> bool:
        """Rolling replacement of slot ``index``'s child (only while it is ``only``, when
        given): start a new child, wait until it is ready, hand it the slot's new requests,
        then drain and stop the old one. Called in a task of the manager's group.

        Returns whether the old child is out of the slot: replaced, or no longer there. False
        when it keeps serving: the new child failed to start (logged, and counted against
        the rapid-fail budget), the budget allows no start, or the front is stopping. A slot
        has one replacement at a time; another waits for it.
        """
        slot = self._slots[index]
        async with slot.replacing:
            if slot.starting is not None:  # a start on demand, perhaps with what is replaced
                await slot.starting.wait()
            old = slot.child
            if old is None or not old.running or (only is not None and old is not only):
                return only is not None
            if self._closing or self._offline is not None:
                return False
            exhausted = self._budget.exhausted()
            if exhausted is not None:
                logger.error(
                    "cannot replace child pid %d (slot %d) now (%s): %d child failures in the "
                    "last minute (more than module.rapid_fails_per_minute = %d); it keeps "
                    "serving", old.pid, index, reason, exhausted.failures,
                    self.settings.rapid_fails_per_minute)
                return False
            logger.info("recycling child pid %d (slot %d): %s", old.pid, index, reason)
            try:
                new = await self._start_in(slot)
            except ChildUnavailable as error:
                logger.error("the new child for slot %d did not start, so child pid %d keeps "
                             "serving: %s", index, old.pid, error)
                return False
            logger.info("child pid %d replaces child pid %d (slot %d); stopping the old one",
                        new.pid, old.pid, index)
            if self.metrics is not None:
                self.metrics.process_recycled(CHILD_PROCESS, reason)
        await self._retire(old)
        return True

    async def _retire(self, child: Child) -> None:
        """Stop ``child``, which gets no new request any more, once what it was sent is done
        (:data:`Drain`, within ``shutdown_time_limit``): SIGTERM, SIGKILL after the limit."""
        if not child.running:
            return
        self._retiring.add(child)  # until it is reaped: the front's stop stops it too
        if self._drain is not None:
            with anyio.move_on_after(self.settings.shutdown_time_limit):
                await self._drain(child)
        await self._stop_child(child)

    # -- serving ----------------------------------------------------------------------------

    def acquire_nowait(self) -> Child | None:
        """The next slot's child for the next request if it runs (the common case), counted
        as :meth:`acquire` counts it; None, with nothing changed (the slot choice neither),
        when only :meth:`acquire` can answer: offline, or the slot has no running child."""
        if self._offline is not None:
            return None
        index = self._next_slot
        slot = self._slots[index]
        child = slot.child
        if child is None or not child.running:
            return None
        self._next_slot = (index + 1) % len(self._slots)
        self._hand_out(slot, child)
        return child

    async def acquire(self) -> Child:
        """A listening child for the next request, starting one if its slot has none.

        Requests arriving while a child starts wait for that start. Raises
        :class:`AppOffline`, :class:`RapidFailLimit` or :class:`ChildStartupFailure`.
        """
        slot = self._slots[self._next_slot]
        self._next_slot = (self._next_slot + 1) % len(self._slots)
        return await self._acquire_slot(slot)

    def children(self) -> list[Child]:
        """The children serving now (not those being replaced)."""
        return [s.child for s in self._slots if s.child is not None and s.child.running]

    async def _acquire_slot(self, slot: _Slot) -> Child:
        while True:
            if self._offline is not None:
                raise AppOffline(self._offline)
            child = slot.child
            if child is not None and child.running:
                self._hand_out(slot, child)
                return child
            if slot.starting is not None:
                await slot.starting.wait()
                if slot.start_error is not None:
                    raise slot.start_error
                continue
            self._check_budget()
            await self._start_in(slot)

    def _hand_out(self, slot: _Slot, child: Child) -> None:
        """``child``, ``slot``'s running child, takes a request: count it, and start its
        replacement once that count reaches ``workers.max_requests``."""
        child.served = served = child.served + 1
        if served == child.recycle_at:
            self._spawn(self._recycle_after_requests, slot, child)

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

    def _spawn(self, function: Callable[..., Coroutine[Any, Any, Any]], *args: Any) -> None:
        """Run ``function(*args)`` in the manager's task group (nothing once it stopped)."""
        if self._task_group is not None and not self._closing:
            self._task_group.start_soon(function, *args)

    # -- starting ---------------------------------------------------------------------------

    async def _start_in(self, slot: _Slot) -> Child:
        """Start a child for ``slot`` and make it the slot's child (the one it replaces, if
        any, is the caller's to retire). Requests that find no running child in the slot
        meanwhile wait for this start, and get its error if it fails."""
        slot.starting = done = anyio.Event()
        slot.start_error = None
        try:
            child = await self._start(slot)
            if self._offline is not None:  # offline while it started: it must not serve
                self._retiring.add(child)
                self._spawn(self._stop_child, child)
                raise AppOffline(self._offline)
            slot.child = child
            self._served.add(child)
            self._watch(slot, child)
            self._start_failed = False
            return child
        except ChildUnavailable as error:
            slot.start_error = error
            if isinstance(error, ChildStartupFailure):
                self._start_failed = True
            raise
        finally:
            slot.starting = None
            done.set()

    async def _start(self, slot: _Slot) -> Child:
        assert self._task_group is not None, "ChildManager.run() is not running"
        settings = self.settings
        try:
            contract = ChildContract.new(free_loopback_port(), settings.path_base)
            log = StdoutLog.open(settings.log_prefix) if settings.log_prefix else None
        except OSError as error:
            self._record_failure()
            raise ChildStartupFailure(f"cannot prepare a child's start: {error}") from None
        process = ManagedProcess(ProcessSpec(
            settings.command, settings.cwd, {**settings.environment, **contract.to_environ()},
            output=log.file if log is not None else None, relay_output=settings.relay_output))
        child = Child(process, contract, log.path if log is not None else None)
        try:
            await self._task_group.start(functools.partial(
                process.run, on_exit=lambda _: self._report_exit(slot, child)))
        except OSError as error:
            self._record_failure()
            raise ChildStartupFailure(f"cannot start {settings.command[0]}: {error}") from None
        finally:
            if log is not None:
                log.file.close()  # the child has its own descriptor now
        if self.metrics is not None:
            self.metrics.process_started(CHILD_PROCESS)
        if log is not None:
            child.log_path = log.name_for(child.pid)
        logger.info("started child pid %d on 127.0.0.1:%d (slot %d)", child.pid, child.port,
                    slot.index)
        try:
            await self._wait_ready(child, settings)
        except ChildStartupFailure:
            self._record_failure(child)
            raise
        except BaseException:
            # Cancelled while it starts (the front stops): no slot holds it, so no stop
            # sequence would reach it.
            process.kill()
            raise
        return child

    async def _wait_ready(self, child: Child, settings: ChildSettings) -> None:
        """Return once the child accepts a connection on its port and, with ``[health]
        app_path``, answers it with 2xx, within ``startup_time_limit`` in all; else kill it
        (its exit ends the wait at once) and raise :class:`ChildStartupFailure`."""
        limit = settings.startup_time_limit
        health = settings.health
        process = child.process
        started = time.monotonic()
        listening = False
        failures: list[str] = []
        with anyio.move_on_after(limit):
            if await self._wait_listening(child):
                listening = True
                logger.info("child pid %d listening after %.0f ms", child.pid,
                            (time.monotonic() - started) * 1000)
                if health is None:
                    return
                if await self._wait_healthy(child, health, failures):
                    logger.info("child pid %d answered %s after %.0f ms", child.pid,
                                health.app_path, (time.monotonic() - started) * 1000)
                    return
            with anyio.move_on_after(_OUTPUT_GRACE):
                await process.output_done.wait()
            raise ChildStartupFailure(f"the child (pid {child.pid}) {child.describe_exit()} "
                                      "while starting", child.output())
        process.kill()
        await process.exited.wait()
        if listening and health is not None:
            last = f" (the last probe: {failures[-1]})" if failures else ""
            raise ChildStartupFailure(
                f"the child (pid {child.pid}) did not answer {health.app_path} with 2xx within "
                f"module.startup_time_limit = {limit:g} s{last}; it was killed", child.output())
        raise ChildStartupFailure(
            f"the child (pid {child.pid}) did not listen on 127.0.0.1:{child.port} within "
            f"module.startup_time_limit = {limit:g} s; it was killed", child.output())

    async def _wait_listening(self, child: Child) -> bool:
        """Return True once the child accepts a connection on its port, False if it exits.

        A child need not be hostkit, so the port itself is the only signal there is (as ANCM
        does): connect attempts back off from 5 ms to 100 ms, and the child's exit ends the
        wait at once.
        """
        process = child.process
        delay = _PROBE_FIRST_DELAY
        while process.running:
            try:
                stream = await anyio.connect_tcp("127.0.0.1", child.port)
            except OSError:
                with anyio.move_on_after(delay):
                    await process.exited.wait()
                delay = min(delay * 2, _PROBE_LAST_DELAY)
                continue
            await stream.aclose()
            return True
        return False

    async def _wait_healthy(self, child: Child, health: HealthCheck,
                            failures: list[str]) -> bool:
        """Probe ``app_path`` until a 2xx answer (True) or the child's exit (False), backing
        off as :meth:`_wait_listening` does; each probe's failure is appended to
        ``failures``."""
        process = child.process
        delay = _PROBE_FIRST_DELAY
        while process.running:
            failure = await probe_child(child.port, child.contract.token, health.app_path,
                                        health.app_interval)
            if failure is None:
                return True
            failures.append(failure)
            with anyio.move_on_after(delay):
                await process.exited.wait()
            delay = min(delay * 2, _PROBE_LAST_DELAY)
        return False

    # -- recycling and health ---------------------------------------------------------------

    def _watch(self, slot: _Slot, child: Child) -> None:
        """Arm what recycles ``child``, now its slot's: its request count, and a task per
        limit (lifetime, memory, health) that lives as long as it serves in the slot."""
        settings = self.settings
        policy = settings.recycle
        child.request_limit = child.recycle_at = policy.request_limit()
        if policy.max_lifetime:
            self._spawn(self._watch_lifetime, slot, child, policy)
        if policy.max_memory_mib:
            self._spawn(self._watch_memory, slot, child, policy)
        if settings.health is not None:
            self._spawn(self._watch_health, slot, child, settings.health)

    async def _serves_after(self, slot: _Slot, child: Child, seconds: float) -> bool:
        """Wait ``seconds`` (less if the child exits); whether it still serves in ``slot``."""
        with anyio.move_on_after(seconds):
            await child.process.exited.wait()
        return child.running and slot.child is child

    async def _recycle_after_requests(self, slot: _Slot, child: Child) -> None:
        reason = self.settings.recycle.requests_reason(child.served)
        if not await self.replace(slot.index, reason, only=child):
            assert child.request_limit is not None
            child.recycle_at = child.served + child.request_limit  # try again after as many

    async def _watch_lifetime(self, slot: _Slot, child: Child, policy: RecyclePolicy) -> None:
        while await self._serves_after(slot, child, policy.max_lifetime):
            if await self.replace(slot.index, policy.lifetime_reason(), only=child):
                return

    async def _watch_memory(self, slot: _Slot, child: Child, policy: RecyclePolicy) -> None:
        while await self._serves_after(slot, child, MEMORY_CHECK_INTERVAL):
            reason = policy.over_memory(child.pid)
            if reason is not None and await self.replace(slot.index, reason, only=child):
                return

    async def _watch_health(self, slot: _Slot, child: Child, health: HealthCheck) -> None:
        """Probe ``app_path`` every ``app_interval`` s (each probe bounded by it);
        ``app_failures`` failures in a row replace the child."""
        failures = 0
        while await self._serves_after(slot, child, health.app_interval):
            failure = await probe_child(child.port, child.contract.token, health.app_path,
                                        health.app_interval)
            if failure is None:
                failures = 0
                continue
            failures += 1
            logger.warning("child pid %d failed health probe %d of health.app_failures = %d: "
                           "%s", child.pid, failures, health.app_failures, failure)
            if failures < health.app_failures:
                continue
            reason = (f"it failed {failures} health probes in a row (health.app_failures = "
                      f"{health.app_failures}): {failure}")
            if await self.replace(slot.index, reason, only=child):
                return
            failures = 0

    # -- exits and stops --------------------------------------------------------------------

    def _report_exit(self, slot: _Slot, child: Child) -> None:
        """Called in the loop once ``child`` is reaped: a failure unless it was asked to stop."""
        if self.metrics is not None:
            self.metrics.process_exited(CHILD_PROCESS, exit_reason(
                served=child in self._served, asked_to_stop=child.process.stopping,
                replaced=child in self._retiring, owner_stopping=self._closing))
        self._served.discard(child)
        if not child.process.stopping:
            self._record_failure(child)
            # Relayed output is already in the front's stderr, line by line.
            tail = "" if child.process.spec.relay_output else child.output().strip()
            logger.error("child pid %d %s%s", child.pid, child.describe_exit(),
                         f"; its last output:\n{tail[-2000:]}" if tail else "")
        else:
            logger.info("child pid %d stopped (%s)", child.pid, child.describe_exit())
        self._retiring.discard(child)
        if slot.child is child:
            slot.child = None

    async def _stop_child(self, child: Child) -> None:
        """SIGTERM the child's group, SIGKILL after ``shutdown_time_limit``, wait for the reap."""
        limit = self.settings.shutdown_time_limit

        def overdue() -> None:
            logger.warning("child pid %d did not stop within module.shutdown_time_limit = %g s;"
                           " killing it", child.pid, limit)

        await child.process.stop(limit, overdue=overdue)
