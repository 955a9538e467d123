"""The threads a host runs its WSGI app's requests in (``[server] wsgi_threads``).

:class:`WorkerThreads` keeps up to ``count`` threads, started as requests need them and
ended after :data:`IDLE_SECONDS` without work; a request waits in a first-come queue when
all of them are busy. The hand-off costs one thread wake-up each way, and less under load:

- a call goes to the threads through one ``queue.SimpleQueue`` (C code: a put wakes one
  waiting thread); a thread that finishes a call takes the next queued one without sleeping;
- a finished call is handed back through its event loop's :class:`_Inbox`: the calls that
  finish before the loop next runs share one wake-up of the loop (asyncio's
  ``call_soon_threadsafe``, trio's ``run_sync_soon``: each is a write to the loop's wake-up
  socket), which then wakes each waiting task;
- the waiting task waits on the event loop's own primitive (an asyncio future; trio's
  ``wait_task_rescheduled``), and the loop's inbox and anyio token are kept from one call to
  the next (checked against the running loop by the backend's ``current_token``), so a call
  makes no ``anyio.Event`` and no anyio backend lookup.

``anyio.to_thread.run_sync`` would cost several times as much per call (a cancel scope, a
limiter, a worker queue, a future, a loop wake-up per call), paid on every WSGI request.
"""

from __future__ import annotations

import collections
import contextvars
import queue
import threading
from collections.abc import Awaitable, Callable
from typing import Any, Generic, TypeVar

import anyio
import anyio.lowlevel

T = TypeVar("T")

#: Seconds an idle thread waits for work before it ends.
IDLE_SECONDS = 30.0


class _Inbox:
    """The finished calls of one event loop, handed to it in batches, and the waits of its
    tasks for them (:meth:`waiting`, one subclass per backend: :func:`_inbox`).

    :meth:`post` (a worker thread) queues a finished call and wakes the loop only when no
    wake-up is pending yet; :meth:`deliver` (the loop) wakes the task of every call queued
    by then. ``deliver`` clears ``scheduled`` before it empties the queue and ``post``
    appends before it reads ``scheduled``, so a call is never left without a wake-up.
    """

    __slots__ = ("token", "native", "_call_soon", "_done", "_scheduled")

    def __init__(self, token: anyio.lowlevel.EventLoopToken,
                 call_soon: Callable[[Callable[[], None]], Any]):
        self.token = token
        self.native = token.native_token
        self._call_soon = call_soon
        self._done: collections.deque[_Job[Any]] = collections.deque()
        self._scheduled = False

    def is_current(self) -> bool:
        """On an event loop: whether it is this inbox's loop."""
        try:
            return self.token.backend_class.current_token() is self.native
        except RuntimeError:  # another backend runs this thread's loop
            return False

    def waiting(self, job: _Job[Any]) -> Awaitable[Any]:
        """On the loop: what the caller awaits until ``job`` is finished (done at once when
        it is); a cancellation of the caller stops the wait."""
        raise NotImplementedError

    def _wake(self, job: _Job[Any]) -> None:
        """On the loop: ``job`` is finished; wake its task if one waits."""
        raise NotImplementedError

    def post(self, job: _Job[Any]) -> None:
        """From a worker thread: ``job`` is finished; its task is to be woken on the loop."""
        self._done.append(job)
        if not self._scheduled:
            self._scheduled = True
            try:
                self._call_soon(self.deliver)
            except RuntimeError:  # the event loop is gone: nobody waits any more
                pass

    def deliver(self) -> None:
        """On the loop: wake the task of every call finished by now."""
        self._scheduled = False
        done = self._done
        wake = self._wake
        while done:
            wake(done.popleft())


class _AsyncioInbox(_Inbox):
    """An asyncio loop's: a waiting task awaits a future of the loop."""

    __slots__ = ("_create_future",)

    def __init__(self, token: anyio.lowlevel.EventLoopToken):
        loop: Any = token.native_token
        super().__init__(token, loop.call_soon_threadsafe)
        self._create_future = loop.create_future

    def waiting(self, job: _Job[Any]) -> Awaitable[Any]:
        # The future is cancelled with its task (anyio's cancel scopes cancel the task).
        future = job.waiter = self._create_future()
        if job.finished:
            future.set_result(None)
        return future

    def _wake(self, job: _Job[Any]) -> None:
        job.finished = True
        future = job.waiter
        if future is not None and not future.done():
            future.set_result(None)


class _TrioInbox(_Inbox):
    """A trio run's: a waiting task sleeps in ``wait_task_rescheduled``."""

    __slots__ = ("_lowlevel",)

    def __init__(self, token: anyio.lowlevel.EventLoopToken):
        import trio.lowlevel  # trio runs this loop: it is imported already

        super().__init__(token, token.native_token.run_sync_soon)  # type: ignore[attr-defined]
        self._lowlevel = trio.lowlevel

    def waiting(self, job: _Job[Any]) -> Awaitable[Any]:
        return self._wait(job)

    async def _wait(self, job: _Job[Any]) -> None:
        if job.finished:
            return
        lowlevel = self._lowlevel
        job.waiter = lowlevel.current_task()

        def abort(_: Any) -> Any:
            job.waiter = None
            return lowlevel.Abort.SUCCEEDED

        await lowlevel.wait_task_rescheduled(abort)

    def _wake(self, job: _Job[Any]) -> None:
        job.finished = True
        task = job.waiter
        if task is not None:
            job.waiter = None
            self._lowlevel.reschedule(task)


def _inbox(token: anyio.lowlevel.EventLoopToken) -> _Inbox:
    """A new inbox for the event loop of ``token``."""
    if hasattr(token.native_token, "call_soon_threadsafe"):  # an asyncio loop
        return _AsyncioInbox(token)
    return _TrioInbox(token)  # trio's token (anyio has no other backend)


def _ran() -> Any:
    """What a job's function is once it ran (:meth:`_Job.run`)."""
    raise RuntimeError("this call ran already")


_EMPTY_CONTEXT = contextvars.Context()


class _Job(Generic[T]):
    """One call: the function, the context it runs in, its outcome, and where it goes back
    to. ``state`` (under the pool's lock) is ``"queued"``, ``"running"`` or ``"dropped"``
    (its caller was cancelled before a thread took it); ``finished`` and ``waiter`` (the
    waiting task's future or task, None while none waits) belong to the event loop."""

    __slots__ = ("function", "context", "inbox", "state", "result", "error", "finished",
                 "waiter")

    def __init__(self, function: Callable[[], T], inbox: _Inbox):
        self.function = function
        self.context = contextvars.copy_context()
        self.inbox = inbox
        self.state = "queued"
        self.result: T | None = None
        self.error: BaseException | None = None
        self.finished = False
        self.waiter: Any = None

    def run(self) -> None:
        """In a worker thread: call the function and keep its outcome. The function and its
        context are let go here, before the outcome is posted: the thread holds the job a
        moment longer, and what the call was made with (a request's objects) must not wait
        for it."""
        try:
            self.result = self.context.run(self.function)
        except BaseException as error:  # handed to the waiting task, which raises it
            self.error = error
        finally:
            self.function = _ran
            self.context = _EMPTY_CONTEXT


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

    def current_token(self) -> anyio.lowlevel.EventLoopToken:
        """On an event loop: its anyio token (``anyio.lowlevel.current_token()``), the same
        object as long as the same loop asks."""
        return self._current_inbox(None).token

    async def run(self, function: Callable[[], T], *,
                  on_cancel: Callable[[], None] | None = None,
                  token: anyio.lowlevel.EventLoopToken | None = None) -> T:
        """Call ``function`` in a worker thread, in a copy of the current context, and return
        what it returns (or raise what it raised). ``token`` is the current event loop's
        (from :meth:`current_token`), when the caller has it already.

        Cancelled while waiting for a thread, the call is dropped. Cancelled once running,
        ``on_cancel`` is called (to stop what the function waits for), and the call is waited
        for (shielded) before the cancellation goes on: the function may be using the
        caller's objects.
        """
        inbox = self._current_inbox(token)
        job: _Job[T] = _Job(function, inbox)
        self._submit(job)
        try:
            await inbox.waiting(job)
        except BaseException:
            with self._lock:
                if job.state == "queued":
                    job.state = "dropped"  # the thread that takes it skips it
                    raise
            if on_cancel is not None:
                on_cancel()
            with anyio.CancelScope(shield=True):
                await inbox.waiting(job)
            raise
        if job.error is not None:
            error, job.error = job.error, None
            raise error
        return job.result  # type: ignore[return-value]

    def _current_inbox(self, token: anyio.lowlevel.EventLoopToken | None) -> _Inbox:
        inbox = self._inbox
        if token is None:
            if inbox is not None and inbox.is_current():
                return inbox
            token = anyio.lowlevel.current_token()
        elif inbox is not None and inbox.native is token.native_token:
            return inbox
        inbox = self._inbox = _inbox(token)
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
                job.inbox.post(job)
            del job  # an idle thread keeps nothing of its last request alive
