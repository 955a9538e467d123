"""Accepting connections and handing each to hypercorn's connection handler.

hypercorn's own ``serve()`` does this too, but it gives an app no way to learn the TLS
client certificate of its connection (hypercorn has no ASGI ``tls`` extension). hostkit
therefore accepts the connections itself and gives each one to hypercorn's connection handler
(``hypercorn_internals.py``, where every use of hypercorn beyond its public API is), with the
``tls`` extension added to every scope of a TLS connection. Everything else (HTTP/1.1,
HTTP/2, WebSockets, keep-alive, graceful close) is hypercorn's.

A connection's first request head is due ``keep_alive_timeout`` (the host's
``next_request_head_timeout``) after the connection was accepted, its TLS handshake included
(a plain connection's, as hypercorn times it). hypercorn starts that timer only once it has
the connection, after the handshake, so for a TLS connection hostkit also keeps the deadline
from accept (:func:`serve_asyncio`, :func:`serve_trio`) until the app is called with the
first request.

What a connection's writes may hold, and how it ends when its client has left, is
``sending.py``'s; the connections are counted in a ``hostkit.plugin.ConnectionMemory``, which
gives the memory of a burst of closed connections back to the system. A stop closes what is still open when
``graceful_timeout`` is over, on trio too, where a write to a client that does not read is
shielded from cancellation.

The app's lifespan is not run here: the host runs it (``hostkit/lifespan.py``).
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import math
import socket
import ssl
from collections.abc import Callable, Coroutine, Iterator
from typing import Any, cast

import anyio
from anyio.abc import TaskStatus
from hypercorn.config import Config

from hostkit.plugin import ConnectionMemory, TLSConnection, tls_extension

from hostkit_inprocess.hypercorn_internals import (
    AppWrapper,
    asyncio_worker_context,
    serve_asyncio_connection,
    serve_trio_connection,
    terminate,
    trio_worker_context,
    with_extension,
)
from hostkit_inprocess.sending import limit_buffer


#: Seconds a stopping server still serves the request a connection sends, before it closes
#: the idle ones: a fresh connection's first request, already on its way when the listener
#: closed, or a keep-alive client's next. Each is answered with ``Connection: close`` (the
#: host's request stage adds it), so the client reconnects instead of sending on a connection
#: being closed under it. Ends early once every connection has closed.
LAST_REQUEST_GRACE = 1.0


class _OpenConnections:
    """The open trio connections (their sockets); :meth:`wait_none` returns once none is."""

    def __init__(self) -> None:
        self._sockets: set[Any] = set()
        self._none = anyio.Event()
        self._none.set()

    @contextlib.contextmanager
    def one(self, sock: Any) -> Iterator[None]:
        """Count the connection of trio socket ``sock`` while the block runs."""
        if not self._sockets:
            self._none = anyio.Event()
        self._sockets.add(sock)
        try:
            yield
        finally:
            self._sockets.discard(sock)
            if not self._sockets:
                self._none.set()

    def close_all(self) -> None:
        """Close the socket of every open connection: a write blocked on a client that does
        not read is shielded from cancellation (hypercorn's, so that no frame is cut
        short), and ends only when its socket closes."""
        for sock in list(self._sockets):
            sock.close()

    async def wait_none(self) -> None:
        await self._none.wait()


#: What :func:`_accepting` calls with each connection: when it was accepted (on the loop's
#: clock), then the streams ``asyncio.start_server`` would give.
_AsyncioHandler = Callable[[float, asyncio.StreamReader, asyncio.StreamWriter],
                           Coroutine[Any, Any, None]]


class _AsyncioConnections:
    """The task of each open asyncio connection, and its writer (to abort its transport).

    The tasks are made here, not by ``asyncio.StreamReaderProtocol`` (given a coroutine
    function, it makes one itself): on Python 3.11 its done-callback asks a cancelled task
    for its exception and logs the ``CancelledError`` that raises, a traceback for every
    connection the end of a drain cancels."""

    def __init__(self, on_connection: _AsyncioHandler):
        self.on_connection = on_connection
        self.tasks: dict[asyncio.Task[None], asyncio.StreamWriter] = {}

    def protocol_factory(self) -> Callable[[], asyncio.StreamReaderProtocol]:
        """The protocol factory of ``loop.create_server``; the factory runs when a connection
        is accepted, before a TLS handshake, so its handler also learns when that was."""
        loop = asyncio.get_running_loop()

        def protocol() -> asyncio.StreamReaderProtocol:
            connected = functools.partial(self._start, loop.time())
            return asyncio.StreamReaderProtocol(asyncio.StreamReader(loop=loop), connected,
                                                loop=loop)

        return protocol

    def _start(self, accepted_at: float, reader: asyncio.StreamReader,
               writer: asyncio.StreamWriter) -> None:
        """A connection is made (its TLS handshake done): serve it in a task of its own."""
        limit_buffer(writer)
        task = asyncio.get_running_loop().create_task(
            self.on_connection(accepted_at, reader, writer))
        self.tasks[task] = writer
        task.add_done_callback(self._ended)

    def _ended(self, task: asyncio.Task[None]) -> None:
        """A connection's task is done: forget it; an error hypercorn let out is logged, as
        asyncio would, and its transport closed."""
        writer = self.tasks.pop(task)
        if task.cancelled():
            return
        error = task.exception()
        if error is not None:
            asyncio.get_running_loop().call_exception_handler({
                "message": "error while serving a connection", "exception": error,
                "transport": writer.transport})
            writer.transport.close()


async def serve_asyncio(app: AppWrapper, config: Config, secure: list[socket.socket],
                        insecure: list[socket.socket], tls: ssl.SSLContext | None,
                        stopping: anyio.Event, *,
                        task_status: TaskStatus[None] = anyio.TASK_STATUS_IGNORED) -> None:
    """Serve on asyncio until ``stopping``; then let connections finish within
    ``config.graceful_timeout`` (or until this is cancelled: the host's second signal) and
    abort the rest, unanswered, as on trio.

    A TLS connection without a whole request head ``keep_alive_timeout`` after its accept
    (handshake included) is aborted: nothing was asked of it, so nothing is owed."""
    loop = asyncio.get_running_loop()
    context = asyncio_worker_context()
    memory = ConnectionMemory()

    async def on_connection(accepted_at: float, reader: asyncio.StreamReader,
                            writer: asyncio.StreamWriter) -> None:
        async with memory.connection():
            await serve_one(accepted_at, reader, writer)

    async def serve_one(accepted_at: float, reader: asyncio.StreamReader,
                        writer: asyncio.StreamWriter) -> None:
        ssl_object = writer.get_extra_info("ssl_object")
        if ssl_object is None:
            await serve_asyncio_connection(app, config, context, reader, writer)
            return
        overdue = loop.call_at(accepted_at + config.keep_alive_timeout, writer.transport.abort)
        connection_app = with_extension(app, "tls", functools.partial(tls_extension, ssl_object),
                                        on_first_request=overdue.cancel)
        try:
            await serve_asyncio_connection(connection_app, config, context, reader, writer)
        finally:
            overdue.cancel()

    open_connections = _AsyncioConnections(on_connection)
    connections = open_connections.tasks
    servers = [await loop.create_server(open_connections.protocol_factory(), sock=sock, ssl=tls,
                                        ssl_handshake_timeout=config.ssl_handshake_timeout)
               for sock in secure]
    servers += [await loop.create_server(open_connections.protocol_factory(), sock=sock)
                for sock in insecure]
    task_status.started()
    try:
        try:
            await stopping.wait()
        finally:
            for server in servers:
                server.close()
        drained_by = anyio.current_time() + config.graceful_timeout
        with anyio.move_on_after(min(LAST_REQUEST_GRACE, config.graceful_timeout)):
            while connections:  # each closes after its next response (Connection: close)
                await asyncio.wait(set(connections))
        await terminate(context)
        # Not shielded: cancelling the server (the host's second signal) ends the drain.
        with anyio.CancelScope(deadline=drained_by):
            while connections:
                await asyncio.wait(set(connections))
    finally:
        # asyncio.Server starts the connection tasks outside any task group, so they are
        # ended and awaited here, however serving ends. The transport is aborted first: a
        # cancelled hypercorn connection would otherwise answer its request with a 500 (and
        # wait to write it), where on trio the cancellation ends it unanswered.
        with anyio.CancelScope(shield=True):
            for task, writer in list(connections.items()):
                writer.transport.abort()
                task.cancel()
            if connections:
                await asyncio.wait(set(connections), timeout=1)


async def serve_trio(app: AppWrapper, config: Config, secure: list[socket.socket],
                     insecure: list[socket.socket], tls: ssl.SSLContext | None,
                     stopping: anyio.Event, *,
                     task_status: TaskStatus[None] = anyio.TASK_STATUS_IGNORED) -> None:
    """Serve on trio until ``stopping``; then let connections finish within
    ``config.graceful_timeout`` and cancel the rest.

    A TLS connection without a whole request head ``keep_alive_timeout`` after its accept
    (handshake included) is closed: nothing was asked of it, so nothing is owed."""
    import trio  # imported here: an asyncio host does not load trio

    context = trio_worker_context()

    async def on_secure_connection(stream: trio.SSLStream[trio.SocketStream]) -> None:
        first_head = trio.CancelScope(deadline=trio.current_time() + config.keep_alive_timeout)

        def first_head_in() -> None:
            first_head.deadline = math.inf

        # trio.SSLStream forwards getpeercert() and version() to its SSLObject.
        describe = functools.partial(tls_extension, cast(TLSConnection, stream))
        connection_app = with_extension(app, "tls", describe, on_first_request=first_head_in)
        try:
            with first_head:
                try:
                    await stream.do_handshake()
                except trio.BrokenResourceError:
                    return  # the client left, or does not speak TLS
                await serve_trio_connection(connection_app, config, context, stream)
        finally:
            await trio.aclose_forcefully(stream)  # at once, if hypercorn has not closed it

    open_connections = _OpenConnections()
    memory = ConnectionMemory()

    async def on_connection(stream: Any) -> None:
        transport = stream.transport_stream if isinstance(stream, trio.SSLStream) else stream
        async with memory.connection():
            await serve_one(stream, transport)

    async def serve_one(stream: Any, transport: Any) -> None:
        with open_connections.one(transport.socket):
            if isinstance(stream, trio.SSLStream):
                await on_secure_connection(stream)
            else:
                await serve_trio_connection(app, config, context, stream)

    listeners: list[Any] = []
    for sock in secure:
        assert tls is not None
        listeners.append(trio.SSLListener(trio.SocketListener(trio.socket.from_stdlib_socket(sock)),
                                          tls, https_compatible=True))
    for sock in insecure:
        listeners.append(trio.SocketListener(trio.socket.from_stdlib_socket(sock)))

    async with trio.open_nursery() as connections:
        try:
            async with trio.open_nursery() as accepting:
                accepting.start_soon(functools.partial(trio.serve_listeners, on_connection,
                                                       listeners, handler_nursery=connections))
                task_status.started()
                await stopping.wait()
                accepting.cancel_scope.cancel()
            drained_by = trio.current_time() + config.graceful_timeout
            with anyio.move_on_after(min(LAST_REQUEST_GRACE, config.graceful_timeout)):
                await open_connections.wait_none()  # each closes after its next response
            await terminate(context)
            with trio.move_on_at(drained_by):
                await open_connections.wait_none()
        finally:
            # However serving ends (the drain's deadline, or cancelled: the host's second
            # signal), what is still open is closed, then cancelled.
            open_connections.close_all()
            connections.cancel_scope.cancel()
