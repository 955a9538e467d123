"""Giving memory back to the system once a burst of connections is over.

A server's buffers for many connections at once (slow readers holding a response each, a
flood of uploads) are freed when the connections close, but glibc's allocator keeps freed
memory in its heaps for reuse, and the heap's top is given back only when nothing above it
is still in use: after a burst the process stays as large as it was at the peak.
``malloc_trim(0)`` hands every free page back (``madvise``); it costs a walk of the free
lists, a few milliseconds after a burst of a thousand connections.

:class:`ConnectionMemory` tells a server when that is worth it: once its open connections
fell to a quarter of a peak of at least :data:`BURST` since the last time. A server counts
each connection with :meth:`ConnectionMemory.connection`; the connection that ends a burst
awaits :func:`release_freed_memory` (in a worker thread: the event loop goes on). Elsewhere
than glibc it does nothing. One ``ConnectionMemory`` per server: the InProcess server and the
front both use it.
"""

from __future__ import annotations

import contextlib
import ctypes
import functools
from collections.abc import AsyncIterator, Callable

import anyio

#: The fewest connections open at once that count as a burst worth trimming after.
BURST = 64
# Trimmed once the open connections fell to a FALL-th of their peak.
_FALL = 4


class ConnectionMemory:
    """Counts one server's open connections and says when to give freed memory back.

    :meth:`opened` and :meth:`closed` are called as each connection begins and ends (on the
    event loop's thread).
    """

    __slots__ = ("open", "peak")

    def __init__(self) -> None:
        self.open = 0
        #: the most connections open at once since the last trim.
        self.peak = 0

    def opened(self) -> None:
        """A connection began."""
        self.open += 1
        if self.open > self.peak:
            self.peak = self.open

    def closed(self) -> bool:
        """A connection ended. Returns True when the caller should now await
        :func:`release_freed_memory`: the connections fell to a quarter of a burst's peak
        (the peak then starts again from what is open)."""
        self.open -= 1
        if self.peak >= BURST and self.open * _FALL <= self.peak:
            self.peak = self.open
            return True
        return False

    @contextlib.asynccontextmanager
    async def connection(self) -> AsyncIterator[None]:
        """Count one connection while the block runs (its whole life, in its own task); the
        connection whose end closes a burst gives the freed memory back as the block exits."""
        self.opened()
        try:
            yield
        finally:
            trim = self.closed()
        if trim:
            await release_freed_memory()


@functools.cache
def _malloc_trim() -> Callable[[int], int] | None:
    """glibc's ``malloc_trim``; ``None`` where the C library has none (musl, macOS)."""
    try:
        trim = ctypes.CDLL(None).malloc_trim  # the C library the process runs on
    except (OSError, AttributeError):
        return None
    trim.argtypes = [ctypes.c_size_t]
    trim.restype = ctypes.c_int
    return trim  # type: ignore[no-any-return]


async def release_freed_memory() -> None:
    """Give the memory the allocator holds free back to the system, in a worker thread.
    Returns at once where the C library cannot."""
    trim = _malloc_trim()
    if trim is not None:
        await anyio.to_thread.run_sync(trim, 0)
