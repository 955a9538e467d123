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
  connections and the others after their current response;
- ``hypercorn.protocol.ProtocolWrapper`` and ``hypercorn.protocol.h11.H11Protocol``: the
  ``TCPServer`` sets its connection's ``ProtocolWrapper`` as its ``protocol`` before it
  reads a byte, and the wrapper's ``protocol`` is then an ``H11Protocol`` unless ALPN chose
  HTTP/2. That protocol's ``h11.Connection`` (its ``connection``) writes every HTTP/1.1
  response head, from ``h11.Response`` events hypercorn makes without a reason phrase (ASGI
  has no field for one), so h11 writes ``HTTP/1.1 200 ``. The connections served here write
  the standard phrase instead, as uvicorn, nginx and IIS do (:class:`_ReasonPhrases`).

Checked against hypercorn 0.17.3 and 0.18.0 (the same signatures and behaviour in both).
"""

from __future__ import annotations

import asyncio
import functools
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, cast

import h11
from hypercorn.asyncio.tcp_server import TCPServer as AsyncioTCPServer
from hypercorn.asyncio.worker_context import WorkerContext as AsyncioWorkerContext
from hypercorn.config import Config
from hypercorn.protocol import ProtocolWrapper
from hypercorn.protocol.h11 import H11Protocol
from hypercorn.typing import AppWrapper
from hypercorn.utils import wrap_app

from hostkit.plugin import STANDARD_STATUS_LINES, ASGIApp

if TYPE_CHECKING:
    from hypercorn.trio.tcp_server import TCPServer as TrioTCPServer
    from hypercorn.trio.worker_context import WorkerContext as TrioWorkerContext

__all__ = ["AppWrapper", "asgi_app_wrapper", "asyncio_worker_context", "serve_asyncio_connection",
           "serve_trio_connection", "terminate", "trio_worker_context", "with_extension"]


def asgi_app_wrapper(app: ASGIApp, config: Config) -> AppWrapper:
    """``app`` in hypercorn's calling convention, as ``serve()`` wraps an ASGI app."""
    return wrap_app(cast(Any, app), config.wsgi_max_body_size, "asgi")


class _WithExtension:
    """hypercorn's app for one connection: every scope gets one more ASGI extension."""

    __slots__ = ("app", "name", "describe", "on_first_request", "extension")

    def __init__(self, app: AppWrapper, name: str, describe: Callable[[], dict[str, Any]],
                 on_first_request: Callable[[], None] | None):
        self.app = app
        self.name = name
        self.describe = describe
        self.on_first_request = on_first_request
        self.extension: dict[str, Any] | None = None

    async def __call__(self, scope: Any, receive: Any, send: Any, sync_spawn: Any,
                       call_soon: Any) -> None:
        if self.extension is None:
            self.extension = self.describe()
            if self.on_first_request is not None:
                self.on_first_request()
        scope["extensions"][self.name] = self.extension
        await self.app(scope, receive, send, sync_spawn, call_soon)


def with_extension(app: AppWrapper, name: str, describe: Callable[[], dict[str, Any]], *,
                   on_first_request: Callable[[], None] | None = None) -> AppWrapper:
    """``app`` for one connection, every scope of which gets the ASGI extension ``name``:
    what ``describe()`` returns, called on the connection's first request and kept.

    ``on_first_request`` is called then too: hypercorn calls the app once a whole request
    head has arrived, so that is when the connection's first head is in.
    """
    return _WithExtension(app, name, describe, on_first_request)


def asyncio_worker_context() -> AsyncioWorkerContext:
    """What the connections of one asyncio worker share (see :func:`terminate`)."""
    return AsyncioWorkerContext(None)


def trio_worker_context() -> TrioWorkerContext:
    """What the connections of one trio worker share (see :func:`terminate`); hypercorn's
    trio modules are imported here, so an asyncio host does not load trio."""
    from hypercorn.trio.worker_context import WorkerContext as TrioWorkerContext

    return TrioWorkerContext(None)


#: For each standard status code: the status line h11 writes for a response without a reason
#: phrase, and the line with the standard phrase.
_STATUS_LINES = {code: (b"HTTP/1.1 %d \r\n" % code, line)
                 for code, line in STANDARD_STATUS_LINES.items()}


def _with_reason_phrases(send: Callable[[Any], bytes | None]) -> Callable[[Any], bytes | None]:
    """An ``h11.Connection``'s ``send`` that writes the standard reason phrase into the
    status line of a response without one (an unknown status keeps none)."""

    def send_with_reason_phrase(event: Any) -> bytes | None:
        data = send(event)
        # type() rather than isinstance(): h11's event classes make isinstance take the
        # slow abstract-class path, on every event of every request.
        kind = type(event)
        if data and (kind is h11.Response or kind is h11.InformationalResponse) \
                and not event.reason:
            lines = _STATUS_LINES.get(event.status_code)
            if lines is not None and data.startswith(lines[0]):
                return lines[1] + data[len(lines[0]):]
        return data

    return send_with_reason_phrase


def _give_reason_phrases(wrapper: ProtocolWrapper) -> None:
    """Make the HTTP/1.1 protocol of a new connection's ``wrapper`` (none under HTTP/2)
    write the standard reason phrases; called before the connection's first byte is read."""
    protocol = wrapper.protocol
    if isinstance(protocol, H11Protocol) and isinstance(protocol.connection, h11.Connection):
        connection = protocol.connection
        send = _with_reason_phrases(connection.send)
        connection.send = send  # type: ignore[method-assign,assignment]


class _ReasonPhrases:
    """hypercorn's ``TCPServer`` (asyncio or trio) of one connection, whose HTTP/1.1 responses
    carry the standard reason phrase: ``TCPServer.run`` sets ``protocol`` once, before it
    reads (:func:`_give_reason_phrases`)."""

    _protocol: ProtocolWrapper

    @property
    def protocol(self) -> ProtocolWrapper:
        return self._protocol

    @protocol.setter
    def protocol(self, wrapper: ProtocolWrapper) -> None:
        _give_reason_phrases(wrapper)
        self._protocol = wrapper


class _AsyncioTCPServer(_ReasonPhrases, AsyncioTCPServer):
    """One asyncio connection (:class:`_ReasonPhrases`)."""


@functools.cache
def _trio_tcp_server() -> type[TrioTCPServer]:
    """The class of one trio connection (:class:`_ReasonPhrases`), made on first use: an
    asyncio host does not load trio."""
    from hypercorn.trio.tcp_server import TCPServer as TrioTCPServer

    class _TrioTCPServer(_ReasonPhrases, TrioTCPServer):
        pass

    return _TrioTCPServer


async def serve_asyncio_connection(app: AppWrapper, config: Config,
                                   context: AsyncioWorkerContext,
                                   reader: asyncio.StreamReader,
                                   writer: asyncio.StreamWriter) -> None:
    """Serve one accepted asyncio connection until it closes."""
    await _AsyncioTCPServer(app, asyncio.get_running_loop(), config, context, {}, reader,
                            writer)


async def serve_trio_connection(app: AppWrapper, config: Config, context: TrioWorkerContext,
                                stream: Any) -> None:
    """Serve one accepted trio stream (a ``trio.SocketStream`` or ``trio.SSLStream``) until
    it closes. hypercorn's trio ``TCPServer`` begins with the TLS handshake, which returns at
    once when the caller has done it already."""
    await _trio_tcp_server()(app, config, context, {}, stream)


async def terminate(context: AsyncioWorkerContext | TrioWorkerContext) -> None:
    """Tell every connection of a worker that it stops: idle keep-alive connections close,
    the others after their current response."""
    await context.terminated.set()
