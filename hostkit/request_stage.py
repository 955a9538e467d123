"""The outermost layer of the pipeline: what hostkit does for every request, under every server.

A server plugin hands each ASGI call to :class:`RequestStage`, which

- answers ``lifespan`` itself (the host runs the app's lifespan, see ``hostkit/lifespan.py``);
- puts the features, an anonymous user and the lifespan state in the scope;
- answers every request with "500.30 In-Process Start Failure" while the app failed to start;
- enforces ``server.max_request_body_size`` when the app reads the body, as ASP.NET Core
  does: a declared length over the limit fails the first read, a counted body the read
  that passes it; the answer is 413 and ``Connection: close``, after reading and dropping a
  bounded rest of the body so the client gets the 413 instead of a reset connection;
- sets ``request_aborted`` when the client goes away;
- turns an exception from the app into a logged 500 (or an aborted connection once the
  response has started), so the server keeps serving; an asyncio-only library failing on
  trio is named once per cause (:mod:`hostkit.backend_hints`).

The stage runs for every request under every server, so its own cost is kept to what each
request needs: a request that never reads its body never pays for the limit, and nothing is
made for ``request_aborted`` until someone asks (``bench/instructions.py`` counts the cost).
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Iterable
from typing import Any

import anyio
from anyio.abc import TaskGroup
from anyio.streams.memory import MemoryObjectReceiveStream, MemoryObjectSendStream

from hostkit import error_pages
from hostkit.asgi import ASGIApp, Message, Receive, Scope, Send
from hostkit.backend_hints import BackendHints
from hostkit.context import REQUEST_STATE_KEY, ClientDisconnected, Features, RequestState
from hostkit.errors import RequestBodyTooLargeError
from hostkit.identity import new_anonymous_principal
from hostkit.lifespan import AppStartFailure

logger = logging.getLogger("hostkit.request")

_DISCONNECT: Message = {"type": "http.disconnect"}
# Messages the disconnect watcher may read ahead of the app before it waits for the app.
_READ_AHEAD = 8
# After a 413, what is left of the body is read and dropped, up to this much, this long.
_DRAIN_BYTES = 1 << 20
_DRAIN_SECONDS = 1.0


class _ReadAhead:
    """The disconnect watcher of one request (:meth:`_Exchange.watch`): the messages it read
    ahead of the app, and the scope that stops it."""

    __slots__ = ("messages", "stop")

    def __init__(self, messages: MemoryObjectReceiveStream[Message]):
        self.messages = messages
        self.stop = anyio.CancelScope()


def _closing(start: Message) -> Message:
    """``start`` with ``Connection: close`` (HTTP/1 only: HTTP/2 has no such header, and
    closes its streams with GOAWAY)."""
    return {**start, "headers": [*start.get("headers", ()), (b"connection", b"close")]}


class _Exchange(RequestState):
    """One request as the request stage sees it: the shared request state, and ``receive``
    and ``send`` wrapped to enforce the body limit, notice disconnects and note the response
    start. Made by :meth:`RequestStage.__call__` for every HTTP request, which calls
    :meth:`finish` when the request is over.

    ``__init__`` sets what every request uses; the flags below start at their class-level
    defaults, as :class:`RequestState`'s do, and most requests never change them.
    """

    __slots__ = ("_stage", "_headers", "_receive", "_send", "_read_ahead")

    _length_checked = False
    _received = 0
    body_too_large = False
    response_started = False
    #: an HTTP/2 stream: its connection is not closed by a header of its response.
    multiplexed = False

    def __init__(self, stage: RequestStage, headers: Iterable[tuple[bytes, bytes]],
                 receive: Receive, send: Send):
        self._stage = stage
        self._headers = headers  # the scope's; not the scope, which holds this exchange
        self._receive = receive
        self._send = send
        self._read_ahead: _ReadAhead | None = None

    @property
    def allow_synchronous_io(self) -> bool:
        return self._stage.allow_synchronous_io

    @property
    def finished(self) -> bool:
        """Whether :meth:`finish` was called."""
        return self._receive is _request_over

    async def receive(self) -> Message:
        """The server's ``receive`` (or the read-ahead's), counting the body against the
        limit. Raises :class:`RequestBodyTooLargeError` past it, and on the first read when
        the declared length is over it, before anything is read."""
        limit = self._stage.max_request_body_size
        if not self._length_checked:
            self._length_checked = True
            declared = _declared_length(self._headers) if limit else None
            if declared is not None and declared > limit:
                self._over_limit(limit)
        read_ahead = self._read_ahead
        if read_ahead is None:
            message = await self._receive()
        else:
            try:
                message = await read_ahead.messages.receive()
            except anyio.EndOfStream:
                message = _DISCONNECT
        kind = message["type"]
        if kind == "http.request":
            if limit:
                self._received += len(message.get("body", b""))
                if self._received > limit:
                    self._over_limit(limit)
        elif kind == "http.disconnect":
            self.mark_disconnected()
        return message

    def _over_limit(self, limit: int) -> None:
        self.body_too_large = True
        raise RequestBodyTooLargeError(
            f"the request body is larger than {limit} bytes (server.max_request_body_size)")

    def send(self, message: Message) -> Awaitable[None]:
        """The server's ``send``, noting the response start (and, once the host stops,
        closing the connection after it). A plain function returning the server's awaitable:
        no coroutine of its own on the path of every message.

        After the body limit's error, a 5xx response of the app's is dropped, with the rest
        of its messages: it is a framework's page for the error it did not handle
        (Starlette's ``ServerErrorMiddleware`` sends its 500, then raises the error again),
        and the stage answers 413 instead, as Kestrel does for a request it rejected."""
        if message["type"] == "http.response.start":
            if self.body_too_large and message.get("status", 200) >= 500:
                self._send = _dropped
                return _dropped(message)
            self.response_started = True
            if self._stage.closing_connections and not self.multiplexed:
                message = _closing(message)
        return self._send(message)

    def watch(self) -> None:
        """Start reading ahead of the app so a disconnect is seen while it is busy."""
        task_group = self._stage.task_group
        if task_group is None or self.finished or self._read_ahead is not None:
            return
        sink, messages = anyio.create_memory_object_stream[Message](_READ_AHEAD)
        self._read_ahead = _ReadAhead(messages)
        task_group.start_soon(self._run_read_ahead, self._read_ahead.stop, sink)

    async def _run_read_ahead(self, stop: anyio.CancelScope,
                              sink: MemoryObjectSendStream[Message]) -> None:
        with stop, sink:
            if self.finished:  # before this task first ran
                return
            while True:
                message = await self._receive()
                await sink.send(message)
                if message["type"] == "http.disconnect":
                    self.mark_disconnected()
                    return

    async def drain(self, receive: Receive) -> None:
        """Before a 413, once :meth:`finish` stopped the read-ahead: :func:`_drain` what is
        left of the body from the server's ``receive``, starting with what the read-ahead had
        buffered. Nothing when the client waits for ``100 Continue`` and nothing was read: it
        sends no body."""
        read_ahead = self._read_ahead
        if self.disconnected or (self._received == 0 and read_ahead is None
                                 and _expects_continue(self._headers)):
            return
        if read_ahead is not None:
            self._read_ahead = None
            if not await _drain(read_ahead.messages.receive, stop_at_end_of_stream=True):
                return
        await _drain(receive)

    def finish(self) -> None:
        """The request is over, or the app is done before a 413: stop the read-ahead, if it
        runs, and let go of the server's ``receive`` and ``send`` and of the authentication
        callables. The scope holds the exchange and those callables hold the scope: a
        reference cycle per request otherwise, left to the garbage collector, whose pauses
        under load show as latency. A late ``receive`` gets ``http.disconnect``, a late
        ``send`` raises RuntimeError.
        """
        if self._read_ahead is not None:
            self._read_ahead.stop.cancel()
        self._receive = _request_over
        self._send = _response_over
        self.authenticate = self.challenge = None


async def _dropped(message: Message) -> None:
    """A message of a response the stage replaced (``_Exchange.send``): not sent."""


async def _request_over() -> Message:
    return _DISCONNECT


async def _response_over(message: Message) -> None:
    raise RuntimeError(f"{message.get('type')!r} sent after the request was over")


async def _drain(receive: Receive, stop_at_end_of_stream: bool = False) -> bool:
    """Read and drop the rest of a request body, at most ``_DRAIN_BYTES`` for at most
    ``_DRAIN_SECONDS``. Called before a 413: the server closes the connection after it, and
    closing with unread bytes makes the kernel reset the connection, so the client could
    lose the 413.

    Returns True when the body may go on (``receive`` ran dry: ``stop_at_end_of_stream``),
    False when it ended, the client left, or a bound was reached.
    """
    budget = _DRAIN_BYTES
    with anyio.move_on_after(_DRAIN_SECONDS):
        while budget > 0:
            try:
                message = await receive()
            except anyio.EndOfStream:
                return stop_at_end_of_stream
            if message["type"] != "http.request" or not message.get("more_body", False):
                return False
            budget -= len(message.get("body", b""))
    return False


def _expects_continue(headers: Iterable[tuple[bytes, bytes]]) -> bool:
    return any(name.lower() == b"expect" and value.lower() == b"100-continue"
               for name, value in headers)


def _declared_length(headers: Iterable[tuple[bytes, bytes]]) -> int | None:
    for name, value in headers:
        if len(name) == 14 and name.lower() == b"content-length":
            try:
                return int(value)
            except ValueError:
                return None
    return None


_CLOSE = (b"connection", b"close")


async def _answer(send: Send, status: int, body: bytes = b"",
                  content_type: bytes = b"text/plain; charset=utf-8") -> None:
    headers = [(b"content-length", str(len(body)).encode())]
    if body:
        headers.append((b"content-type", content_type))
    if status == 413:
        # Not all of the body may have been read: the connection ends here, and the client
        # is told so rather than sending its next request into a closing connection.
        headers.append(_CLOSE)
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body, "more_body": False})


async def answer_lifespan(receive: Receive, send: Send) -> None:
    """Complete a server's lifespan at once: the host runs the app's own
    (``hostkit/lifespan.py``)."""
    while True:
        message = await receive()
        if message["type"] == "lifespan.startup":
            await send({"type": "lifespan.startup.complete"})
        elif message["type"] == "lifespan.shutdown":
            await send({"type": "lifespan.shutdown.complete"})
            return


class RequestStage:
    """The ASGI app a server plugin serves: the pipeline behind hostkit's per-request duties.

    Built by the host once the app's lifespan has started: ``task_group`` owns the disconnect
    watchers (None: nothing watches, as when a test drives the stage by hand);
    ``lifespan_state`` is copied into every request's scope; ``start_failure`` (None when
    the app started) switches every request to the 500.30 page, whose traceback
    ``show_details`` shows and ``bare_error_pages`` leaves out with the rest of the page;
    ``on_request_limit`` is called when the ``request_limit``-th HTTP request arrives, and
    again after as many more (a worker's ``max_requests``: it asks to be recycled).
    """

    def __init__(self, app: ASGIApp, features: Features, *, max_request_body_size: int,
                 allow_synchronous_io: bool, show_details: bool, bare_error_pages: bool,
                 task_group: TaskGroup | None = None,
                 lifespan_state: dict[str, Any] | None = None,
                 start_failure: AppStartFailure | None = None,
                 request_limit: int | None = None,
                 on_request_limit: Callable[[], None] | None = None):
        self.app = app
        self.features = features
        self.max_request_body_size = max_request_body_size
        self.allow_synchronous_io = allow_synchronous_io
        self.show_details = show_details
        self.bare_error_pages = bare_error_pages
        self.task_group = task_group
        self.lifespan_state = lifespan_state
        self.start_failure = start_failure
        #: Once the host stops: every HTTP/1 response closes its connection
        #: (:meth:`close_connections`).
        self.closing_connections = False
        #: Names, once per cause, an asyncio-only library failing on trio.
        self.backend_hints = BackendHints()
        # Requests until ``on_request_limit`` is called; None: no limit.
        self._request_limit = request_limit
        self._requests_left = request_limit if on_request_limit is not None else None
        self._on_request_limit = on_request_limit

    def close_connections(self) -> None:
        """From now on every HTTP/1 response says ``Connection: close``: called by the host
        when it stops, so a keep-alive client reconnects (to another worker, or finds the
        address closed) instead of sending its next request on a connection being closed."""
        self.closing_connections = True

    def _count_request(self) -> None:
        assert self._requests_left is not None and self._on_request_limit is not None
        self._requests_left -= 1
        if self._requests_left == 0:
            self._requests_left = self._request_limit  # asked again if it is still here then
            self._on_request_limit()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Called by the server for every ASGI connection. An HTTP request runs in this one
        coroutine; the stage's own work is on the path of every request, so it is kept
        inline and the rare paths (failures, 413, lifespan, websockets) are methods."""
        kind = scope["type"]
        if kind == "lifespan":
            await answer_lifespan(receive, send)
            return
        scope["hostkit"] = self.features
        scope["user"] = new_anonymous_principal()
        if self.lifespan_state:
            scope["state"] = self.lifespan_state.copy()
        if kind != "http":
            await self._serve_websocket(scope, receive, send)
            return
        if self._requests_left is not None:
            self._count_request()
        if self.start_failure is not None:
            await self._answer_start_failure(send)
            return
        exchange = _Exchange(self, scope["headers"], receive, send)
        if self.closing_connections and scope.get("http_version") == "2":
            exchange.multiplexed = True
        scope[REQUEST_STATE_KEY] = exchange
        try:
            await self.app(scope, exchange.receive, exchange.send)
        except ClientDisconnected:
            pass
        except RequestBodyTooLargeError:
            if not exchange.response_started:
                await self._answer_unanswered(scope, exchange, receive, send)
        except Exception as error:
            if exchange.body_too_large and not exchange.response_started:
                await self._answer_unanswered(scope, exchange, receive, send)
            elif exchange.disconnected:
                # The app read the client's disconnect and raised its framework's way of
                # saying so (Starlette's ClientDisconnect): the client left, not an error.
                logger.debug("the client left during %s %s (%r)", scope.get("method"),
                             scope.get("path"), error)
            else:
                logger.exception("unhandled exception while serving %s %s",
                                 scope.get("method"), scope.get("path"))
                hint = self.backend_hints.first_hint(error)
                if hint is not None:  # once per cause, not once per request
                    logger.warning("%s", hint)
                if exchange.response_started:
                    # Returned, not raised, so the server does not log it a second time:
                    # an unfinished response still makes it close the connection (no
                    # made-up end of body), and a finished one (a framework's 500) stands.
                    return
                await _answer(send, 500)
        else:
            if not exchange.response_started:
                await self._answer_unanswered(scope, exchange, receive, send)
        finally:
            exchange.finish()

    async def _serve_websocket(self, scope: Scope, receive: Receive, send: Send) -> None:
        """A WebSocket connection: closed (1011) while the app failed to start, else the app."""
        if self.start_failure is not None:
            await send({"type": "websocket.close", "code": 1011})
        else:
            await self.app(scope, receive, send)

    @staticmethod
    async def _answer_unanswered(scope: Scope, exchange: _Exchange, receive: Receive,
                                 send: Send) -> None:
        """The app ended without starting a response: 413 when it stopped at the body limit
        (after a bounded drain of the server's ``receive``), else a logged 500."""
        exchange.finish()
        if exchange.body_too_large:
            await exchange.drain(receive)
            await _answer(send, 413)
        else:
            logger.error("the app returned without a response to %s %s",
                         scope.get("method"), scope.get("path"))
            await _answer(send, 500)

    async def _answer_start_failure(self, send: Send) -> None:
        failure = self.start_failure
        if self.bare_error_pages or failure is None:
            await _answer(send, 500)
            return
        page = error_pages.start_failure_page(failure.detail if self.show_details else None,
                                              failure.title, failure.summary)
        await _answer(send, 500, page, b"text/html; charset=utf-8")


