"""Accepting connections and handing each to hypercorn's connection handler.

hypercorn's own ``serve()`` does this too, but it gives an app no way to learn the TLS
client certificate of its connection (hypercorn has no ASGI ``tls`` extension). hostkit
therefore accepts the connections itself and gives each one to hypercorn's connection handler
(``hypercorn_internals.py``, where every use of hypercorn beyond its public API is), with the
``tls`` extension added to every scope of a TLS connection. Everything else (HTTP/1.1,
HTTP/2, WebSockets, keep-alive, graceful close) is hypercorn's.

The app's lifespan is not run here: the host runs it (``hostkit/lifespan.py``).
"""

from __future__ import annotations

import asyncio
import functools
import socket
import ssl
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


async def serve_asyncio(app: AppWrapper, config: Config, secure: list[socket.socket],
                        insecure: list[socket.socket], tls: ssl.SSLContext | None,
                        stopping: anyio.Event, *,
                        task_status: TaskStatus[None] = anyio.TASK_STATUS_IGNORED) -> None:
    """Serve on asyncio until ``stopping``; then let connections finish within
    ``config.graceful_timeout`` and cancel the rest."""
    context = asyncio_worker_context()
    connections: set[asyncio.Task[None]] = set()

    async def on_connection(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        connections.add(task)
        task.add_done_callback(connections.discard)
        connection_app = app
        ssl_object = writer.get_extra_info("ssl_object")
        if ssl_object is not None:
            connection_app = with_extension(app, "tls", functools.partial(tls_extension,
                                                                          ssl_object))
        await serve_asyncio_connection(connection_app, config, context, reader, writer)

    servers = [await asyncio.start_server(on_connection, sock=sock, ssl=tls,
                                          ssl_handshake_timeout=config.ssl_handshake_timeout)
               for sock in secure]
    servers += [await asyncio.start_server(on_connection, sock=sock) for sock in insecure]
    task_status.started()
    try:
        await stopping.wait()
    finally:
        for server in servers:
            server.close()
        await terminate(context)
        with anyio.CancelScope(shield=True):
            with anyio.move_on_after(config.graceful_timeout):
                while connections:
                    await asyncio.wait(set(connections))
            for task in connections:
                task.cancel()
            if connections:
                await asyncio.wait(set(connections), timeout=1)


async def serve_trio(app: AppWrapper, config: Config, secure: list[socket.socket],
                     insecure: list[socket.socket], tls: ssl.SSLContext | None,
                     stopping: anyio.Event, *,
                     task_status: TaskStatus[None] = anyio.TASK_STATUS_IGNORED) -> None:
    """Serve on trio until ``stopping``; then let connections finish within
    ``config.graceful_timeout`` and cancel the rest."""
    import trio  # imported here: an asyncio host does not load trio

    context = trio_worker_context()

    async def on_connection(stream: Any) -> None:
        connection_app = app
        if isinstance(stream, trio.SSLStream):
            # trio.SSLStream forwards getpeercert() and version() to its SSLObject.
            tls_connection = cast(TLSConnection, stream)
            connection_app = with_extension(app, "tls", functools.partial(tls_extension,
                                                                          tls_connection))
        await serve_trio_connection(connection_app, config, context, stream)

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
        await terminate(context)
        connections.cancel_scope.deadline = trio.current_time() + config.graceful_timeout
