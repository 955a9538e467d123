"""A process's output copied to this process's stderr, line by line: :class:`OutputRelay`.

Used by :class:`~hostkit.processes.managed.ManagedProcess` when its spec asks for it (an
OutOfProcess front's children, ``[module] relay_child_output``). The thread that reads the
process's pipe hands each chunk to the process's :class:`RelayedOutput`, which cuts it into
lines, puts :func:`line_prefix` (``child: [PID] ``) before each and queues them; the relay's
one writer thread writes the queue out. A process whose output is relayed never waits on the
relay's stream:

- the reading thread never writes: it only queues. Once the queue holds :data:`QUEUE_BYTES`,
  the lines that do not fit are dropped and counted; one ``child: [PID] ... N lines dropped``
  line per gap says so, before that process's next lines or once the queue has emptied,
  whichever comes first;
- a line waits for its newline up to :data:`PARTIAL_LINE_BYTES`, then goes out as it is (with
  a newline); what is left when the process's pipe closes goes out then;
- when the stream is a pipe, the writer fills at most half of it with relayed lines, so this
  process's own log lines (written by its event loop, not by the relay) still find room when
  the pipe is read slowly or not at all; it first makes the pipe :data:`PIPE_BYTES` when the
  system allows (as the launcher does with a child's own pipe), so it writes in large pieces,
  seldom. On a terminal or a socket it simply writes.

Lines are relayed as bytes: nothing is decoded, so any encoding passes unchanged.
"""

from __future__ import annotations

import array
import atexit
import collections
import contextlib
import fcntl
import os
import stat
import termios
import threading
import time

#: Bytes of relayed lines an :class:`OutputRelay` holds for its stream at most.
QUEUE_BYTES = 4 << 20
#: How much of a line is held back for its newline: once this much has come without one, it
#: goes out as it is (and the rest of the line as more lines).
PARTIAL_LINE_BYTES = 16 * 1024
#: Seconds the process's last relayed lines get to reach its stderr when it exits.
DRAIN_AT_EXIT = 1.0
#: The size a relay makes the pipe it writes to (if it is smaller, and the system lets it).
PIPE_BYTES = 1 << 20

# The writer writes up to this much at once: each write takes the GIL from the event loop.
_BATCH_BYTES = 256 * 1024
# Waits of the writer while its pipe is at least half full (the kernel wakes a writer when
# a pipe has any room, not when half of it is free): short while the pipe is being read,
# longer and longer while it is not. Each wake takes the GIL too.
_FIRST_WAIT = 0.005
_LAST_WAIT = 0.05


def line_prefix(pid: int) -> bytes:
    """What each relayed line of process ``pid`` starts with: ``child: [PID] ``. The pid is in
    brackets as in a supervisor's workers' lines (``INFO: [PID] hostkit.host: ...``), and
    where those have their level, ``child`` says where the line comes from."""
    return b"child: [%d] " % pid


class OutputRelay:
    """Lines of processes' output on their way to one stream (a descriptor, open for writing).

    Made once per stream (:func:`stderr_relay` for this process's stderr); each relayed process
    gets a :class:`RelayedOutput` from :meth:`output_of`. The writer thread starts with the
    first line and then lives as long as this process (a daemon, idle while there is nothing to
    write) or until :meth:`close`.
    """

    def __init__(self, descriptor: int, queue_bytes: int = QUEUE_BYTES):
        self.descriptor = descriptor
        self.queue_bytes = queue_bytes
        self._blocks = collections.deque[bytes]()
        self._queued = 0  # bytes queued or being written
        self._dropped: dict[int, int] = {}  # pid: lines dropped since its last queued ones
        self._lock = threading.Lock()
        self._work = threading.Condition(self._lock)  # the writer waits for blocks
        self._idle = threading.Condition(self._lock)  # drain() waits for the writer
        self._writer: threading.Thread | None = None
        self._closing = False

    def output_of(self, pid: int) -> RelayedOutput:
        """The relay of process ``pid``'s output, for the thread that reads it."""
        return RelayedOutput(self, pid)

    def drain(self, timeout: float) -> bool:
        """Wait up to ``timeout`` seconds until every queued line is written; returns whether
        they all were."""
        with self._lock:
            return self._idle.wait_for(lambda: self._queued == 0, timeout)

    def close(self, timeout: float) -> None:
        """Write what is queued (up to ``timeout`` seconds), then end the writer thread; what
        is not written by then is dropped. Lines queued afterwards are dropped."""
        with self._lock:
            self._closing = True
            self._work.notify()
            writer = self._writer
        if writer is not None:
            writer.join(timeout)

    # -- called by the threads reading the processes' pipes ------------------------------

    def queue(self, pid: int, lines: bytes) -> None:
        """Queue ``lines`` (whole prefixed lines) of process ``pid``, or drop and count them
        when the queue is full."""
        with self._lock:
            if self._closing:
                return
            if self._queued + len(lines) > self.queue_bytes:
                self._dropped[pid] = self._dropped.get(pid, 0) + lines.count(b"\n")
                return
            dropped = self._dropped.pop(pid, 0)
            if dropped:
                self._append(_dropped_notice(pid, dropped))
            self._append(lines)

    def finished(self, pid: int) -> None:
        """Process ``pid``'s pipe closed: say how many of its last lines were dropped, if any
        were (this one line may pass the queue's bound)."""
        with self._lock:
            dropped = self._dropped.pop(pid, 0)
            if dropped and not self._closing:
                self._append(_dropped_notice(pid, dropped))

    def _append(self, block: bytes) -> None:
        """Queue ``block``, starting the writer with the first one (the lock is held)."""
        self._blocks.append(block)
        self._queued += len(block)
        if self._writer is None:
            self._writer = threading.Thread(target=self._write_out, daemon=True,
                                             name=f"hostkit output relay to {self.descriptor}")
            self._writer.start()
        else:
            self._work.notify()

    # -- the writer thread -----------------------------------------------------------------

    def _write_out(self) -> None:
        pipe = _PipeRoom.of(self.descriptor)
        while True:
            with self._lock:
                while not self._blocks and not self._closing:
                    self._work.wait()
                if not self._blocks:
                    return
                batch = self._take()
            try:
                self._write(batch, pipe)
            finally:
                with self._lock:
                    self._queued -= len(batch)
                    if self._queued == 0 and self._dropped:
                        self._say_dropped()
                    if self._queued == 0:
                        self._idle.notify_all()

    def _say_dropped(self) -> None:
        """Queue the count of every gap not said yet: the queue emptied, so each one ended
        (the lock is held)."""
        for pid, dropped in self._dropped.items():
            self._append(_dropped_notice(pid, dropped))
        self._dropped.clear()

    def _take(self) -> bytes:
        """The next blocks, up to :data:`_BATCH_BYTES` (at least one; the lock is held)."""
        taken = [self._blocks.popleft()]
        size = len(taken[0])
        while self._blocks and size + len(self._blocks[0]) <= _BATCH_BYTES:
            size += len(self._blocks[0])
            taken.append(self._blocks.popleft())
        return taken[0] if len(taken) == 1 else b"".join(taken)

    def _write(self, batch: bytes, pipe: _PipeRoom | None) -> None:
        """Write all of ``batch``; on a pipe, whole lines and only while it is less than half
        full. A stream that is gone (closed, broken) drops it."""
        start, wait, last_unread = 0, _FIRST_WAIT, 0
        while start < len(batch):
            end, unread = (len(batch), 0) if pipe is None else pipe.end_of_room(batch, start)
            if end == start:
                if unread < last_unread:  # it is being read
                    wait = _FIRST_WAIT
                last_unread = unread
                time.sleep(wait)
                wait = min(2 * wait, _LAST_WAIT)
                continue
            try:
                start += os.write(self.descriptor, memoryview(batch)[start:end])
            except BlockingIOError:  # someone made the stream non-blocking
                time.sleep(wait)
                wait = min(2 * wait, _LAST_WAIT)
                continue
            except OSError:
                return
            wait = _FIRST_WAIT


class _PipeRoom:
    """How much of a pipe relayed lines may fill: half of it, the rest is for others."""

    def __init__(self, descriptor: int, capacity: int):
        self.descriptor = descriptor
        self.capacity = capacity

    @classmethod
    def of(cls, descriptor: int) -> _PipeRoom | None:
        """The room of ``descriptor`` when it is a pipe whose fill can be read (Linux), made
        :data:`PIPE_BYTES` if it can be; else None."""
        try:
            if not stat.S_ISFIFO(os.fstat(descriptor).st_mode):
                return None
            capacity = fcntl.fcntl(descriptor, fcntl.F_GETPIPE_SZ)
            if capacity < PIPE_BYTES:
                with contextlib.suppress(OSError):  # past the system's or the user's limit
                    capacity = fcntl.fcntl(descriptor, fcntl.F_SETPIPE_SZ, PIPE_BYTES)
            room = cls(descriptor, capacity)
            room.unread()
        except (OSError, AttributeError):
            return None
        return room

    def unread(self) -> int:
        """The bytes in the pipe now."""
        unread = array.array("i", [0])
        fcntl.ioctl(self.descriptor, termios.FIONREAD, unread)
        return unread[0]

    def end_of_room(self, batch: bytes, start: int) -> tuple[int, int]:
        """Where a write of ``batch`` (whole lines) from ``start`` may end now without filling
        more than half the pipe, after a newline (``start``: it must wait), and the bytes
        unread in the pipe. A line longer than half the pipe goes out whole once the pipe is
        empty."""
        try:
            unread = self.unread()
        except OSError:
            return len(batch), 0
        free = self.capacity // 2 - unread
        if start + free >= len(batch):
            return len(batch), unread
        end = batch.rfind(b"\n", start, start + free) + 1 if free > 0 else 0
        if end > start:
            return end, unread
        if unread:
            return start, unread
        return batch.find(b"\n", start) + 1 or len(batch), unread


class RelayedOutput:
    """One process's output on its way to an :class:`OutputRelay`, fed by the thread that
    reads the process's pipe: :meth:`feed` each chunk, :meth:`finish` at the end."""

    __slots__ = ("pid", "_relay", "_prefix", "_newline_prefix", "_pending")

    def __init__(self, relay: OutputRelay, pid: int):
        self.pid = pid
        self._relay = relay
        self._prefix = line_prefix(pid)
        self._newline_prefix = b"\n" + self._prefix
        self._pending = b""  # the start of a line whose newline has not come yet

    def feed(self, chunk: bytes) -> None:
        """Queue the lines ``chunk`` completes; hold back the start of the next line, unless
        it is :data:`PARTIAL_LINE_BYTES` long already."""
        if self._pending:
            chunk = self._pending + chunk
        end = chunk.rfind(b"\n") + 1
        if end:
            self._relay.queue(self.pid, self._prefixed(chunk[:end] if end < len(chunk)
                                                       else chunk))
            chunk = chunk[end:]
        if len(chunk) >= PARTIAL_LINE_BYTES:
            self._relay.queue(self.pid, self._prefixed(chunk + b"\n"))
            chunk = b""
        self._pending = chunk

    def finish(self) -> None:
        """The pipe closed: queue the unfinished last line, if any, and the count of lines
        dropped since the last queued ones."""
        if self._pending:
            self._relay.queue(self.pid, self._prefixed(self._pending + b"\n"))
            self._pending = b""
        self._relay.finished(self.pid)

    def _prefixed(self, lines: bytes) -> bytes:
        """``lines`` (ending with a newline) with the prefix before each."""
        return self._prefix + lines[:-1].replace(b"\n", self._newline_prefix) + b"\n"


def _dropped_notice(pid: int, lines: int) -> bytes:
    return line_prefix(pid) + (b"... %d line%s dropped: stderr is not read fast enough\n"
                               % (lines, b"" if lines == 1 else b"s"))


_stderr_relay: OutputRelay | None = None
_stderr_relay_lock = threading.Lock()


def stderr_relay() -> OutputRelay:
    """The relay to this process's stderr (descriptor 2), one per process, made on the first
    call; when the process exits, the lines it still holds get :data:`DRAIN_AT_EXIT` seconds
    to be written."""
    global _stderr_relay
    with _stderr_relay_lock:
        if _stderr_relay is None:
            _stderr_relay = OutputRelay(2)
            atexit.register(_stderr_relay.drain, DRAIN_AT_EXIT)
        return _stderr_relay
