"""A program hostkit starts and owns until it is reaped: :class:`ManagedProcess`.

Each managed process

- starts through the parent-death launcher (:mod:`hostkit.processes.launcher`), so it dies
  with its owner, even one killed with SIGKILL;
- leads a process group of its own (a new session), so a Ctrl+C in a terminal reaches the
  owner only, and stopping the process reaches whatever it started too;
- has its output (stdout and stderr together) read into a bounded tail, and when asked also
  copied line by line to the owner's stderr (:mod:`hostkit.processes.output_relay`); or
  written by the process itself straight to a file;
- is forked, read and reaped by a **thread of its own that lives exactly as long as it**.
  The kernel's parent-death signal follows the *thread* that forked, not the owner process:
  a process forked from a pooled worker thread (anyio's, trio's) would be killed when that
  thread idles out, 10 s into its life.

The thread reports to the event loop that owns the process (an anyio event-loop token), so
everything else about it is read and changed in that loop: no lock but the output tail's.
"""

from __future__ import annotations

import collections
import dataclasses
import math
import os
import signal
import subprocess
import threading
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import IO

import anyio
import anyio.from_thread
from anyio.abc import TaskStatus
from anyio.lowlevel import EventLoopToken, current_token

from hostkit.processes import launcher
from hostkit.processes.exits import describe_exit
from hostkit.processes.output_relay import stderr_relay

#: How much of a process's latest output :meth:`ManagedProcess.output` keeps.
OUTPUT_TAIL_BYTES = 16 * 1024
_READ_SIZE = 65536


@dataclasses.dataclass(frozen=True)
class ProcessSpec:
    """What to run: ``argv`` in ``cwd`` with exactly ``environment`` (nothing is inherited).

    ``output`` is a file the process writes its stdout and stderr to directly (the owner
    copies nothing; close it once the process started); ``None`` reads them through a pipe
    and keeps the latest :data:`OUTPUT_TAIL_BYTES` in memory; with ``relay_output`` it also
    copies each line to the owner's stderr, after ``child: [PID] ``, never making the process
    wait (:mod:`hostkit.processes.output_relay`). ``inherit_output`` gives the process the
    owner's own stdout and stderr instead (a supervisor's workers log where the supervisor
    does); ``output`` must then be ``None``.

    ``pass_fds`` are descriptors the process inherits under the same numbers (a worker's
    listening sockets); every other descriptor of the owner is closed in it.
    """

    argv: Sequence[str]
    cwd: Path
    environment: Mapping[str, str]
    output: IO[bytes] | None = None
    inherit_output: bool = False
    pass_fds: Sequence[int] = ()
    relay_output: bool = False


class ManagedProcess:
    """One program run from a :class:`ProcessSpec`; see the module docstring.

    Made in the event loop that owns it. Start it with ``await task_group.start(process.run)``
    (or :meth:`start` and :meth:`started`), end it with :meth:`stop` or :meth:`kill`; the
    owner's task group then waits for the reap, so nothing outlives the owner.
    """

    def __init__(self, spec: ProcessSpec):
        self.spec = spec
        #: the process id, once :meth:`started` returned (0 before).
        self.pid = 0
        #: the exit status once reaped (``subprocess``'s: negative for a signal), else None.
        self.returncode: int | None = None
        #: True once the owner asked it to end (:meth:`stop`, :meth:`kill`), so its exit is
        #: expected, not a failure.
        self.stopping = False
        #: set in the owner's loop once the process is reaped.
        self.exited = anyio.Event()
        #: set once all of its output was read (may lag :attr:`exited` a little).
        self.output_done = anyio.Event()
        self._spawned = anyio.Event()
        self._spawn_error: Exception | None = None
        self._popen: subprocess.Popen[bytes] | None = None
        self._on_exit: Callable[[ManagedProcess], None] | None = None
        self._tail = collections.deque[bytes]()
        self._tail_size = 0
        self._tail_lock = threading.Lock()  # the process's own thread adds, the loop reads

    @property
    def running(self) -> bool:
        """Started and not reaped yet (as the owner's loop has heard)."""
        return not self.exited.is_set()

    # -- starting -------------------------------------------------------------------------

    async def run(self, *, on_exit: Callable[[ManagedProcess], None] | None = None,
                  task_status: TaskStatus[ManagedProcess] = anyio.TASK_STATUS_IGNORED) -> None:
        """Start the process and own it until it is reaped; for ``task_group.start``.

        Reports itself once running; raises the error (``OSError`` for a missing program or
        working directory) when it cannot start. Then waits for the reap whatever is
        cancelled, like a shielded task: it is bounded because the owner's :meth:`stop` ends
        with SIGKILL. Cancelled before the process runs, it kills it. ``on_exit`` is called in
        the loop right after :attr:`exited` is set, before anything waiting for it runs.
        """
        self.start(current_token(), on_exit)
        try:
            await self._spawned.wait()
        except BaseException:
            # Cancelled while it forks: it would run with nobody to stop it.
            with anyio.CancelScope(shield=True):
                await self._spawned.wait()
                if self._spawn_error is None:
                    self.kill()
                    await self.exited.wait()
            raise
        if self._spawn_error is not None:
            raise self._spawn_error
        task_status.started(self)
        with anyio.CancelScope(shield=True):
            await self.exited.wait()

    def start(self, token: EventLoopToken,
              on_exit: Callable[[ManagedProcess], None] | None = None) -> None:
        """Start the process's own thread, which forks it, reads its output and reaps it,
        reporting to the event loop of ``token``; returns at once.

        Any thread may call it: the process's parent, for the kernel, is always its own
        thread. ``on_exit`` as for :meth:`run`. Wait with :meth:`started`.
        """
        self._on_exit = on_exit
        threading.Thread(target=self._live, args=(token,), daemon=True,
                         name=f"hostkit process {self.spec.argv[0]}").start()

    async def started(self) -> None:
        """Return once the process runs (:attr:`pid` is set); raise why it could not start."""
        await self._spawned.wait()
        if self._spawn_error is not None:
            raise self._spawn_error

    # -- ending ---------------------------------------------------------------------------

    def signal_group(self, signum: int) -> None:
        """Send ``signum`` to the process's group (it leads one); nothing once it is gone."""
        try:
            os.killpg(self.pid, signum)
        except ProcessLookupError:
            pass
        except PermissionError:  # the group has a member of another user: the leader only
            if self._popen is not None:
                self._popen.send_signal(signal.Signals(signum))

    def kill(self) -> None:
        """SIGKILL the process's group now (its exit is then expected: :attr:`stopping`)."""
        self.stopping = True
        self.signal_group(signal.SIGKILL)

    async def stop(self, grace: float, *, overdue: Callable[[], None] | None = None) -> None:
        """SIGTERM the group, SIGKILL it if still running after ``grace`` seconds, and return
        once the process is reaped. ``overdue`` is called just before the SIGKILL (to say
        so in a log). Nothing happens to a process that exited already."""
        if not self.running:
            return
        self.stopping = True
        self.signal_group(signal.SIGTERM)
        with anyio.move_on_after(grace):
            await self.exited.wait()
        if self.running:
            if overdue is not None:
                overdue()
            self.signal_group(signal.SIGKILL)
            await self.exited.wait()

    async def wait_exit(self, timeout: float = math.inf) -> bool:
        """Wait up to ``timeout`` seconds for the reap; returns whether it happened."""
        with anyio.move_on_after(timeout):
            await self.exited.wait()
        return not self.running

    # -- what it said and how it ended ----------------------------------------------------

    def output(self) -> str:
        """The latest :data:`OUTPUT_TAIL_BYTES` of its output (``""`` when it goes to a file,
        or to the owner's own output)."""
        with self._tail_lock:
            return b"".join(self._tail).decode("utf-8", "replace")

    def describe_exit(self) -> str:
        """How it ended, for a log line (:func:`hostkit.processes.exits.describe_exit`)."""
        return describe_exit(self.returncode)

    # -- the process's own thread ---------------------------------------------------------

    def _live(self, token: EventLoopToken) -> None:
        """Fork the process, report it, read its output, reap it, report that."""
        spec = self.spec
        if spec.inherit_output:
            stdout, stderr = None, None
        else:
            stdout = spec.output if spec.output is not None else subprocess.PIPE
            stderr = subprocess.STDOUT
        try:
            popen = subprocess.Popen(
                launcher.command(spec.argv), stdin=subprocess.DEVNULL, stdout=stdout,
                stderr=stderr, cwd=spec.cwd, env=dict(spec.environment),
                start_new_session=True, pass_fds=tuple(spec.pass_fds))
        except Exception as error:  # reported to the owner, which raises it
            anyio.from_thread.run_sync(self._failed, error, token=token)
            return
        anyio.from_thread.run_sync(self._forked, popen, token=token)
        if popen.stdout is not None:
            relayed = stderr_relay().output_of(popen.pid) if spec.relay_output else None
            with popen.stdout:
                while chunk := os.read(popen.stdout.fileno(), _READ_SIZE):
                    self._keep(chunk)
                    if relayed is not None:
                        relayed.feed(chunk)
            if relayed is not None:
                relayed.finish()
        anyio.from_thread.run_sync(self.output_done.set, token=token)
        returncode = popen.wait()
        anyio.from_thread.run_sync(self._reaped, returncode, token=token)

    def _keep(self, chunk: bytes) -> None:
        with self._tail_lock:
            self._tail.append(chunk)
            self._tail_size += len(chunk)
            while self._tail_size > OUTPUT_TAIL_BYTES and len(self._tail) > 1:
                self._tail_size -= len(self._tail.popleft())

    # Called in the owner's loop, from the process's own thread.

    def _failed(self, error: Exception) -> None:
        self._spawn_error = error
        self.output_done.set()
        self.exited.set()
        self._spawned.set()

    def _forked(self, popen: subprocess.Popen[bytes]) -> None:
        self._popen = popen
        self.pid = popen.pid
        self._spawned.set()

    def _reaped(self, returncode: int) -> None:
        self.returncode = returncode
        self.output_done.set()
        self.exited.set()
        if self._on_exit is not None:
            self._on_exit(self)

