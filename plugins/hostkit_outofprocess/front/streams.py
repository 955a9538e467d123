"""The front's sockets: accepting clients and connecting to children, per event loop.

Everything else in the front speaks to one interface, :class:`Stream` (made here only:
:func:`serve_listener` hands accepted ones out, :func:`connect_child` makes the others), so
its logic is written once and never asks which loop runs. On asyncio a stream is a
:class:`ProtocolStream`, a thin stream over an ``asyncio.Protocol`` that keeps what arrives
in a bounded buffer: anyio's asyncio streams pause and resume reading around every
``receive`` (an epoll change each time) and shield every ``send``, which is most of what a
proxy does per request. On trio it is anyio's own socket stream, behind
:class:`_AnyioStream`.

What a slow reader costs is bounded on both loops: a child's connection reads at most one
:data:`READ_SIZE` buffer ahead (:class:`_ChildProtocol`), a client's transport pauses its
writer above :data:`_WRITE_HIGH_WATER`, and a relay awaits :meth:`Stream.writable` before it
reads more of the child, holding nothing meanwhile. After a burst of connections the freed
memory goes back to the system (``hostkit.plugin.ConnectionMemory``, one per front).
"""

from __future__ import annotations

import asyncio
import collections
import logging
import select
import socket
import ssl
import time
from collections.abc import Callable, Coroutine
from typing import Any, Protocol

import anyio
import sniffio
from anyio.abc import ByteStream, SocketAttribute, TaskGroup
from anyio.streams.tls import TLSAttribute, TLSStream

from hostkit.plugin import ConnectionMemory

#: How much one ``receive`` asks for.
READ_SIZE = 65536


_logger = logging.getLogger("hostkit.module")

# Reading pauses when this much is buffered and not yet received, and resumes below a quarter.
_HIGH_WATER = 256 * 1024
# A client's transport pauses its writers above this much unsent (and resumes them below a
# quarter of it): with one READ_SIZE write past it, what a slow reader costs in the front.
_WRITE_HIGH_WATER = 16 * 1024


class Stream(Protocol):
    """A connection of the front's: a client's, or one to a child.

    ``receive``, ``send`` and ``aclose`` are anyio's byte-stream methods, with anyio's
    exceptions (``EndOfStream``, ``BrokenResourceError``, ``ClosedResourceError``).
    """

    #: Whether the stream reads ahead by itself (into a bounded buffer) and reports the
    #: peer's end (:meth:`watch_end`); if not, a reader must keep reading to notice it.
    reads_ahead: bool

    #: When the connection was opened, on ``time.monotonic``'s clock: for a client's, when it
    #: was accepted (before its TLS handshake, so a deadline from then counts the handshake).
    opened_at: float

    async def receive(self, max_bytes: int = READ_SIZE) -> bytes: ...

    async def send(self, data: bytes) -> None: ...

    def send_nowait(self, data: bytes) -> bool:
        """Write ``data`` if :meth:`send` would not wait, and return True; False, with nothing
        written, when only :meth:`send` can (it would wait, or the stream has no way to
        write without waiting). Raises what :meth:`send` raises."""

    async def aclose(self) -> None: ...

    async def writable(self) -> None:
        """Return once a :meth:`send` would not wait: the stream's own write buffer (if it
        has one) is below its low-water mark. Awaited by a relay before it reads more of
        what it will send, so it holds nothing while the peer reads slowly."""

    def buffered(self) -> bool:
        """Whether bytes were received that :meth:`receive` has not returned yet."""

    def watch_end(self, callback: Callable[[bool], None] | None) -> None:
        """Call ``callback(False)`` when the peer closes its side (it may still read what is
        sent to it) and ``callback(True)`` when the connection is lost (reset, a failed read or
        write); ``None``: stop watching. Only when :attr:`reads_ahead`."""

    def close_write(self) -> None:
        """End this side of the connection (a half-close) after what was sent so far; the
        peer can still answer. Called on a child's connection when the client half-closed."""

    def peer_closed(self) -> bool:
        """Whether anything waits to be read, asked of the socket now, without waiting for
        the event loop: on an idle connection, that means the peer closed it (or sent
        something nobody asked for). Only asked of a pooled child connection: a client's
        half-close reads the same and does not mean the client is gone."""

    def ssl_object(self) -> ssl.SSLObject | None:
        """The TLS object of an accepted connection (handshake done); ``None`` for plain."""

    def client_ip(self) -> str | None:
        """The peer's IP address; ``None`` on a unix socket."""

    def client_port(self) -> int | None:
        """The peer's port; ``None`` on a unix socket."""


#: What :func:`serve_listener` calls with each accepted connection (in a task of its own).
Handler = Callable[[Stream], Coroutine[Any, Any, None]]


class _ProtocolBase:
    """What both kinds of protocol share: the connection's end, the one reader waiting for
    data, and the writer waiting for the transport's buffer to drain.

    A subclass holds what was received and says how much (:meth:`take`, :meth:`has_data`).
    """

    #: whether the transport stays open for writing once the peer closed its side.
    keep_open_on_eof = False

    def __init__(self) -> None:
        self.transport: asyncio.Transport | None = None
        self.reading_paused = False
        self.eof = False
        self.error: BaseException | None = None
        self.read_waiter: asyncio.Future[None] | None = None
        self.write_paused = False
        self.drain_waiter: asyncio.Future[None] | None = None
        #: called with ``False`` when the peer closes its side, then with ``True`` when the
        #: connection is lost (:meth:`Stream.watch_end`).
        self.on_eof: Callable[[bool], None] | None = None

    def take(self, max_bytes: int) -> bytes:
        """Up to ``max_bytes`` of what was received (``b""``: nothing is), resuming reading
        once there is room again."""
        raise NotImplementedError

    def has_data(self) -> bool:
        """Whether bytes were received that :meth:`take` has not returned yet."""
        raise NotImplementedError

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def eof_received(self) -> bool:
        self.eof = True
        self._wake_reader()
        if self.on_eof is not None:
            self.on_eof(False)
        # A client that half-closed still reads its answers: its connection stays open for
        # writing (asyncio's TLS transports cannot, and a child's connection need not).
        return self.keep_open_on_eof and self.transport is not None \
            and self.transport.get_extra_info("ssl_object") is None

    def connection_lost(self, error: Exception | None) -> None:
        self.eof = True
        self.error = error
        self._wake_reader()
        callback, self.on_eof = self.on_eof, None
        if callback is not None:
            callback(True)
        if self.drain_waiter is not None and not self.drain_waiter.done():
            self.drain_waiter.set_result(None)

    def pause_writing(self) -> None:
        self.write_paused = True

    def resume_writing(self) -> None:
        self.write_paused = False
        if self.drain_waiter is not None and not self.drain_waiter.done():
            self.drain_waiter.set_result(None)

    def _wake_reader(self) -> None:
        if self.read_waiter is not None and not self.read_waiter.done():
            self.read_waiter.set_result(None)


class _BufferingProtocol(_ProtocolBase, asyncio.Protocol):
    """A client's connection: collects what it sends, up to :data:`_HIGH_WATER` ahead of
    the reader (a request or a body the front forwards chunk by chunk)."""

    def __init__(self) -> None:
        super().__init__()
        self.chunks: collections.deque[bytes] = collections.deque()
        self.buffered = 0

    def data_received(self, data: bytes) -> None:
        self.chunks.append(data)
        self.buffered += len(data)
        if self.buffered > _HIGH_WATER and not self.reading_paused and self.transport:
            self.reading_paused = True
            self.transport.pause_reading()
        self._wake_reader()

    def take(self, max_bytes: int) -> bytes:
        if not self.chunks:
            return b""
        chunk = self.chunks.popleft()
        if len(chunk) > max_bytes:
            self.chunks.appendleft(chunk[max_bytes:])
            chunk = chunk[:max_bytes]
        self.buffered -= len(chunk)
        if self.reading_paused and self.buffered < _HIGH_WATER // 4 and self.transport:
            self.reading_paused = False
            self.transport.resume_reading()
        return chunk

    def has_data(self) -> bool:
        return bool(self.chunks)


# Read buffers a child's connection let go (:class:`_ChildProtocol`), for the next read of
# any connection; a few at most, so what they hold stays small and bounded.
_SPARE_BUFFERS: list[memoryview] = []
_MAX_SPARE_BUFFERS = 8


class _ChildProtocol(_ProtocolBase, asyncio.BufferedProtocol):
    """A connection to a child: the transport reads into one buffer of :data:`READ_SIZE`
    bytes, and stops reading while it is full.

    The front reads a child's response no further ahead of the client than that: while a
    client reads slowly, the relay waits on the client's transport, this buffer fills, and
    the rest of the response stays with the child (in its socket, which stops its writes),
    not in the front's memory. asyncio's plain protocols get each read as a new object of up
    to 256 KB, and any number of them before a pause takes effect. The buffer is taken when a
    read begins and let go once the reader has taken all of it (to a few spare buffers any
    connection's next read takes), so an idle pooled connection holds none.
    """

    def __init__(self) -> None:
        super().__init__()
        self._view: memoryview | None = None
        self._filled = 0

    def get_buffer(self, sizehint: int) -> memoryview:
        view = self._view
        if view is None:
            # A spare buffer of another connection's, if one is free: a new one would be
            # zeroed whole first, for every response read.
            self._view = view = _SPARE_BUFFERS.pop() if _SPARE_BUFFERS \
                else memoryview(bytearray(READ_SIZE))
        return view[self._filled:]

    def buffer_updated(self, nbytes: int) -> None:
        self._filled += nbytes
        if self._filled >= READ_SIZE and not self.reading_paused and self.transport:
            self.reading_paused = True
            self.transport.pause_reading()
        self._wake_reader()

    def take(self, max_bytes: int) -> bytes:
        filled = self._filled
        view = self._view
        if not filled or view is None:
            return b""
        if max_bytes >= filled:
            data = bytes(view[:filled])
            self._view = None
            self._filled = 0
            if len(_SPARE_BUFFERS) < _MAX_SPARE_BUFFERS:
                _SPARE_BUFFERS.append(view)
        else:
            data = bytes(view[:max_bytes])
            rest = bytes(view[max_bytes:filled])
            view[:len(rest)] = rest
            self._filled = len(rest)
        if self.reading_paused and self.transport:
            self.reading_paused = False
            self.transport.resume_reading()
        return data

    def has_data(self) -> bool:
        return self._filled > 0


class _AcceptedProtocol(_BufferingProtocol):
    """A server-side connection: hands its stream to ``on_connect`` once made."""

    keep_open_on_eof = True

    def __init__(self, on_connect: Callable[[ProtocolStream], None]):
        super().__init__()
        self.on_connect = on_connect
        # The loop makes the protocol as it accepts the connection, before a TLS handshake.
        self.accepted_at = time.monotonic()

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        super().connection_made(transport)
        transport.set_write_buffer_limits(_WRITE_HIGH_WATER)  # type: ignore[attr-defined]
        self.on_connect(ProtocolStream(transport, self,  # type: ignore[arg-type]
                                       opened_at=self.accepted_at))


class ProtocolStream:
    """A :class:`Stream` over an asyncio transport, with anyio's stream exceptions."""

    reads_ahead = True

    def __init__(self, transport: asyncio.Transport, protocol: _ProtocolBase, *,
                 opened_at: float):
        self.transport = transport
        self.protocol = protocol
        self.opened_at = opened_at
        # Made in the loop's callbacks or a task: the loop that waits on it.
        self._loop = asyncio.get_running_loop()
        # What peer_closed asks the kernel with, made at its first call.
        self._poller: select.poll | None = None

    async def receive(self, max_bytes: int = READ_SIZE) -> bytes:
        protocol = self.protocol
        while not protocol.has_data():
            if protocol.eof:
                if protocol.error is not None:
                    raise anyio.BrokenResourceError from protocol.error
                raise anyio.EndOfStream
            protocol.read_waiter = self._loop.create_future()
            try:
                await protocol.read_waiter
            finally:
                protocol.read_waiter = None
        return protocol.take(max_bytes)

    async def send(self, data: bytes) -> None:
        """Write ``data`` once the transport's buffer is below its low-water mark (it then
        holds at most the high-water mark and one write): waiting before the write, not
        after, so the buffer never holds a copy of what the caller still holds."""
        if self.protocol.write_paused:
            await self.writable()
        self._write(data)

    def send_nowait(self, data: bytes) -> bool:
        if self.protocol.write_paused:
            return False
        self._write(data)
        return True

    def _write(self, data: bytes) -> None:
        """Hand ``data`` to the transport; ``BrokenResourceError`` once it is closing."""
        transport = self.transport
        if transport.is_closing():
            if self.protocol.error is not None:
                raise anyio.BrokenResourceError from self.protocol.error
            raise anyio.BrokenResourceError
        transport.write(data)

    async def writable(self) -> None:
        protocol = self.protocol
        while protocol.write_paused and not self.transport.is_closing():
            protocol.drain_waiter = asyncio.get_running_loop().create_future()
            try:
                await protocol.drain_waiter
            finally:
                protocol.drain_waiter = None

    async def aclose(self) -> None:
        self.transport.close()

    def buffered(self) -> bool:
        return self.protocol.has_data()

    def watch_end(self, callback: Callable[[bool], None] | None) -> None:
        self.protocol.on_eof = callback

    def close_write(self) -> None:
        if not self.transport.is_closing() and self.transport.can_write_eof():
            self.transport.write_eof()

    def peer_closed(self) -> bool:
        protocol = self.protocol
        if protocol.eof or protocol.has_data():
            return True
        poller = self._poller
        if poller is None:
            sock = self.transport.get_extra_info("socket")
            if sock is None:
                return False
            self._poller = poller = select.poll()
            poller.register(sock.fileno(), select.POLLIN)
        return bool(poller.poll(0))

    def ssl_object(self) -> ssl.SSLObject | None:
        return self.transport.get_extra_info("ssl_object")  # type: ignore[no-any-return]

    def client_ip(self) -> str | None:
        return _ip_of(self.transport.get_extra_info("peername"))

    def client_port(self) -> int | None:
        return _port_of(self.transport.get_extra_info("peername"))


class _AnyioStream:
    """An anyio byte stream (a socket, perhaps under TLS) as a :class:`Stream`.

    ``receive``, ``send`` and ``aclose`` are the wrapped stream's own bound methods, so a
    call goes straight to it.
    """

    __slots__ = ("receive", "send", "aclose", "opened_at", "_stream")

    reads_ahead = False

    def __init__(self, stream: ByteStream, *, opened_at: float):
        self._stream = stream
        self.opened_at = opened_at
        self.receive = stream.receive
        self.send = stream.send
        self.aclose = stream.aclose

    def buffered(self) -> bool:
        return False

    def send_nowait(self, data: bytes) -> bool:
        """Never: anyio's ``send`` is the only way to write, and it may wait."""
        return False

    async def writable(self) -> None:
        """At once: ``send`` returns only once the socket took all of it."""

    def watch_end(self, callback: Callable[[bool], None] | None) -> None:
        """Nothing to watch with: the stream does not read ahead."""

    def close_write(self) -> None:
        sock = self._stream.extra(SocketAttribute.raw_socket, None)
        if sock is not None:
            try:
                sock.shutdown(socket.SHUT_WR)
            except OSError:
                pass  # already closed: the exchange learns it from its next read

    def peer_closed(self) -> bool:
        return _readable_now(self._stream.extra(SocketAttribute.raw_socket, None))

    def ssl_object(self) -> ssl.SSLObject | None:
        return self._stream.extra(TLSAttribute.ssl_object, None)

    def client_ip(self) -> str | None:
        return _ip_of(self._stream.extra(SocketAttribute.remote_address, None))

    def client_port(self) -> int | None:
        return _port_of(self._stream.extra(SocketAttribute.remote_address, None))


def _ip_of(address: object) -> str | None:
    """The IP of a peer address: a tuple for TCP; a unix socket's is a path (or empty)."""
    if isinstance(address, tuple):
        return str(address[0])
    return None


def _port_of(address: object) -> int | None:
    """The port of a peer address (see :func:`_ip_of`)."""
    if isinstance(address, tuple):
        return int(address[1])
    return None


def _on_asyncio() -> bool:
    return sniffio.current_async_library() == "asyncio"


async def connect_child(port: int) -> Stream:
    """A connection to a child on 127.0.0.1 (``OSError`` when refused)."""
    if _on_asyncio():
        loop = asyncio.get_running_loop()
        transport, protocol = await loop.create_connection(_ChildProtocol, "127.0.0.1", port)
        return ProtocolStream(transport, protocol, opened_at=time.monotonic())
    stream = await anyio.connect_tcp("127.0.0.1", port)
    stream.extra(SocketAttribute.raw_socket).setsockopt(
        socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    return _AnyioStream(stream, opened_at=time.monotonic())


async def serve_listener(sock: socket.socket, tls: ssl.SSLContext | None, handle: Handler,
                         connections: TaskGroup, *, handshake_timeout: float,
                         memory: ConnectionMemory) -> None:
    """Accept connections on ``sock`` until cancelled; each is handled in ``connections``,
    counted in ``memory`` (which gives freed memory back after a burst of them).

    With ``tls``, a connection is handed out once its handshake is done, and closed if it
    takes more than ``handshake_timeout`` seconds from accept.
    """
    if _on_asyncio():
        loop = asyncio.get_running_loop()

        def accepted(stream: ProtocolStream) -> None:
            connections.start_soon(_handle_counted, memory, handle, stream)

        server = await loop.create_server(
            lambda: _AcceptedProtocol(accepted), sock=sock, ssl=tls, backlog=1024,
            ssl_handshake_timeout=handshake_timeout if tls is not None else None)
        try:
            await anyio.sleep_forever()
        finally:
            server.close()
        return

    async def handle_anyio(stream: ByteStream) -> None:
        opened_at = time.monotonic()
        if tls is not None:
            secured = await _tls_handshake(stream, tls, handshake_timeout)
            if secured is None:
                return
            stream = secured
        await _handle_counted(memory, handle, _AnyioStream(stream, opened_at=opened_at))

    listener = await anyio.abc.SocketListener.from_socket(sock)
    async with listener:
        await listener.serve(handle_anyio, task_group=connections)


async def _handle_counted(memory: ConnectionMemory, handle: Handler, stream: Stream) -> None:
    """``handle(stream)``, counted in the front's open connections, ``memory``."""
    async with memory.connection():
        await handle(stream)


async def _tls_handshake(stream: ByteStream, tls: ssl.SSLContext,
                         timeout: float) -> TLSStream | None:
    """The server's side of the TLS handshake on an accepted ``stream`` (what anyio's
    ``TLSListener`` does, with the front's timeout): the TLS stream, or ``None`` (``stream``
    closed) when the handshake fails or takes more than ``timeout`` seconds."""
    secured: TLSStream | None = None
    try:
        with anyio.fail_after(timeout):
            secured = await TLSStream.wrap(stream, server_side=True, ssl_context=tls,
                                           standard_compatible=False)
    except Exception as error:  # the client's failure, not the front's: logged as asyncio does
        _logger.debug("TLS handshake with a client failed: %r", error)
    finally:
        if secured is None:
            await anyio.aclose_forcefully(stream)
    return secured


def _readable_now(sock: socket.socket | None) -> bool:
    """Whether ``sock`` has something to read (bytes, or the peer's end) without waiting."""
    if sock is None:
        return False
    poller = select.poll()
    poller.register(sock.fileno(), select.POLLIN)
    return bool(poller.poll(0))
