"""RequestLimit: at most ``[server] max_concurrent_requests`` requests at once, the rest in a
FIFO queue of at most ``request_queue_length`` (IIS ``queueLength``); past it, refused.

Used by the process that owns the public listener (:class:`hostkit.gateway.Gateway`), per
HTTP request: ``if not await limit.enter(): answer 503``; ``try: serve finally: limit.leave()``.
A slot a request leaves goes straight to the oldest waiter, so no later request overtakes it.
Works on asyncio and trio (anyio events); a waiter that is cancelled leaves the queue, and
one cancelled just after it was given a slot hands the slot on.
"""

from __future__ import annotations

from collections import deque
from typing import TYPE_CHECKING

import anyio

if TYPE_CHECKING:
    from hostkit.metrics import Metrics


class RequestLimit:
    """The slots and the queue of one process; see the module docstring.

    ``max_concurrent`` >= 1 slots; ``queue_length`` >= 0 waiters (0: refuse at once when
    every slot is taken). ``metrics`` (None: none) is told of every waiter that joins or
    leaves the queue.
    """

    __slots__ = ("max_concurrent", "queue_length", "_free", "_waiters", "_metrics")

    def __init__(self, max_concurrent: int, queue_length: int,
                 metrics: Metrics | None = None):
        if max_concurrent < 1:
            raise ValueError(f"max_concurrent must be >= 1, got {max_concurrent}")
        self.max_concurrent = max_concurrent
        self.queue_length = queue_length
        self._free = max_concurrent
        self._waiters: deque[anyio.Event] = deque()
        self._metrics = metrics

    @property
    def in_use(self) -> int:
        """Slots taken now."""
        return self.max_concurrent - self._free

    @property
    def waiting(self) -> int:
        """Requests in the queue now."""
        return len(self._waiters)

    def try_enter(self) -> bool:
        """Take a slot if one is free and nobody waits for one; False otherwise (then
        :meth:`enter` waits, or refuses). True: the caller must call :meth:`leave` once."""
        if self._free and not self._waiters:
            self._free -= 1
            return True
        return False

    async def enter(self) -> bool:
        """Take a slot, waiting in the queue for one when all are taken. Returns False at
        once, without waiting, when the queue is full: the caller answers 503 with
        ``Retry-After``. True: the caller holds a slot and must call :meth:`leave` once.

        No checkpoint when a slot is free. Cancelled while waiting, the request leaves the
        queue (and gives back a slot it was handed meanwhile) and the cancellation goes on.
        """
        if self.try_enter():
            return True
        if len(self._waiters) >= self.queue_length:
            return False
        granted = anyio.Event()
        self._waiters.append(granted)
        metrics = self._metrics
        if metrics is not None:
            metrics.queued(1)
        try:
            await granted.wait()
        except BaseException:
            if granted.is_set():
                self.leave()  # handed a slot as the cancellation came: pass it on
            else:
                self._waiters.remove(granted)
            raise
        finally:
            if metrics is not None:
                metrics.queued(-1)
        return True

    def leave(self) -> None:
        """Give back the slot :meth:`enter` took: to the oldest waiter, else to the free
        slots. Called once per successful :meth:`enter`, when the request is over."""
        if self._waiters:
            self._waiters.popleft().set()
        else:
            self._free += 1
