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

from hostkit.plugin import TLSConnection, tls_extension

from hostkit_inprocess.hypercorn_internals import (
    AppWrapper,
    asyncio_worker_context,
    serve_asyncio_connection,
    serve_trio_connection,
    terminate,
    trio_worker_context,
    with_extension,
)


#: Seconds a stopping server still serves the request a connection sends, before it closes
#: the idle ones: a fresh connection's first request, already on its way when the listener
#: closed, or a keep-alive client's next. Each is answered with ``Connection: close`` (the
#: host's request stage adds it), so the client reconnects instead of sending on a connection
#: being closed under it. Ends early once every connection has closed.
LAST_REQUEST_GRACE = 1.0


class _OpenConnections:
    """How many connections are open; :meth:`wait_none` returns once none is."""

    def __init__(self) -> None:
        self._count = 0
        self._none = anyio.Event()
        self._none.set()

    @contextlib.contextmanager
    def one(self) -> Iterator[None]:
        """Count one connection while the block runs."""
        if self._count == 0:
            self._none = anyio.Event()
        self._count += 1
        try:
            yield
        finally:
            self._count -= 1
            if self._count == 0:
                self._none.set()

    async def wait_none(self) -> None:
        await self._none.wait()


#: What :func:`_accepting` calls with each connection: when it was accepted (on the loop's
#: clock), then the streams ``asyncio.start_server`` would give.
_AsyncioHandler = Callable[[float, asyncio.StreamReader, asyncio.StreamWriter],
                           Coroutine[Any, Any, None]]


def _accepting(on_connection: _AsyncioHandler) -> Callable[[], asyncio.StreamReaderProtocol]:
    """The protocol factory of ``asyncio.start_server``, but ``on_connection`` also learns when
    its connection was accepted: the factory runs then, before a TLS handshake."""
    loop = asyncio.get_running_loop()

    def protocol() -> asyncio.StreamReaderProtocol:
        accepted_at = loop.time()
        return asyncio.StreamReaderProtocol(asyncio.StreamReader(loop=loop),
                                            functools.partial(on_connection, accepted_at),
                                            loop=loop)

    return protocol


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
    #: each connection's task, and its writer (to abort its transport)
    connections: dict[asyncio.Task[None], asyncio.StreamWriter] = {}

    async def on_connection(accepted_at: float, reader: asyncio.StreamReader,
                            writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        connections[task] = writer
        task.add_done_callback(connections.pop)
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

    servers = [await loop.create_server(_accepting(on_connection), sock=sock, ssl=tls,
                                        ssl_handshake_timeout=config.ssl_handshake_timeout)
               for sock in secure]
    servers += [await loop.create_server(_accepting(on_connection), sock=sock)
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

    async def on_connection(stream: Any) -> None:
        with open_connections.one():
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
        async with trio.open_nursery() as accepting:
            accepting.start_soon(functools.partial(trio.serve_listeners, on_connection, listeners,
                                                   handler_nursery=connections))
            task_status.started()
            await stopping.wait()
            accepting.cancel_scope.cancel()
        drained_by = trio.current_time() + config.graceful_timeout
        with anyio.move_on_after(min(LAST_REQUEST_GRACE, config.graceful_timeout)):
            await open_connections.wait_none()  # each closes after its next response
        await terminate(context)
        connections.cancel_scope.deadline = drained_by
