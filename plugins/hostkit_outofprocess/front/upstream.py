"""The front's upstream: the children as an exchange reaches them, and the connections to them.

An exchange asks the server (:class:`Upstream`) for a :class:`Target`, a running child, and
takes a keep-alive HTTP/1.1 :class:`ChildConnection` from that child's
:class:`ConnectionPool`.

The client side of the front parses strictly, because that is where requests from the
outside arrive (:mod:`~hostkit_outofprocess.front.request_parser`: llhttp, with h11's reading
wherever the two could differ). Towards the child, the front writes request heads itself from
what was parsed and validated (:mod:`~hostkit_outofprocess.front.wire`), and parses the
child's responses with httptools (llhttp, the C parser uvicorn uses): the hot path of a proxy
is parsing, and neither half of it is paid in Python.
"""

from __future__ import annotations

import collections
import time
from collections.abc import Sequence
from typing import Protocol

import anyio
import httptools

from hostkit_outofprocess.front.streams import READ_SIZE, Stream, connect_child

Header = tuple[bytes, bytes]

# How a child's connection ends, as a read of it says.
_STREAM_END = (anyio.EndOfStream, anyio.BrokenResourceError, anyio.ClosedResourceError)


class Target(Protocol):
    """A child ready for a request: its connection pool and token."""

    pool: ConnectionPool
    token: bytes

    async def unreachable(self) -> bool:
        """A new connection to the child was refused. Returns whether the child has exited
        (so another child can take the request)."""


class Upstream(Protocol):
    """What an exchange needs from the server."""

    request_timeout: float
    #: also the grace period of a request body's minimum data rate (``BodyPace``).
    request_header_timeout: float
    #: ``server.max_request_body_size`` (0: no limit): a body over it gets the front's 413.
    max_request_body_size: int

    def acquire_nowait(self) -> Target | None:
        """A child for the next request if one can take it without a wait; None: await
        :meth:`acquire`."""

    async def acquire(self) -> Target:
        """A child for the next request; raises ``ChildUnavailable`` with the answer to give."""


class ChildError(Exception):
    """The child's connection broke or it sent something that is not HTTP/1.1."""


class ChildResponse:
    """One response message from the child, filled in by the parser's callbacks."""

    __slots__ = ("status_code", "reason", "headers", "headers_done", "complete", "keep_alive",
                 "body")

    def __init__(self) -> None:
        self.keep_alive = False
        self.status_code = 0
        self.reason = b""
        self.headers: list[Header] = []
        self.headers_done = False
        self.complete = False
        #: the body chunks parsed and not yet taken (:meth:`ChildConnection.take_body`).
        self.body: list[bytes] = []


class _Messages:
    """The parser's callback target: the responses of one exchange, in order."""

    __slots__ = ("messages", "parser")

    def __init__(self) -> None:
        self.messages: collections.deque[ChildResponse] = collections.deque()
        self.parser: httptools.HttpResponseParser | None = None

    def on_message_begin(self) -> None:
        self.messages.append(ChildResponse())

    def on_status(self, reason: bytes) -> None:
        self.messages[-1].reason += reason

    def on_header(self, name: bytes, value: bytes) -> None:
        self.messages[-1].headers.append((name.lower(), value))

    def on_headers_complete(self) -> None:
        message = self.messages[-1]
        assert self.parser is not None
        message.status_code = self.parser.get_status_code()  # the message being parsed
        message.headers_done = True

    def on_body(self, body: bytes) -> None:
        self.messages[-1].body.append(body)

    def on_message_complete(self) -> None:
        message = self.messages[-1]
        assert self.parser is not None
        # Asked here: once feed_data returns, the parser has reset for the next message.
        message.keep_alive = self.parser.should_keep_alive()
        message.complete = True


class ChildConnection:
    """One connection to a child, carrying one exchange at a time.

    ``reused`` is true once it has carried a request: an EOF before the first response byte
    on such a connection means it went stale, not that the request failed.
    """

    __slots__ = ("stream", "pool", "lent", "idle_since", "reused", "closed", "reusable",
                 "upgraded_data", "_messages", "_parser", "_response", "_eof")

    def __init__(self, stream: Stream, pool: ConnectionPool | None = None):
        self.stream = stream
        #: the pool it came from, and whether it is lent out now (:meth:`ConnectionPool.get`).
        self.pool = pool
        self.lent = False
        self.idle_since = 0.0
        self.reused = False
        self.closed = False
        self.reusable = False
        self.upgraded_data = b""
        self._messages = _Messages()
        # One parser for the connection's life: llhttp starts over after each complete
        # message, and a connection is reused only after one (:meth:`finish`).
        self._parser = self._messages.parser = httptools.HttpResponseParser(self._messages)
        self._response: ChildResponse | None = None
        self._eof = False

    def _parse(self, data: bytes) -> None:
        """Parse ``data``, what one read of the connection returned."""
        try:
            self._parser.feed_data(data)
        except httptools.HttpParserUpgrade as upgrade:
            self.upgraded_data = data[upgrade.args[0]:]
        except httptools.HttpParserError as error:
            raise ChildError(f"the child sent an invalid response: {error}") from None

    async def response_head(self, head_request: bool) -> ChildResponse | None:
        """The final response head (a 101 included), skipping other 1xx answers.

        Returns ``None`` when the child closed before answering.
        """
        self._messages.messages.clear()
        self._response = None
        self.reusable = False
        messages = self._messages.messages
        while True:
            while messages and messages[0].headers_done:
                message = messages[0]
                if 100 <= message.status_code < 200 and message.status_code != 101:
                    messages.popleft()  # interim answers were the front's to give
                    continue
                self._response = message
                if head_request:
                    message.complete = True  # a response to HEAD ends with its head
                return message
            # Read here rather than in a helper coroutine: the response's wait is the
            # exchange's, and every frame between it and the stream is resumed with it.
            try:
                data = await self.stream.receive(READ_SIZE)
            except _STREAM_END:
                self._eof = True
                return None
            self._parse(data)

    def take_body(self) -> Sequence[bytes]:
        """The body chunks parsed so far, handed over once."""
        response = self._response
        assert response is not None
        body = response.body
        if not body:
            return ()
        response.body = []
        return body

    @property
    def response_complete(self) -> bool:
        return self._response is not None and self._response.complete

    async def read_more(self) -> None:
        """Read and parse more of the body. Raises :class:`ChildError` if the child is gone."""
        try:
            data = await self.stream.receive(READ_SIZE)
        except _STREAM_END:
            self._eof = True
            if self._response is not None and _close_delimited(self._response):
                self._response.complete = True  # the body ends with the connection
                return
            raise ChildError(
                "the child closed its connection in the middle of a response") from None
        self._parse(data)

    def finish(self, head_request: bool) -> None:
        """The exchange is complete: decide whether the connection can carry another."""
        response = self._response
        # A response to HEAD leaves llhttp expecting the body its head announced; bytes past
        # the response's end begin a message nobody asked for: either way, not reusable.
        self.reusable = (not head_request and not self._eof and response is not None
                         and response.keep_alive and not self.upgraded_data
                         and self._messages.messages[-1] is response)

    async def aclose(self) -> None:
        if self.lent:
            self.lent = False
            assert self.pool is not None
            self.pool.returned()
        if self.closed:
            return
        self.closed = True
        with anyio.CancelScope(shield=True):
            await self.stream.aclose()


def _close_delimited(response: ChildResponse) -> bool:
    names = {name for name, _ in response.headers}
    return b"content-length" not in names and b"transfer-encoding" not in names


class ConnectionPool:
    """Idle keep-alive connections to one child port, newest first, and a count of those lent
    out (:attr:`in_use`: the exchanges the child has now, :meth:`wait_unused`).

    ``idle_timeout`` is kept shorter than the child's own keep-alive timeout, so the pool drops
    a connection before the child would close it under a request.
    """

    def __init__(self, port: int, idle_timeout: float):
        self.port = port
        self.idle_timeout = idle_timeout
        self._idle: list[ChildConnection] = []
        self.closed = False
        #: connections handed out by :meth:`get` and not yet put back or closed.
        self.in_use = 0
        self._unused: anyio.Event | None = None

    async def get(self) -> ChildConnection:
        """An idle connection if a fresh enough one exists, else a new one (OSError if refused).

        An idle connection with anything to read cannot carry a request: the child closed it
        (or died), or sent a response no request asked for, which the next request would take
        for its own. That is asked of the socket itself, without waiting for the event loop
        to notice: a child killed a moment ago has already closed its sockets, and a request
        written to one of them would be lost without a sign of whether the child had read it.
        """
        # Counted from the start: an exchange that holds this child's target is counted
        # before its first await, so a drain cannot miss it (:meth:`wait_unused`).
        self.in_use += 1
        try:
            now = time.monotonic()
            while self._idle:
                connection = self._idle.pop()
                if not connection.closed and now - connection.idle_since < self.idle_timeout \
                        and not connection.stream.peer_closed():
                    break
                await connection.aclose()
            else:
                connection = ChildConnection(await connect_child(self.port), self)
        except BaseException:
            self.returned()
            raise
        connection.lent = True
        return connection

    def get_nowait(self) -> ChildConnection | None:
        """What :meth:`get` returns, when the newest idle connection can carry a request;
        ``None`` (nothing lent) when :meth:`get` must be awaited: none is idle, or the newest
        is stale and must be closed first."""
        idle = self._idle
        if not idle:
            return None
        connection = idle[-1]
        if connection.closed or time.monotonic() - connection.idle_since >= self.idle_timeout \
                or connection.stream.peer_closed():
            return None
        idle.pop()
        self.in_use += 1
        connection.lent = True
        return connection

    def returned(self) -> None:
        """A lent connection came back (:meth:`put`) or was closed."""
        self.in_use -= 1
        if not self.in_use and self._unused is not None:
            self._unused.set()
            self._unused = None

    async def wait_unused(self) -> None:
        """Return once no connection is lent out: the exchanges sent to the child are done."""
        while self.in_use:
            if self._unused is None:
                self._unused = anyio.Event()
            await self._unused.wait()

    def put_nowait(self, connection: ChildConnection) -> bool:
        """:meth:`put` for a connection that can carry another exchange (True: it is idle
        in the pool now); False, with nothing done, when :meth:`put` would close it (then
        closing it, :meth:`ChildConnection.aclose`, is what is left to do)."""
        if self.closed or connection.closed or not connection.reusable:
            return False
        if connection.lent:
            connection.lent = False
            self.returned()
        connection.reused = True
        connection.idle_since = time.monotonic()
        self._idle.append(connection)
        return True

    async def put(self, connection: ChildConnection) -> None:
        """Return ``connection`` after a complete exchange; closed unless it can carry another."""
        if connection.lent:
            connection.lent = False
            self.returned()
        connection.reused = True
        if not self.closed and not connection.closed and connection.reusable:
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
