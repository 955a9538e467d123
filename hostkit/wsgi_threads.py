"""The threads a host runs its WSGI app's requests in (``[server] wsgi_threads``).

:class:`WorkerThreads` keeps up to ``count`` threads, started as requests need them and
ended after :data:`IDLE_SECONDS` without work; a request waits in a first-come queue when
all of them are busy. A finished call wakes its waiting task with the event loop's own
thread-safe call (asyncio's ``call_soon_threadsafe``, trio's ``run_sync_soon``, through
anyio's event loop token) instead of ``anyio.to_thread.run_sync``, whose per-call cost
(a cancel scope, a limiter, a worker queue, a future) is several times that of the hand-off
itself, and is paid on every request of a WSGI app.
"""

from __future__ import annotations

import collections
import contextvars
import threading
from collections.abc import Callable
from typing import Any, Generic, TypeVar

import anyio
import anyio.lowlevel

T = TypeVar("T")

#: Seconds an idle thread waits for work before it ends.
IDLE_SECONDS = 30.0


class _Job(Generic[T]):
    """One call: the function, the context it runs in, and its outcome."""

    __slots__ = ("function", "context", "done", "wake", "result", "error")

    def __init__(self, function: Callable[[], T], done: anyio.Event,
                 wake: Callable[[Callable[[], None]], Any]):
        self.function = function
        self.context = contextvars.copy_context()
        self.done = done
        self.wake = wake
        self.result: T | None = None
        self.error: BaseException | None = None

    def run(self) -> None:
        """In a worker thread: call the function, then wake the waiting task."""
        try:
            self.result = self.context.run(self.function)
        except BaseException as error:  # handed to the waiting task, which raises it
            self.error = error
        try:
            self.wake(self.done.set)
        except RuntimeError:  # the event loop is gone: nobody waits any more
            pass


def _waker() -> Callable[[Callable[[], None]], Any]:
    """The current event loop's "call this soon, from any thread"."""
    native: Any = anyio.lowlevel.current_token().native_token
    call_soon = getattr(native, "call_soon_threadsafe", None)  # asyncio's loop
    return call_soon if call_soon is not None else native.run_sync_soon  # trio's token


class WorkerThreads:
    """Up to ``count`` threads running calls for async tasks (see the module docstring)."""

    def __init__(self, count: int, name: str = "hostkit-wsgi"):
        self.count = count
        self.name = name
        self._pending: collections.deque[_Job[Any]] = collections.deque()
        self._ready = threading.Condition(threading.Lock())
        self._threads = 0
        self._idle = 0

    @property
    def threads(self) -> int:
        """How many threads there are now (busy or idle)."""
        return self._threads

    async def run(self, function: Callable[[], T], *,
                  on_cancel: Callable[[], None] | None = None) -> T:
        """Call ``function`` in a worker thread, in a copy of the current context, and return
        what it returns (or raise what it raised).

        Cancelled while waiting for a thread, the call is dropped. Cancelled once running,
        ``on_cancel`` is called (to stop what the function waits for), and the call is waited
        for (shielded) before the cancellation goes on: the function may be using the
        caller's objects.
        """
        job: _Job[T] = _Job(function, anyio.Event(), _waker())
        self._submit(job)
        try:
            await job.done.wait()
        except BaseException:
            with self._ready:
                if job in self._pending:
                    self._pending.remove(job)
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

    def _submit(self, job: _Job[Any]) -> None:
        with self._ready:
            self._pending.append(job)
            if len(self._pending) > self._idle and self._threads < self.count:
                self._threads += 1
                threading.Thread(target=self._work, name=f"{self.name}-{self._threads}",
                                 daemon=True).start()
            else:
                self._ready.notify()

    def _work(self) -> None:
        """A worker thread: run pending calls; end after :data:`IDLE_SECONDS` without one."""
        ready = self._ready
        with ready:
            while True:
                while not self._pending:
                    self._idle += 1
                    woken = ready.wait(IDLE_SECONDS)
                    self._idle -= 1
                    if not woken and not self._pending:
                        self._threads -= 1
                        return
                job = self._pending.popleft()
                ready.release()
                try:
                    job.run()
                finally:
                    ready.acquire()
