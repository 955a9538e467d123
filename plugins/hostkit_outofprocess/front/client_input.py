"""A client connection's input: its bytes fed to the request parser, and its leaving noticed.

The front reads a client at most one chunk ahead of the request being handled: memory stays
bounded for any body size, and the end of the client's stream is noticed at once while its
response is still being produced. The end comes in two kinds:

- the client **half-closed** (its stream ended: ``EndOfStream``, asyncio's ``eof_received``):
  it sends no more requests but still reads the answers it is owed (``nc -N``, health checkers,
  scripted clients); the exchange passes the half-close on to the child and relays the answer
  (:attr:`ClientInput.on_end`);
- the client is **lost** (a reset, a read that fails): the exchange is cancelled and the child's
  connection closed, so the child's ``request_aborted`` fires (:attr:`ClientInput.on_gone`).

How the end is seen depends on the stream (:attr:`Stream.reads_ahead
<hostkit_outofprocess.front.streams.Stream.reads_ahead>`), so :func:`client_input` picks one
of two kinds of :class:`ClientInput`:

- :class:`ReadAheadInput`: a task of its own reads one chunk ahead, and sees the end;
- :class:`BufferedInput`: the stream reads ahead itself (asyncio's protocol buffer) and reports
  the end, so the handler reads in its own task and no reader task is needed.

Each request is parsed by a new parser (:meth:`ClientInput.next_request`): a
:class:`~hostkit_outofprocess.front.request_parser.RequestParser` (llhttp, with h11's
interface), or the h11 connection it hands a request to (:attr:`ClientInput.parser` becomes
that connection then). Responses are written by :mod:`~hostkit_outofprocess.front.wire`, not
through h11's state machine.
"""

from __future__ import annotations

from collections.abc import Callable

import anyio
import h11

from hostkit.plugin import request_rules

from hostkit_outofprocess.front.request_parser import RequestParser
from hostkit_outofprocess.front.streams import READ_SIZE, Stream

MAX_HEAD_SIZE = request_rules.MAX_HEAD_SIZE

#: What :meth:`ClientInput.drain` reads of a body the front refused, at most (as InProcess).
DRAIN_BYTES = 1 << 20
DRAIN_SECONDS = 1.0

#: What a failed read or write on a client's (or a child's) stream raises.
STREAM_ERRORS = (anyio.EndOfStream, anyio.BrokenResourceError, anyio.ClosedResourceError,
                 OSError)


class ClientGone(Exception):
    """The client left: its connection failed, or ended in the middle of a request."""


#: A new parser, for one request of a client's (and what follows it).
request_parser = RequestParser

#: What :attr:`ClientInput.parser` is: the request's parser, or the h11 connection it handed
#: the request to (both have the interface the front uses).
Parser = RequestParser | h11.Connection


class ClientInput:
    """The bytes of one client connection on their way into :attr:`parser`.

    Subclasses say how reading is driven; the exchange and the connection use only what is
    defined here.
    """

    __slots__ = ("stream", "parser", "head", "at_end", "ended", "lost", "on_end", "on_gone")

    def __init__(self, stream: Stream):
        self.stream = stream
        #: parses the current request (replaced by :meth:`next_request`).
        self.parser: Parser = request_parser()
        #: the raw bytes of the current request's head as received (up to MAX_HEAD_SIZE),
        #: with what came before it on the connection since the previous request.
        self.head = bytearray()
        #: True once the parser was given the client's end (everything sent before is in it).
        self.at_end = False
        #: True once the client's stream ended, half-closed or lost (what it sent before may
        #: still be on its way to the parser).
        self.ended = False
        #: True if it ended because the connection failed (reset, a failed read).
        self.lost = False
        #: called when the client half-closes (the exchange passes it on to the child).
        self.on_end: Callable[[], None] | None = None
        #: called when the client is lost (cancels the exchange in flight, if any).
        self.on_gone: Callable[[], None] | None = None

    async def run(self) -> None:
        """Run for the connection's life in a task of its own (returns at once if not needed)."""
        raise NotImplementedError

    def grant(self) -> None:
        """Everything read so far was used: the next chunk may be read."""
        raise NotImplementedError

    async def wait_data(self) -> None:
        """Wait until more bytes (or the end) reached the parser."""
        raise NotImplementedError

    async def take_available(self) -> None:
        """Feed the parser what has arrived already, without waiting for more."""
        raise NotImplementedError

    async def stop(self) -> None:
        """Stop reading (before a protocol switch hands the raw stream to a tunnel)."""
        raise NotImplementedError

    async def next_event(self) -> h11.Event:
        """The parser's next event, reading more as needed. Raises :class:`ClientGone` when
        the client left in the middle of it (in a body: its connection failed, so nobody reads
        an answer), and h11's ``RemoteProtocolError`` for bytes that are not HTTP/1.1 or that
        end where the client half-closed (it may still read the 400). A head cut short is a
        ``RemoteProtocolError`` either way: its 400 is recorded (``records.unparsed_head``)."""
        parser = self.parser
        while True:
            try:
                event = parser.next_event()
            except h11.RemoteProtocolError:
                if self.lost and parser.their_http_version is not None:  # the head was read
                    raise ClientGone() from None
                raise
            if event is h11.NEED_DATA:
                if self.at_end:
                    raise ClientGone()
                await self.wait_data()
                continue
            if type(event) is h11.Request and type(parser) is RequestParser \
                    and parser.fallback is not None:
                # h11 parses this request (and has its chunk sizes limited): use it directly.
                self.parser = parser.fallback
            return event  # type: ignore[return-value]

    async def drain(self, budget: int = DRAIN_BYTES, seconds: float = DRAIN_SECONDS) -> None:
        """Read and drop what is left of the request body, at most ``budget`` bytes for at
        most ``seconds``; nothing when the client still waits for ``100 Continue`` (it
        sends no body). Called after an answer that did not need the body (a 413), before
        the connection closes: closing with unread bytes makes the kernel reset the
        connection, and the client could lose the answer."""
        if self.parser.they_are_waiting_for_100_continue:
            return
        with anyio.move_on_after(seconds):
            while budget > 0:
                try:
                    event = await self.next_event()
                except (ClientGone, h11.RemoteProtocolError):
                    return
                if not isinstance(event, h11.Data):
                    return
                budget -= len(event.data)

    def raw_head(self) -> bytes | None:
        """The current request's head as received (:func:`hostkit.request_rules.head_of`),
        once its head was parsed: ``None`` when it is larger than what was kept of it."""
        parser = self.parser
        if type(parser) is RequestParser and parser.raw_head is not None:
            return parser.raw_head  # (its first byte begins the request line)
        return request_rules.head_of(bytes(self.head))

    def next_request(self) -> None:
        """The request was read and answered: a new parser takes what came after it."""
        rest, closed = self.parser.trailing_data
        self.parser = parser = request_parser()
        # The raw copy of the next head starts with what was read of it already.
        self.head = bytearray(rest[:MAX_HEAD_SIZE])
        if rest:
            parser.receive_data(rest)
        if closed:
            parser.receive_data(b"")

    def _ended(self, lost: bool) -> None:
        """The client's stream ended (``lost``: its connection failed); tell the exchange."""
        self.ended = True
        if lost:
            self.lost = True
            if self.on_gone is not None:
                self.on_gone()
        elif self.on_end is not None:
            self.on_end()

    async def _read(self) -> bytes:
        """Read the client's next bytes into the parser (and the raw-head copy). ``b""``: the
        end (then :attr:`at_end`, and :attr:`lost` if the read failed).

        ``self.head`` and ``self.parser`` are looked up after the read: a new request may have
        begun while a read was under way.
        """
        try:
            data = await self.stream.receive(READ_SIZE)
        except anyio.EndOfStream:
            data = b""
        except STREAM_ERRORS:
            data = b""
            self.lost = True
        if not data:
            self.at_end = True
        if len(self.head) < MAX_HEAD_SIZE:
            self.head += data[:MAX_HEAD_SIZE]
        self.parser.receive_data(data)
        return data


class ReadAheadInput(ClientInput):
    """Reads the client's bytes into the parser in a task of its own, one chunk ahead at most."""

    __slots__ = ("_ready_tx", "_ready_rx", "_credit_tx", "_credit_rx", "_scope", "_stopped")

    def __init__(self, stream: Stream):
        super().__init__(stream)
        self._ready_tx, self._ready_rx = anyio.create_memory_object_stream[None](1)
        self._credit_tx, self._credit_rx = anyio.create_memory_object_stream[None](1)
        self._scope = anyio.CancelScope()
        self._stopped = anyio.Event()

    async def run(self) -> None:
        with self._scope, self._ready_tx:
            try:
                while True:
                    data = await self._read()
                    self._nudge()
                    if not data:
                        self._ended(self.lost)
                        return
                    await self._credit_rx.receive()
            finally:
                self._stopped.set()

    def _nudge(self) -> None:
        try:
            self._ready_tx.send_nowait(None)
        except anyio.WouldBlock:
            pass

    def grant(self) -> None:
        try:
            self._credit_tx.send_nowait(None)
        except anyio.WouldBlock:
            pass

    async def take_available(self) -> None:
        """Nothing to do: what this input has read is in the parser already."""

    async def wait_data(self) -> None:
        self.grant()
        try:
            await self._ready_rx.receive()
        except anyio.EndOfStream:
            pass

    async def stop(self) -> None:
        self._scope.cancel()
        await self._stopped.wait()


class BufferedInput(ClientInput):
    """Reads in the handler's own task from a stream that reads ahead and reports the end."""

    __slots__ = ()

    def __init__(self, stream: Stream):
        super().__init__(stream)
        stream.watch_end(self._ended)

    async def run(self) -> None:
        """Nothing to run: reading happens in :meth:`wait_data`."""

    def grant(self) -> None:
        """Reading ahead is the stream's job here (bounded by its buffer)."""

    async def wait_data(self) -> None:
        await self._read()

    async def take_available(self) -> None:
        while self.stream.buffered():
            await self._read()

    async def stop(self) -> None:
        self.stream.watch_end(None)


def client_input(stream: Stream) -> ClientInput:
    """The input for an accepted ``stream``, as the module docstring says."""
    return BufferedInput(stream) if stream.reads_ahead else ReadAheadInput(stream)
