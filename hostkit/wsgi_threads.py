"""The threads a host runs its WSGI app's requests in (``[server] wsgi_threads``).

:class:`WorkerThreads` keeps up to ``count`` threads, started as requests need them and
ended after :data:`IDLE_SECONDS` without work; a request waits in a first-come queue when
all of them are busy. The hand-off costs one thread wake-up each way, and less under load:

- a call goes to the threads through one ``queue.SimpleQueue`` (C code: a put wakes one
  waiting thread); a thread that finishes a call takes the next queued one without sleeping;
- a finished call is handed back through its event loop's :class:`_Inbox`: the calls that
  finish before the loop next runs share one wake-up of the loop (asyncio's
  ``call_soon_threadsafe``, trio's ``run_sync_soon``: each is a write to the loop's wake-up
  socket), which then wakes each waiting task.

``anyio.to_thread.run_sync`` would cost several times as much per call (a cancel scope, a
limiter, a worker queue, a future, a loop wake-up per call), paid on every WSGI request.
"""

from __future__ import annotations

import collections
import contextvars
import queue
import threading
from collections.abc import Callable
from typing import Any, Generic, TypeVar

import anyio
import anyio.lowlevel

T = TypeVar("T")

#: Seconds an idle thread waits for work before it ends.
IDLE_SECONDS = 30.0


class _Inbox:
    """The finished calls of one event loop, handed to it in batches.

    :meth:`post` (a worker thread) queues a finished call and wakes the loop only when no
    wake-up is pending yet; :meth:`deliver` (the loop) sets the events of every call queued
    by then. ``deliver`` clears ``scheduled`` before it empties the queue and ``post``
    appends before it reads ``scheduled``, so a call is never left without a wake-up.
    """

    __slots__ = ("native", "_call_soon", "_done", "_scheduled")

    def __init__(self, native: Any):
        self.native = native
        call_soon = getattr(native, "call_soon_threadsafe", None)  # asyncio's loop
        self._call_soon: Callable[[Callable[[], None]], Any] = (
            call_soon if call_soon is not None else native.run_sync_soon)  # trio's token
        self._done: collections.deque[anyio.Event] = collections.deque()
        self._scheduled = False

    def post(self, done: anyio.Event) -> None:
        """From a worker thread: ``done`` is to be set on the loop."""
        self._done.append(done)
        if not self._scheduled:
            self._scheduled = True
            try:
                self._call_soon(self.deliver)
            except RuntimeError:  # the event loop is gone: nobody waits any more
                pass

    def deliver(self) -> None:
        """On the loop: set the event of every call finished by now."""
        self._scheduled = False
        done = self._done
        while done:
            done.popleft().set()


class _Job(Generic[T]):
    """One call: the function, the context it runs in, its outcome, and where it goes back
    to. ``state`` (under the pool's lock) is ``"queued"``, ``"running"`` or ``"dropped"``
    (its caller was cancelled before a thread took it)."""

    __slots__ = ("function", "context", "done", "inbox", "state", "result", "error")

    def __init__(self, function: Callable[[], T], inbox: _Inbox):
        self.function = function
        self.context = contextvars.copy_context()
        self.done = anyio.Event()
        self.inbox = inbox
        self.state = "queued"
        self.result: T | None = None
        self.error: BaseException | None = None

    def run(self) -> None:
        """In a worker thread: call the function and keep its outcome."""
        try:
            self.result = self.context.run(self.function)
        except BaseException as error:  # handed to the waiting task, which raises it
            self.error = error


class WorkerThreads:
    """Up to ``count`` threads running calls for async tasks (see the module docstring)."""

    def __init__(self, count: int, name: str = "hostkit-wsgi"):
        self.count = count
        self.name = name
        self._jobs: queue.SimpleQueue[_Job[Any]] = queue.SimpleQueue()
        self._lock = threading.Lock()
        self._threads = 0
        self._in_flight = 0  # calls queued or running (under _lock)
        self._inbox: _Inbox | None = None  # the last event loop's

    @property
    def threads(self) -> int:
        """How many threads there are now (busy or idle)."""
        return self._threads

    async def run(self, function: Callable[[], T], *,
                  on_cancel: Callable[[], None] | None = None,
                  token: anyio.lowlevel.EventLoopToken | None = None) -> T:
        """Call ``function`` in a worker thread, in a copy of the current context, and return
        what it returns (or raise what it raised). ``token`` is the current event loop's
        (``anyio.lowlevel.current_token()``), when the caller has it already.

        Cancelled while waiting for a thread, the call is dropped. Cancelled once running,
        ``on_cancel`` is called (to stop what the function waits for), and the call is waited
        for (shielded) before the cancellation goes on: the function may be using the
        caller's objects.
        """
        job: _Job[T] = _Job(function, self._current_inbox(token))
        self._submit(job)
        try:
            await job.done.wait()
        except BaseException:
            with self._lock:
                if job.state == "queued":
                    job.state = "dropped"  # the thread that takes it skips it
                    raise
            if on_cancel is not None:
                on_cancel()
            with anyio.CancelScope(shield=True):
                await job.done.wait()
            raise
        if job.error is not None:
            error, job.error = job.error, None
            raise error
        return job.result  # type: ignore[return-value]

    def _current_inbox(self, token: anyio.lowlevel.EventLoopToken | None) -> _Inbox:
        native = (token or anyio.lowlevel.current_token()).native_token
        inbox = self._inbox
        if inbox is None or inbox.native is not native:
            inbox = self._inbox = _Inbox(native)
        return inbox

    def _submit(self, job: _Job[Any]) -> None:
        with self._lock:
            self._in_flight += 1
            start = self._in_flight > self._threads and self._threads < self.count
            if start:
                self._threads += 1
                number = self._threads
        self._jobs.put(job)
        if start:
            threading.Thread(target=self._work, name=f"{self.name}-{number}",
                             daemon=True).start()

    def _work(self) -> None:
        """A worker thread: run queued calls; end after :data:`IDLE_SECONDS` without one
        (unless a call was queued for it meanwhile)."""
        get = self._jobs.get
        lock = self._lock
        while True:
            try:
                job = get(timeout=IDLE_SECONDS)
            except queue.Empty:
                with lock:
                    if self._in_flight < self._threads:  # the others suffice
                        self._threads -= 1
                        return
                continue
            with lock:
                dropped = job.state == "dropped"
                job.state = "running"
            if not dropped:
                job.run()
            with lock:
                self._in_flight -= 1
            if not dropped:
                job.inbox.post(job.done)
            del job  # an idle thread keeps nothing of its last request alive
