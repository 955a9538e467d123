"""The parts of hypercorn that are not its public API, all in this one module.

hypercorn's public API is ``Config`` and ``serve()`` (``hypercorn.asyncio`` and
``hypercorn.trio``). ``serve()`` binds its own sockets, runs the app's lifespan and accepts
every connection itself, and gives an app no way to learn the TLS client certificate of its
connection (hypercorn has no ASGI ``tls`` extension). hostkit binds the sockets, runs the
lifespan and accepts the connections itself (``connections.py``), and hands each connection to
what ``serve()`` uses inside:

- ``hypercorn.utils.wrap_app``: the app in hypercorn's ``AppWrapper`` calling convention
  (``hypercorn.typing.AppWrapper``: ``(scope, receive, send, sync_spawn, call_soon)``), in
  which :func:`with_extension` adds an ASGI extension to every scope of one connection;
- ``hypercorn.asyncio.tcp_server.TCPServer`` and ``hypercorn.trio.tcp_server.TCPServer``:
  one connection (HTTP/1.1, HTTP/2, WebSockets, keep-alive, graceful close), given the
  wrapped app, the config, the worker context and a lifespan state (empty: the host puts the
  app's lifespan state in each scope);
- ``hypercorn.asyncio.worker_context.WorkerContext`` and its trio twin: what the connections
  of one worker share; its ``terminated`` event, once set, closes idle keep-alive
  connections and the others after their current response.

Checked against hypercorn 0.17.3 and 0.18.0 (the same signatures and behaviour in both).
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, cast

from hypercorn.asyncio.tcp_server import TCPServer as AsyncioTCPServer
from hypercorn.asyncio.worker_context import WorkerContext as AsyncioWorkerContext
from hypercorn.config import Config
from hypercorn.typing import AppWrapper
from hypercorn.utils import wrap_app

from hostkit.plugin import ASGIApp

if TYPE_CHECKING:
    from hypercorn.trio.worker_context import WorkerContext as TrioWorkerContext

__all__ = ["AppWrapper", "asgi_app_wrapper", "asyncio_worker_context", "serve_asyncio_connection",
           "serve_trio_connection", "terminate", "trio_worker_context", "with_extension"]


def asgi_app_wrapper(app: ASGIApp, config: Config) -> AppWrapper:
    """``app`` in hypercorn's calling convention, as ``serve()`` wraps an ASGI app."""
    return wrap_app(cast(Any, app), config.wsgi_max_body_size, "asgi")


class _WithExtension:
    """hypercorn's app for one connection: every scope gets one more ASGI extension."""

    __slots__ = ("app", "name", "describe", "extension")

    def __init__(self, app: AppWrapper, name: str, describe: Callable[[], dict[str, Any]]):
        self.app = app
        self.name = name
        self.describe = describe
        self.extension: dict[str, Any] | None = None

    async def __call__(self, scope: Any, receive: Any, send: Any, sync_spawn: Any,
                       call_soon: Any) -> None:
        if self.extension is None:
            self.extension = self.describe()
        scope["extensions"][self.name] = self.extension
        await self.app(scope, receive, send, sync_spawn, call_soon)


def with_extension(app: AppWrapper, name: str,
                   describe: Callable[[], dict[str, Any]]) -> AppWrapper:
    """``app`` for one connection, every scope of which gets the ASGI extension ``name``:
    what ``describe()`` returns, called on the connection's first request and kept."""
    return _WithExtension(app, name, describe)


def asyncio_worker_context() -> AsyncioWorkerContext:
    """What the connections of one asyncio worker share (see :func:`terminate`)."""
    return AsyncioWorkerContext(None)


def trio_worker_context() -> TrioWorkerContext:
    """What the connections of one trio worker share (see :func:`terminate`); hypercorn's
    trio modules are imported here, so an asyncio host does not load trio."""
    from hypercorn.trio.worker_context import WorkerContext as TrioWorkerContext

    return TrioWorkerContext(None)


async def serve_asyncio_connection(app: AppWrapper, config: Config,
                                   context: AsyncioWorkerContext,
                                   reader: asyncio.StreamReader,
                                   writer: asyncio.StreamWriter) -> None:
    """Serve one accepted asyncio connection until it closes."""
    await AsyncioTCPServer(app, asyncio.get_running_loop(), config, context, {}, reader,
                           writer)


async def serve_trio_connection(app: AppWrapper, config: Config, context: TrioWorkerContext,
                                stream: Any) -> None:
    """Serve one accepted trio stream (a ``trio.SocketStream`` or ``trio.SSLStream``) until
    it closes."""
    from hypercorn.trio.tcp_server import TCPServer as TrioTCPServer

    await TrioTCPServer(app, config, context, {}, stream)


async def terminate(context: AsyncioWorkerContext | TrioWorkerContext) -> None:
    """Tell every connection of a worker that it stops: idle keep-alive connections close,
    the others after their current response."""
    await context.terminated.set()
