"""Accepting connections and handing each to hypercorn's connection handler.

hypercorn's own ``worker_serve`` does this too, but it gives an app no way to learn the TLS
client certificate of its connection (hypercorn has no ASGI ``tls`` extension). hostkit
therefore accepts the connections itself and gives each one hypercorn's ``TCPServer`` with
an app that adds the ``tls`` extension to every scope of that connection. Everything else
(HTTP/1.1, HTTP/2, WebSockets, keep-alive, graceful close) is hypercorn's.

The app's lifespan is not run here: the host runs it (``hostkit/lifespan.py``).
"""

from __future__ import annotations

import asyncio
import functools
import socket
import ssl
from collections.abc import Callable
from typing import Any, cast

import anyio
from anyio.abc import TaskStatus
from hypercorn.asyncio.tcp_server import TCPServer as AsyncioTCPServer
from hypercorn.asyncio.worker_context import WorkerContext as AsyncioWorkerContext
from hypercorn.config import Config
from hypercorn.typing import AppWrapper

from hostkit.tls import TLSConnection, tls_extension


class _WithTLSExtension:
    """hypercorn's app for one TLS connection: every scope gets the ``tls`` extension.

    ``describe`` is called on the first request, when the handshake is surely done.
    """

    __slots__ = ("app", "describe", "extension")

    def __init__(self, app: AppWrapper, describe: Callable[[], dict[str, Any]]):
        self.app = app
        self.describe = describe
        self.extension: dict[str, Any] | None = None

    async def __call__(self, scope: Any, receive: Any, send: Any, sync_spawn: Any,
                       call_soon: Any) -> None:
        if self.extension is None:
            self.extension = self.describe()
        scope["extensions"]["tls"] = self.extension
        await self.app(scope, receive, send, sync_spawn, call_soon)


async def serve_asyncio(app: AppWrapper, config: Config, secure: list[socket.socket],
                        insecure: list[socket.socket], tls: ssl.SSLContext | None,
                        stopping: anyio.Event, *,
                        task_status: TaskStatus[None] = anyio.TASK_STATUS_IGNORED) -> None:
    """Serve on asyncio until ``stopping``; then let connections finish within
    ``config.graceful_timeout`` and cancel the rest."""
    loop = asyncio.get_running_loop()
    context = AsyncioWorkerContext(None)
    connections: set[asyncio.Task[None]] = set()

    async def on_connection(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        connections.add(task)
        task.add_done_callback(connections.discard)
        connection_app = app
        ssl_object = writer.get_extra_info("ssl_object")
        if ssl_object is not None:
            connection_app = _WithTLSExtension(app, functools.partial(tls_extension, ssl_object))
        await AsyncioTCPServer(connection_app, loop, config, context, {}, reader, writer)

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
        # hypercorn closes idle keep-alive connections once ``terminated`` is set, and the
        # others after their current response.
        await context.terminated.set()
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
    from hypercorn.trio.tcp_server import TCPServer as TrioTCPServer
    from hypercorn.trio.worker_context import WorkerContext as TrioWorkerContext

    context = TrioWorkerContext(None)

    async def on_connection(stream: Any) -> None:
        connection_app = app
        if isinstance(stream, trio.SSLStream):
            # trio.SSLStream forwards getpeercert() and version() to its SSLObject.
            tls_connection = cast(TLSConnection, stream)
            connection_app = _WithTLSExtension(app, functools.partial(tls_extension,
                                                                      tls_connection))
        await TrioTCPServer(connection_app, config, context, {}, stream)

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
        await context.terminated.set()
        connections.cancel_scope.deadline = trio.current_time() + config.graceful_timeout
