"""Child processes: start, wait until listening, watch, stop, and the rapid-fail budget.

One :class:`ProcessManager` per module owns ``processes_per_application`` slots; each slot runs
at most one :class:`Child` at a time and starts a new one when a request needs it. All child
work runs in the manager's task group, so nothing outlives the module.

No orphans, even when the module is killed with SIGKILL: every child is started through a
tiny launcher that asks the kernel for SIGKILL when its parent dies (``PR_SET_PDEATHSIG``,
kept across ``exec``), checks the parent is still there, and then ``exec``s the real command,
so the same holds for programs that are not hostkit at all. Each child leads its own process
group, so stopping it reaches whatever it started too.

The kernel's "parent" there is the *thread* that forked the child, not the process: a child
forked from a worker thread is killed when that thread ends (trio's do after 10 s idle). So
each child is forked, read and reaped by a thread of its own that lives exactly as long as
the child, on asyncio and on trio alike.
"""

from __future__ import annotations

import collections
import dataclasses
import logging
import math
import os
import random
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from datetime import datetime
from pathlib import Path
from typing import IO

import anyio
from anyio.abc import TaskGroup

from hostkit.child_contract import ChildContract
from hostkit.configuration.tables import ModuleOptions

logger = logging.getLogger("hostkit.module")

# Runs in the child before the real program: parent-death signal, a 1 MB output pipe (when
# the module reads the output: a burst of logging then rarely waits for the module), then
# exec. `-S` skips site so the launcher costs a few milliseconds.
_LAUNCHER = (
    "import ctypes,fcntl,os,signal,sys\n"
    "try:\n"
    "    ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGKILL, 0, 0, 0)\n"
    "except (OSError, AttributeError):\n"
    "    pass\n"
    "try:\n"
    "    fcntl.fcntl(1, 1031, 1 << 20)\n"  # F_SETPIPE_SZ; fails harmlessly on a file
    "except OSError:\n"
    "    pass\n"
    "if os.getppid() != int(sys.argv[1]):\n"
    "    os._exit(70)\n"
    "os.execvp(sys.argv[2], sys.argv[2:])\n"
)
#: How much of a child's latest output is kept for error pages and crash logs.
OUTPUT_TAIL_BYTES = 16 * 1024
#: The rolling window of ``rapid_fails_per_minute``.
RAPID_FAIL_WINDOW = 60.0
_OUTPUT_READ_SIZE = 65536
# Child ports are picked at random from here up to the start of the ephemeral range.
_FIRST_CHILD_PORT = 10000
_PORT_ATTEMPTS = 50
# Connect attempts while a child starts back off from the first to the last delay.
_PROBE_FIRST_DELAY = 0.005
_PROBE_LAST_DELAY = 0.1


class ChildUnavailable(Exception):
    """No child can serve right now; the module answers ``status`` (with the page fields)."""

    status = 502

    def __init__(self, message: str, output: str = ""):
        super().__init__(message)
        self.output = output


class StartupFailure(ChildUnavailable):
    """The child exited while starting, or did not listen within ``startup_time_limit``."""

    status = 502


class RapidFailLimit(ChildUnavailable):
    """Too many failures in the rolling minute: no spawn until ``retry_after`` seconds pass."""

    status = 503

    def __init__(self, message: str, retry_after: int):
        super().__init__(message)
        self.retry_after = retry_after


class AppOffline(ChildUnavailable):
    """``app_offline_file`` exists: ``content`` is served with 503."""

    status = 503

    def __init__(self, content: bytes):
        super().__init__("the app is offline")
        self.content = content


def _ephemeral_ports() -> range:
    """The range outgoing connections take their local ports from (Linux; a default else)."""
    try:
        low, high = map(int, Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split())
    except (OSError, ValueError):
        low, high = 32768, 60999
    return range(low, high + 1)


def free_loopback_port() -> int:
    """A free TCP port on 127.0.0.1 for a child, outside the ephemeral range.

    A port the kernel hands out for ``bind(0)`` comes from the range every outgoing
    connection takes its local port from: while the child starts, a client's or the module's
    own connection can take it, and the child then fails to listen. So, like ANCM, pick
    random ports below that range (checking each is free now), and fall back to the kernel's
    choice only when none is.
    """
    ephemeral = _ephemeral_ports()
    candidates = range(_FIRST_CHILD_PORT, ephemeral.start)
    for _ in range(_PORT_ATTEMPTS if len(candidates) > 0 else 0):
        port = random.choice(candidates)
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            try:
                sock.bind(("127.0.0.1", port))
            except OSError:
                continue
            return port
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def default_command() -> list[str]:
    """The command that started this program: the same interpreter, flags and arguments."""
    return [sys.executable, *sys.orig_argv[1:]]


@dataclasses.dataclass(frozen=True)
class ChildSettings:
    """How to start a child: everything a slot needs, read once from the configuration."""

    command: Sequence[str]
    cwd: Path
    environment: Mapping[str, str]
    path_base: str
    startup_time_limit: float
    shutdown_time_limit: float
    rapid_fails_per_minute: int
    log_prefix: Path | None

    @classmethod
    def from_options(cls, options: ModuleOptions, content_root: Path,
                     environ: Mapping[str, str] | None = None) -> ChildSettings:
        command = ([options.process_path or sys.executable, *options.arguments]
                   if options.process_path or options.arguments else default_command())
        inherited = os.environ if environ is None else environ
        log_prefix = None
        if options.stdout_log_enabled:
            log_prefix = Path(options.stdout_log_file)
            if not log_prefix.is_absolute():
                log_prefix = content_root / log_prefix
        return cls(command, content_root, {**inherited, **options.environment_variables},
                   options.path_base, options.startup_time_limit, options.shutdown_time_limit,
                   options.rapid_fails_per_minute, log_prefix)


class Child:
    """One started child process with its contract (port, token) and latest output."""

    def __init__(self, process: subprocess.Popen[bytes], contract: ChildContract,
                 log_path: Path | None = None):
        self.process = process
        self.contract = contract
        #: the stdout log file when ``stdout_log_enabled``, else output is kept in memory.
        self.log_path = log_path
        self.pid = process.pid
        self.exited = anyio.Event()
        #: set once all of the child's output has been read (it may lag the exit a little).
        self.output_done = anyio.Event()
        self.returncode: int | None = None
        self.stopping = False
        #: true once this child's failure counts against the rapid-fail budget (once only).
        self.failure_counted = False
        self.tail = collections.deque[bytes]()
        self._tail_size = 0
        self._tail_lock = threading.Lock()  # the child's own thread adds, the loop reads

    @property
    def port(self) -> int:
        return self.contract.port

    @property
    def running(self) -> bool:
        return not self.exited.is_set()

    def output(self) -> str:
        """The latest output of the child, up to :data:`OUTPUT_TAIL_BYTES`."""
        if self.log_path is not None:
            try:
                with open(self.log_path, "rb") as log:
                    log.seek(max(0, log.seek(0, os.SEEK_END) - OUTPUT_TAIL_BYTES))
                    return log.read().decode("utf-8", "replace")
            except OSError:
                return ""
        with self._tail_lock:
            return b"".join(self.tail).decode("utf-8", "replace")

    def keep(self, chunk: bytes) -> None:
        """Add ``chunk`` to the latest output (called from the child's own thread)."""
        with self._tail_lock:
            self.tail.append(chunk)
            self._tail_size += len(chunk)
            while self._tail_size > OUTPUT_TAIL_BYTES and len(self.tail) > 1:
                self._tail_size -= len(self.tail.popleft())

    def describe_exit(self) -> str:
        code = self.returncode
        if code is not None and code < 0:
            name = signal.Signals(-code).name if -code in signal.Signals._value2member_map_ \
                else str(-code)
            hint = " (perhaps out of memory?)" if -code == signal.SIGKILL else ""
            return f"killed by {name}{hint}"
        return f"exited with code {code}"

    def signal_group(self, signum: int) -> None:
        """Send ``signum`` to the child's process group (it leads one)."""
        try:
            os.killpg(self.pid, signum)
        except ProcessLookupError:
            pass
        except PermissionError:
            self.process.send_signal(signal.Signals(signum))


class _Slot:
    """One of ``processes_per_application`` places a child runs in."""

    def __init__(self, index: int):
        self.index = index
        self.child: Child | None = None
        self.starting: anyio.Event | None = None
        self.start_error: ChildUnavailable | None = None


class ProcessManager:
    """Starts children on demand, restarts them after a crash, stops them all on shutdown.

    Call :meth:`run` in a task group (it reports started at once, or after the eager start);
    requests call :meth:`acquire` for a listening child; the module calls :meth:`recycle` on
    a configuration change, :meth:`set_offline` for ``app_offline_file``, and cancels
    :meth:`run` to stop, which stops every child within ``shutdown_time_limit``.
    """

    def __init__(self, settings: ChildSettings, processes: int, *, eager_start: bool = False,
                 rapid_fail_window: float = RAPID_FAIL_WINDOW):
        self.settings = settings
        self.eager_start = eager_start
        self.rapid_fail_window = rapid_fail_window
        self._slots = [_Slot(i) for i in range(processes)]
        self._next_slot = 0
        self._failures: collections.deque[float] = collections.deque()
        self._task_group: TaskGroup | None = None
        self._offline: bytes | None = None
        # One thread per child for its whole life (see the module docstring): never a queue.
        self._threads = anyio.CapacityLimiter(math.inf)

    # -- lifecycle --------------------------------------------------------------------------

    async def run(self, *, task_status: anyio.abc.TaskStatus[None] = anyio.TASK_STATUS_IGNORED
                  ) -> None:
        """Own the children until cancelled, then stop them all (shielded, bounded).

        The stop runs inside the task group: the watchers of the children are shielded and
        end only when their child is reaped, which the stop makes happen.
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
        :class:`AppOffline`, :class:`RapidFailLimit` or :class:`StartupFailure`.
        """
        slot = self._slots[self._next_slot]
        self._next_slot = (self._next_slot + 1) % len(self._slots)
        return await self._acquire_slot(slot)

    async def wait_exit(self, child: Child, timeout: float) -> bool:
        """Wait up to ``timeout`` for ``child`` to exit; True if it has."""
        with anyio.move_on_after(timeout):
            await child.exited.wait()
        return not child.running

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
        now = time.monotonic()
        while self._failures and self._failures[0] <= now - self.rapid_fail_window:
            self._failures.popleft()
        if len(self._failures) > self.settings.rapid_fails_per_minute:
            retry_after = max(1, math.ceil(self._failures[0] + self.rapid_fail_window - now))
            raise RapidFailLimit(
                f"{len(self._failures)} child failures in the last minute (more than "
                f"module.rapid_fails_per_minute = {self.settings.rapid_fails_per_minute})",
                retry_after)

    def _record_failure(self, child: Child | None = None) -> None:
        if child is not None:
            if child.failure_counted:
                return
            child.failure_counted = True
        self._failures.append(time.monotonic())

    async def _start(self, slot: _Slot) -> Child:
        assert self._task_group is not None, "ProcessManager.run() is not running"
        settings = self.settings
        contract = ChildContract.new(free_loopback_port(), settings.path_base)
        command = [sys.executable, "-S", "-c", _LAUNCHER, str(os.getpid()), *settings.command]
        log = _PendingLog.open(settings.log_prefix) if settings.log_prefix else None
        started = time.monotonic()
        try:
            child: Child = await self._task_group.start(self._own, slot, command, contract, log)
        except OSError as error:
            self._record_failure()
            raise StartupFailure(f"cannot start {settings.command[0]}: {error}") from None
        finally:
            if log is not None:
                log.file.close()  # the child has its own descriptor now
        logger.info("started child pid %d on 127.0.0.1:%d (slot %d)", child.pid, child.port,
                    slot.index)
        try:
            await self._wait_listening(child)
        except StartupFailure:
            self._record_failure(child)
            raise
        except BaseException:
            # Cancelled while it starts (the module stops): no slot holds it, so no stop
            # sequence would reach it.
            child.stopping = True
            child.signal_group(signal.SIGKILL)
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
        delay = _PROBE_FIRST_DELAY
        with anyio.move_on_after(limit):
            while child.running:
                try:
                    stream = await anyio.connect_tcp("127.0.0.1", child.port)
                except OSError:
                    with anyio.move_on_after(delay):
                        await child.exited.wait()
                    delay = min(delay * 2, _PROBE_LAST_DELAY)
                    continue
                await stream.aclose()
                return
            await self._output_drained(child)
            raise StartupFailure(f"the child (pid {child.pid}) {child.describe_exit()} while "
                                 "starting", child.output())
        child.stopping = True
        child.signal_group(signal.SIGKILL)
        await child.exited.wait()
        raise StartupFailure(
            f"the child (pid {child.pid}) did not listen on 127.0.0.1:{child.port} within "
            f"module.startup_time_limit = {limit:g} s; it was killed", child.output())

    async def _output_drained(self, child: Child) -> None:
        # The exit may be seen before the last output is read: give the reader a moment.
        with anyio.move_on_after(0.2):
            await child.output_done.wait()

    async def _own(self, slot: _Slot, command: list[str], contract: ChildContract,
                   log: _PendingLog | None, *,
                   task_status: anyio.abc.TaskStatus[Child] = anyio.TASK_STATUS_IGNORED
                   ) -> None:
        """Start a child and own it until it is reaped, then record how it ended.

        The child is forked, read and reaped by a thread of its own (the module docstring
        says why). Like a shielded task, this waits for that thread whatever is cancelled: the
        stop sequence ends every child with SIGKILL at the latest, so this is bounded. Errors
        starting it (``OSError``) are raised before ``task_status.started``.
        """
        handed: list[Child] = []
        failure: OSError | None = None
        ready = anyio.Event()

        def hand_over(child: Child) -> None:  # in the event loop, called from the thread
            handed.append(child)
            ready.set()

        async def reap() -> None:
            nonlocal failure
            with anyio.CancelScope(shield=True):
                try:
                    await anyio.to_thread.run_sync(self._spawn_and_reap, command, contract,
                                                   log, hand_over, limiter=self._threads)
                except OSError as error:
                    failure = error
                finally:
                    for child in handed:
                        child.output_done.set()
                        child.exited.set()
                        self._report_exit(slot, child)
                    ready.set()

        async with anyio.create_task_group() as group:
            group.start_soon(reap)
            await ready.wait()
            if handed:
                task_status.started(handed[0])
        if failure is not None:
            raise failure

    def _spawn_and_reap(self, command: list[str], contract: ChildContract,
                        log: _PendingLog | None, hand_over: Callable[[Child], None]) -> None:
        """In the child's own thread: fork it, hand it over, read its output, reap it."""
        process = subprocess.Popen(
            command, stdin=subprocess.DEVNULL,
            stdout=log.file if log is not None else subprocess.PIPE,
            stderr=subprocess.STDOUT, cwd=self.settings.cwd,
            env={**self.settings.environment, **contract.to_environ()},
            start_new_session=True)
        child = Child(process, contract, log.name_for(process.pid) if log else None)
        anyio.from_thread.run_sync(hand_over, child)
        if process.stdout is not None:
            with process.stdout:
                while chunk := os.read(process.stdout.fileno(), _OUTPUT_READ_SIZE):
                    child.keep(chunk)
        anyio.from_thread.run_sync(child.output_done.set)
        child.returncode = process.wait()

    def _report_exit(self, slot: _Slot, child: Child) -> None:
        if not child.stopping:
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
        if not child.running:
            return
        child.stopping = True
        child.signal_group(signal.SIGTERM)
        with anyio.move_on_after(self.settings.shutdown_time_limit):
            await child.exited.wait()
        if child.running:
            logger.warning("child pid %d did not stop within module.shutdown_time_limit = %g s;"
                           " killing it", child.pid, self.settings.shutdown_time_limit)
            child.signal_group(signal.SIGKILL)
            await child.exited.wait()


class _PendingLog:
    """A child's stdout log, opened before the child exists and named after its pid later.

    The child writes to the file directly, so the module copies nothing and a chatty child
    never waits on it.
    """

    def __init__(self, path: Path, file: IO[bytes]):
        self.path = path
        self.file = file

    @classmethod
    def open(cls, prefix: Path) -> _PendingLog:
        prefix.parent.mkdir(parents=True, exist_ok=True)
        stamp = datetime.now().strftime("%Y%m%d%H%M%S")
        path = prefix.with_name(f"{prefix.name}_{stamp}_starting.log")
        return cls(path, open(path, "ab", buffering=0))  # noqa: SIM115 - handed to the child

    def name_for(self, pid: int) -> Path:
        """Rename the file to ``{prefix}_{yyyymmddHHMMSS}_{pid}.log``; returns the new path."""
        final = self.path.with_name(self.path.name.replace("_starting.log", f"_{pid}.log"))
        os.replace(self.path, final)
        return final
