"""Keep-alive HTTP/1.1 connections from the module to one child, parsed with h11."""

from __future__ import annotations

import time

import anyio
import h11
from anyio.abc import ByteStream

from hostkit_outofprocess.streams import connect_child

READ_SIZE = 65536


class ChildConnection:
    """One connection to a child: its stream and its h11 client state.

    ``reused`` is true once it has carried a request, which is what makes an EOF before the
    first response byte a "stale connection" rather than a failed request.
    """

    __slots__ = ("stream", "h11", "idle_since", "reused", "closed")

    def __init__(self, stream: ByteStream):
        self.stream = stream
        self.h11 = h11.Connection(h11.CLIENT)
        self.idle_since = 0.0
        self.reused = False
        self.closed = False

    async def next_event(self) -> object:
        """The next h11 event from the child, reading as needed (EOF included)."""
        while True:
            event = self.h11.next_event()
            if event is not h11.NEED_DATA:
                return event  # an h11 event, or h11.PAUSED
            try:
                data = await self.stream.receive(READ_SIZE)
            except (anyio.EndOfStream, anyio.BrokenResourceError):
                data = b""
            self.h11.receive_data(data)

    async def aclose(self) -> None:
        if self.closed:
            return
        self.closed = True
        with anyio.CancelScope(shield=True):
            await self.stream.aclose()


class ConnectionPool:
    """Idle keep-alive connections to one child port, newest first.

    ``idle_timeout`` is kept shorter than the child's own keep-alive timeout, so the pool drops
    a connection before the child would close it under a request.
    """

    def __init__(self, port: int, idle_timeout: float):
        self.port = port
        self.idle_timeout = idle_timeout
        self._idle: list[ChildConnection] = []
        self.closed = False

    async def get(self) -> ChildConnection:
        """An idle connection if a fresh enough one exists, else a new one (OSError if refused)."""
        now = time.monotonic()
        while self._idle:
            connection = self._idle.pop()
            if not connection.closed and now - connection.idle_since < self.idle_timeout:
                return connection
            await connection.aclose()
        return ChildConnection(await connect_child(self.port))

    async def put(self, connection: ChildConnection) -> None:
        """Return ``connection`` after a complete exchange; closed unless it can carry another."""
        connection.reused = True
        if (not self.closed and not connection.closed and connection.h11.our_state is h11.DONE
                and connection.h11.their_state is h11.DONE):
            connection.h11.start_next_cycle()
            connection.idle_since = time.monotonic()
            self._idle.append(connection)
        else:
            await connection.aclose()

    async def close(self) -> None:
        """Close every idle connection; connections in use are closed when they come back."""
        self.closed = True
        idle, self._idle = self._idle, []
        for connection in idle:
            await connection.aclose()
