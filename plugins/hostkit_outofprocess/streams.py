"""The module's sockets: accepting clients and connecting to children, per event loop.

The proxy speaks to two small duck-typed byte streams (``receive``, ``send``, ``aclose``,
``extra``), so its logic is written once. On trio they are anyio's socket streams. On asyncio
they are :class:`ProtocolStream`, a thin stream over an ``asyncio.Protocol`` that keeps what
arrives in a bounded buffer: anyio's asyncio streams pause and resume reading around every
``receive`` (an epoll change each time) and shield every ``send``, which is most of what a
proxy does per request.
"""

from __future__ import annotations

import asyncio
import collections
import socket
import ssl
from collections.abc import Callable, Coroutine
from typing import Any

import anyio
import sniffio
from anyio.abc import ByteStream, SocketAttribute, TaskGroup
from anyio.streams.tls import TLSAttribute, TLSListener

Handler = Callable[[Any], Coroutine[Any, Any, None]]

# Reading pauses when this much is buffered and not yet received, and resumes below a quarter.
_HIGH_WATER = 256 * 1024


class _BufferingProtocol(asyncio.Protocol):
    """Collects received data and wakes the one reader waiting for it."""

    def __init__(self) -> None:
        self.transport: asyncio.Transport | None = None
        self.chunks: collections.deque[bytes] = collections.deque()
        self.buffered = 0
        self.reading_paused = False
        self.eof = False
        self.error: BaseException | None = None
        self.read_waiter: asyncio.Future[None] | None = None
        self.write_paused = False
        self.drain_waiter: asyncio.Future[None] | None = None
        #: called once when the peer closes its side or the connection is lost.
        self.on_eof: Callable[[], None] | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def data_received(self, data: bytes) -> None:
        self.chunks.append(data)
        self.buffered += len(data)
        if self.buffered > _HIGH_WATER and not self.reading_paused and self.transport:
            self.reading_paused = True
            self.transport.pause_reading()
        self._wake_reader()

    def eof_received(self) -> bool:
        self.eof = True
        self._wake_reader()
        self._report_eof()
        return False  # close the transport

    def connection_lost(self, error: Exception | None) -> None:
        self.eof = True
        self.error = error
        self._wake_reader()
        self._report_eof()
        if self.drain_waiter is not None and not self.drain_waiter.done():
            self.drain_waiter.set_result(None)

    def pause_writing(self) -> None:
        self.write_paused = True

    def resume_writing(self) -> None:
        self.write_paused = False
        if self.drain_waiter is not None and not self.drain_waiter.done():
            self.drain_waiter.set_result(None)

    def _report_eof(self) -> None:
        callback, self.on_eof = self.on_eof, None
        if callback is not None:
            callback()

    def _wake_reader(self) -> None:
        if self.read_waiter is not None and not self.read_waiter.done():
            self.read_waiter.set_result(None)


class _AcceptedProtocol(_BufferingProtocol):
    """A server-side connection: hands its stream to ``on_connect`` once made."""

    def __init__(self, on_connect: Callable[[ProtocolStream], None]):
        super().__init__()
        self.on_connect = on_connect

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        super().connection_made(transport)
        self.on_connect(ProtocolStream(transport, self))  # type: ignore[arg-type]


class ProtocolStream:
    """A byte stream over an asyncio transport, with anyio's stream exceptions."""

    def __init__(self, transport: asyncio.Transport, protocol: _BufferingProtocol):
        self.transport = transport
        self.protocol = protocol

    async def receive(self, max_bytes: int = 65536) -> bytes:
        protocol = self.protocol
        while not protocol.chunks:
            if protocol.eof:
                if protocol.error is not None:
                    raise anyio.BrokenResourceError from protocol.error
                raise anyio.EndOfStream
            protocol.read_waiter = asyncio.get_running_loop().create_future()
            try:
                await protocol.read_waiter
            finally:
                protocol.read_waiter = None
        chunk = protocol.chunks.popleft()
        if len(chunk) > max_bytes:
            protocol.chunks.appendleft(chunk[max_bytes:])
            chunk = chunk[:max_bytes]
        protocol.buffered -= len(chunk)
        if protocol.reading_paused and protocol.buffered < _HIGH_WATER // 4:
            protocol.reading_paused = False
            self.transport.resume_reading()
        return chunk

    async def send(self, data: bytes) -> None:
        protocol = self.protocol
        if self.transport.is_closing():
            raise anyio.BrokenResourceError
        self.transport.write(data)
        while protocol.write_paused and not self.transport.is_closing():
            protocol.drain_waiter = asyncio.get_running_loop().create_future()
            try:
                await protocol.drain_waiter
            finally:
                protocol.drain_waiter = None
        if protocol.error is not None:
            raise anyio.BrokenResourceError from protocol.error

    async def aclose(self) -> None:
        self.transport.close()

    def extra(self, attribute: Any, default: Any = None) -> Any:
        if attribute is SocketAttribute.remote_address:
            peer = self.transport.get_extra_info("peername")
            if peer is not None:
                return peer
        if default is not None:
            return default
        raise anyio.TypedAttributeLookupError(attribute)


def ssl_object(stream: ByteStream | ProtocolStream) -> ssl.SSLObject | None:
    """The TLS object of an accepted connection (handshake done), ``None`` for plain HTTP."""
    if isinstance(stream, ProtocolStream):
        return stream.transport.get_extra_info("ssl_object")  # type: ignore[no-any-return]
    return stream.extra(TLSAttribute.ssl_object, None)  # type: ignore[no-any-return]


def _on_asyncio() -> bool:
    return sniffio.current_async_library() == "asyncio"


async def connect_child(port: int) -> ByteStream:
    """A connection to a child on 127.0.0.1 (``OSError`` when refused)."""
    if _on_asyncio():
        loop = asyncio.get_running_loop()
        transport, protocol = await loop.create_connection(_BufferingProtocol, "127.0.0.1", port)
        return ProtocolStream(transport, protocol)  # type: ignore[return-value]
    stream = await anyio.connect_tcp("127.0.0.1", port)
    stream.extra(SocketAttribute.raw_socket).setsockopt(
        socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    return stream


async def serve_listener(sock: socket.socket, tls: ssl.SSLContext | None, handle: Handler,
                         connections: TaskGroup) -> None:
    """Accept connections on ``sock`` until cancelled; each is handled in ``connections``."""
    if _on_asyncio():
        loop = asyncio.get_running_loop()

        def accepted(stream: ProtocolStream) -> None:
            connections.start_soon(handle, stream)

        server = await loop.create_server(lambda: _AcceptedProtocol(accepted), sock=sock,
                                          ssl=tls, backlog=1024)
        try:
            await anyio.sleep_forever()
        finally:
            server.close()
        return
    listener: anyio.abc.Listener[ByteStream] = await anyio.abc.SocketListener.from_socket(sock)
    if tls is not None:
        listener = TLSListener(listener, tls, standard_compatible=False)
    async with listener:
        await listener.serve(handle, task_group=connections)
