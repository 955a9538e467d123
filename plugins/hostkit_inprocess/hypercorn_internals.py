"""The parts of hypercorn that are not its public API, all in this one module.

hypercorn's public API is ``Config`` and ``serve()`` (``hypercorn.asyncio`` and
``hypercorn.trio``). ``serve()`` binds its own sockets, runs the app's lifespan and accepts
every connection itself, and gives an app no way to learn the TLS client certificate of its
connection (hypercorn has no ASGI ``tls`` extension). hostkit binds the sockets, runs the
lifespan and accepts the connections itself (``connections.py``), and hands each connection to
what ``serve()`` uses inside:

- hypercorn's ``AppWrapper`` calling convention (``hypercorn.typing.AppWrapper``: ``(scope,
  receive, send, sync_spawn, call_soon)``; ``hypercorn.utils.wrap_app`` makes one of an
  ASGI app, which :class:`_AppTask` does the same way), in which :func:`with_extension`
  adds an ASGI extension to every scope of one connection;
- ``hypercorn.asyncio.tcp_server.TCPServer`` and ``hypercorn.trio.tcp_server.TCPServer``:
  one connection (HTTP/1.1, HTTP/2, WebSockets, keep-alive, graceful close), given the
  wrapped app, the config, the worker context and a lifespan state (empty: the host puts the
  app's lifespan state in each scope);
- ``hypercorn.asyncio.worker_context.WorkerContext`` and its trio twin: what the connections
  of one worker share; its ``terminated`` event, once set, closes idle keep-alive
  connections and the others after their current response;
- ``hypercorn.protocol.ProtocolWrapper`` and ``hypercorn.protocol.h11.H11Protocol``: the
  ``TCPServer`` sets its connection's ``ProtocolWrapper`` as its ``protocol`` before it
  reads a byte (``_read_data``, where :class:`_ServedConnection` prepares it), and the
  wrapper's ``protocol`` is then an ``H11Protocol`` unless ALPN chose HTTP/2. That
  protocol's ``h11.Connection`` (its ``connection``) writes every HTTP/1.1 response head,
  from ``h11.Response`` events hypercorn makes without a reason phrase (ASGI has no field for
  one), so h11 writes ``HTTP/1.1 200 ``. The connections served here write the standard
  phrase instead, as uvicorn, nginx and IIS do (:func:`_write_response`, h11's writer of a
  head, in the connection's ``_writer``). The same ``h11.Connection`` reads the
  connection's requests: :func:`guard_http11` puts hostkit's request guard
  (``request_guard.py``) in its ``_reader`` while a head is awaited. Both are put back
  from the protocol's ``_check_protocol`` (called with every request head, before its
  stream is made; hypercorn's own, the switch to HTTP/2 by ``Upgrade: h2c`` or by the
  preface, runs only for a head with an ``Upgrade`` header or a ``PRI`` method, or never)
  and the connection's ``start_next_cycle``. Of h11 (0.16): the connection's ``_reader``,
  ``_writer``, ``_cstate`` (its ``keep_alive`` and ``pending_switch_proposals``) and
  ``_receive_buffer`` (a ``ReceiveBuffer``, whose ``_data`` is its bytes), and
  ``_writers.write_headers``.
- ``hypercorn.protocol.h2.H2Protocol``, the switch to it and ``hypercorn.events``: the
  wrapper's ``protocol`` is an ``H2Protocol`` from the start under ALPN ``h2``; an
  ``H11Protocol`` raises ``H2ProtocolAssumedError`` (the prior-knowledge preface) or
  ``H2CProtocolRequiredError`` (an ``h2c`` upgrade) from its ``handle``, with the bytes that
  follow (``data``) for the wrapper to give the new ``H2Protocol``. The wrapper's ``handle``
  gets every ``RawData`` event the ``TCPServer`` reads, and its ``send`` (the
  ``TCPServer``'s) writes ``RawData`` and closes on ``Closed``; an ``H2Protocol``'s
  ``connection`` is its ``h2.connection.H2Connection``. :func:`guard_http2` puts a flood guard
  (``http2.py``) between the ``TCPServer`` and every ``H2Protocol`` through them.
- the ``TCPServer``'s ``protocol_send`` (called with every event a protocol sends: the
  ``RawData`` it writes under the ``TCPServer``'s ``send_lock``, to its asyncio ``writer`` or
  trio ``stream``), its ``Updated`` handling (its ``idle_task``), and its read loop
  ``_read_data``: :class:`_ServedConnection` writes through a bounded buffer and ends the
  connection at once when its client has gone (``sending.py``). On asyncio, its
  ``idle_task`` (an object with ``restart(task_group, action)`` and ``stop()``, which its
  ``run``, ``protocol_send`` and ``_close`` await) is an :class:`_IdleTimer`, which closes an
  idle connection with the ``TCPServer``'s ``_initiate_server_close`` in its ``_task_group``
  (whose ``_task_group`` is an ``asyncio.TaskGroup``), as hypercorn's idle task does. An app
  is called in a task of its own (``hypercorn.asyncio.task_group`` and its trio twin), in
  which :class:`_AppTask` marks it as an app's.
- ``H11Protocol._create_stream`` (makes the ``stream`` of each request: a
  ``hypercorn.protocol.ws_stream.WSStream`` for a WebSocket handshake, which has an
  ``Upgrade`` header), and of a ``WSStream``
  its ``handle`` (given the client's bytes as ``Data`` events), ``state``, ``closed``,
  ``connection`` (wsproto's ``Connection``, whose ``events`` and ``_state`` are used),
  ``_send_wsproto_event`` and ``send``: :func:`_watch_websocket` closes a WebSocket with a
  Close frame on a protocol violation, and with 1009 at the header of a frame that takes a
  message past ``websocket_max_message_size``.

Checked against hypercorn 0.17.3 and 0.18.0 (the same signatures and behaviour in both).
"""

from __future__ import annotations

import asyncio
import dataclasses
import functools
import logging
import math
from collections.abc import Awaitable, Callable, Iterator
from typing import TYPE_CHECKING, Any, Protocol

import anyio
import h2.errors
import h2.exceptions
import h11
from h11._receivebuffer import ReceiveBuffer
from h11._writers import write_headers
from hypercorn.asyncio.tcp_server import TCPServer as AsyncioTCPServer
from hypercorn.asyncio.worker_context import WorkerContext as AsyncioWorkerContext
from hypercorn.config import Config
from hypercorn.events import Closed, RawData, Updated
from hypercorn.protocol import ProtocolWrapper
from hypercorn.protocol.events import Data, StreamClosed
from hypercorn.protocol.h2 import H2Protocol
from hypercorn.protocol.h11 import H2CProtocolRequiredError, H2ProtocolAssumedError, H11Protocol
from hypercorn.protocol.ws_stream import ASGIWebsocketState, WSStream
from hypercorn.typing import AppWrapper
from wsproto.connection import Connection as WSConnection
from wsproto.connection import ConnectionState as WSState
from wsproto.events import CloseConnection
from wsproto.events import Event as WSEvent
from wsproto.frame_protocol import CloseReason

from hostkit.plugin import STANDARD_STATUS_LINES, ASGIApp

from hostkit_inprocess.request_guard import Guard
from hostkit_inprocess.sending import IN_APP, ClientGone, client_gone, write_bounded
from hostkit_inprocess.websocket_frames import MessageLengths

if TYPE_CHECKING:
    from hypercorn.trio.tcp_server import TCPServer as TrioTCPServer
    from hypercorn.trio.worker_context import WorkerContext as TrioWorkerContext

__all__ = ["AppWrapper", "Http2Guard", "asgi_app_wrapper", "asyncio_worker_context",
           "guard_http11", "guard_http2",
           "serve_asyncio_connection",
           "serve_trio_connection", "terminate", "trio_worker_context", "with_extension"]


def asgi_app_wrapper(app: ASGIApp, config: Config) -> AppWrapper:
    """``app`` in hypercorn's calling convention, as ``serve()`` wraps an ASGI app
    (``hypercorn.utils.wrap_app``), called in an app's task (:class:`_AppTask`)."""
    return _AppTask(app)


class _AppTask:
    """hypercorn's app: marks the task it runs in as an app's (``sending.IN_APP``: a send
    there raises ``ClientGone`` once the client has left), and ends quietly when the app lets
    that ``ClientGone`` escape (a WebSocket app: the request stage catches it for HTTP).

    It calls the ASGI app itself, as hypercorn's ``ASGIWrapper`` (``wrap_app``'s for an
    ASGI app) does: one coroutine less on every request."""

    __slots__ = ("app",)

    def __init__(self, app: ASGIApp):
        self.app = app

    async def __call__(self, scope: Any, receive: Any, send: Any, sync_spawn: Any,
                       call_soon: Any) -> None:
        # hypercorn runs each app call in a task (and context) of its own; what it sends
        # after the app returned (its own 500 for an unanswered request) is not the app's.
        marked = IN_APP.set(True)
        try:
            await self.app(scope, receive, send)
        except ClientGone:
            pass
        finally:
            IN_APP.reset(marked)


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


class _AsyncioContext(AsyncioWorkerContext):
    """hypercorn's asyncio worker context, which also knows the idle timers armed
    (:class:`_IdleTimer`), so that :func:`terminate` closes those connections at once, as
    hypercorn's idle tasks do when ``terminated`` is set."""

    def __init__(self) -> None:
        super().__init__(None)
        self.idle_timers: set[_IdleTimer] = set()


def asyncio_worker_context() -> AsyncioWorkerContext:
    """What the connections of one asyncio worker share (see :func:`terminate`)."""
    return _AsyncioContext()


def trio_worker_context() -> TrioWorkerContext:
    """What the connections of one trio worker share (see :func:`terminate`); hypercorn's
    trio modules are imported here, so an asyncio host does not load trio."""
    from hypercorn.trio.worker_context import WorkerContext as TrioWorkerContext

    return TrioWorkerContext(None)


def _write_response(response: h11.Response | h11.InformationalResponse,
                    write: Callable[[bytes], Any]) -> None:
    """h11's writer of a response head (``_writers.write_any_response``, which it calls from
    the connection's ``_writer`` while a response is due), writing the standard reason
    phrase into the status line of a response without one (an unknown status keeps none).

    hypercorn makes its ``h11.Response`` events without a phrase (ASGI has no field for
    one), which h11 writes as ``HTTP/1.1 200 ``; the connections served here write the
    standard phrase instead, as uvicorn, nginx and IIS do."""
    if response.http_version != b"1.1":
        raise h11.LocalProtocolError("I only send HTTP/1.1")
    reason = response.reason
    line = None if reason else STANDARD_STATUS_LINES.get(response.status_code)
    if line is None:
        line = b"HTTP/1.1 %s %s\r\n" % (str(response.status_code).encode("ascii"), reason)
    write(line)
    write_headers(response.headers, write)


#: The attribute of hypercorn's ``Config`` under which :func:`guard_http11` keeps its guard.
_GUARD = "hostkit_http11_guard"


@dataclasses.dataclass(frozen=True)
class _Http11Guard:
    """What :func:`guard_http11` was given."""

    new_guard: Callable[[h11.Connection], Guard]
    http2: bool


def guard_http11(config: Config, new_guard: Callable[[h11.Connection], Guard], *,
                 http2: bool) -> None:
    """Make every HTTP/1.1 connection served here with ``config`` read its requests through
    ``new_guard(connection)`` (``request_guard.py``), made with its ``h11.Connection`` (the
    parser of its requests, hypercorn's ``H11Protocol.connection``) before its first byte is
    received: h11 reads each request head with the guard's ``read_head`` (in the
    connection's ``_reader`` whenever a head is awaited), and the guard's ``admitted`` is
    called once h11 has taken it, before hypercorn looks at it.

    Without ``http2``, no request switches a connection to HTTP/2: hypercorn's
    ``H11Protocol._check_protocol``, which answers ``Upgrade: h2c`` with 101 and takes
    ``PRI * HTTP/2.0`` as the HTTP/2 preface, is skipped (an ``Upgrade: h2c`` request is
    then served as HTTP/1.1, as RFC 9110 §7.8 allows)."""
    setattr(config, _GUARD, _Http11Guard(new_guard, http2))


def _prepare_http11(protocol: H11Protocol, guard: _Http11Guard | None,
                    websocket_limit: int) -> None:
    """Before a new HTTP/1.1 connection's first byte is read: make its ``h11.Connection``
    write the standard reason phrases (:func:`_write_response`, in its ``_writer`` whenever
    a response head is due) and read its heads through ``guard`` (:func:`guard_http11`), and
    make its WebSockets watched (:func:`_watch_websocket`, ``websocket_limit`` bytes a
    message).

    All of it is done from two of hypercorn's calls: the ``h11.Connection``'s
    ``start_next_cycle`` (h11 puts its own reader and writer back there), and the
    protocol's ``_check_protocol``, which hypercorn calls with every request head h11
    returns, before the stream that serves it is made. That one runs hypercorn's own
    (a switch to HTTP/2) only for a head that could ask for one: a ``PRI`` request, or one
    with an ``Upgrade`` header (h11 notes it as a switch proposal), which alone can also be
    a WebSocket's; for it, the next stream made (``_create_stream``) is watched."""
    connection = protocol.connection
    assert isinstance(connection, h11.Connection)
    read_head: Callable[[ReceiveBuffer], h11.Request | None] | None = None
    admitted: Callable[[], None] | None = None
    if guard is not None:
        rules = guard.new_guard(connection)
        read_head, admitted = rules.read_head, rules.admitted
        connection._reader = read_head
    switches = guard is None or guard.http2
    connection._writer = _write_response
    next_cycle = connection.start_next_cycle
    check_protocol = protocol._check_protocol
    create_stream = protocol._create_stream
    state = connection._cstate

    def start_next_cycle() -> None:
        next_cycle()
        connection._writer = _write_response
        if read_head is not None:
            connection._reader = read_head

    async def head_taken(event: h11.Request) -> None:
        connection._writer = _write_response  # h11 put its own back as the head came in
        if admitted is not None:
            admitted()
        if state.pending_switch_proposals or event.method == b"PRI":
            if switches:
                await check_protocol(event)
            protocol._create_stream = create_watched_stream  # type: ignore[method-assign]

    async def create_watched_stream(request: h11.Request) -> None:
        del protocol._create_stream  # the class's own for the next requests
        await create_stream(request)
        if isinstance(protocol.stream, WSStream):
            _watch_websocket(protocol.stream, websocket_limit)

    connection.start_next_cycle = start_next_cycle  # type: ignore[method-assign]
    protocol._check_protocol = head_taken  # type: ignore[method-assign]


class Http2Guard(Protocol):
    """The flood guard of one connection (``http2.FloodGuard``), as :func:`guard_http2` uses
    it."""

    def start(self) -> None:
        """The connection speaks HTTP/2 from its next byte, the client's preface."""

    def admit(self, data: bytes) -> bool:
        """Whether ``data`` from the client may go to ``h2`` (False: GOAWAY and close)."""


#: The attribute of hypercorn's ``Config`` under which :func:`guard_http2` keeps its factory.
_HTTP2_GUARD = "hostkit_http2_guard"


def guard_http2(config: Config, new_guard: Callable[[tuple[str, int] | None], Http2Guard]
                ) -> None:
    """Give every connection served here with ``config`` a flood guard, ``new_guard(client)``,
    through which every byte its client sends passes on its way to ``h2`` once the connection
    speaks HTTP/2 (ALPN, the prior-knowledge preface or an ``h2c`` upgrade). When the guard
    refuses bytes, they never reach ``h2``: the connection gets GOAWAY with
    ``ENHANCE_YOUR_CALM`` and is closed, and what the client sends after is dropped."""
    setattr(config, _HTTP2_GUARD, new_guard)


def _prepare_http2(wrapper: ProtocolWrapper,
                   new_guard: Callable[[tuple[str, int] | None], Http2Guard] | None) -> None:
    """Put ``new_guard``'s guard between a new connection's ``TCPServer`` and its protocol
    (:func:`guard_http2`); called before the connection's first byte is read."""
    if new_guard is None:
        return
    guard = new_guard(wrapper.client)
    # Until the guard starts, it admits every byte (Http2Guard): while the connection speaks
    # HTTP/1.1, its reads skip the guard and go straight to the H11Protocol, which raises
    # the switch to HTTP/2 here; hypercorn's own handle (``handle``) makes the switch then.
    started = isinstance(wrapper.protocol, H2Protocol)
    if started:
        guard.start()
    handle = wrapper.handle
    refused = False

    async def guarded_handle(event: Any) -> None:
        nonlocal refused, started
        kind = type(event)
        if not started:
            protocol = wrapper.protocol
            switch: H2ProtocolAssumedError | H2CProtocolRequiredError | None = None
            try:
                await protocol.handle(event)
            except (H2ProtocolAssumedError, H2CProtocolRequiredError) as error:
                switch = error
            if switch is not None:
                guard.start()
                started = True
                if not guard.admit(switch.data):
                    switch.data = b""  # the new H2Protocol gets none of it
                wrapper.protocol = _Switching(switch)  # type: ignore[assignment]
                try:
                    await handle(event)
                finally:
                    if wrapper.protocol.__class__ is _Switching:
                        wrapper.protocol = protocol
            admitted = not started or kind is not RawData or guard.admit(b"")
        elif kind is RawData and not guard.admit(event.data):
            admitted = False
        else:
            await handle(event)
            admitted = kind is not RawData or guard.admit(b"")
        if kind is Closed:
            await _release_streams(wrapper)
        if not admitted and not refused:
            refused = True
            await _refuse_http2(wrapper)

    wrapper.handle = guarded_handle  # type: ignore[method-assign]


class _Switching:
    """Stands for an ``H11Protocol`` that raised its switch to HTTP/2 (``error``) while
    hypercorn's ``ProtocolWrapper.handle`` is called to make the switch: it raises it again."""

    __slots__ = ("error",)

    def __init__(self, error: Exception):
        self.error = error

    async def handle(self, event: Any) -> None:
        raise self.error


async def _release_streams(wrapper: ProtocolWrapper) -> None:
    """Once an HTTP/2 connection has closed: wake every stream still waiting to hand its
    response to the connection. ``H2Protocol`` keeps a ``StreamBuffer`` per stream, which
    its sending task empties; a closed connection's sending task has ended, so a stream that
    was waiting on its buffer (``push`` past the high-water mark, ``drain`` at the end of the
    body) would wait for ever, and with it the connection's task group: the socket stays
    open (CLOSE-WAIT) until the server stops. Closing the buffers ends those waits."""
    protocol = wrapper.protocol
    if isinstance(protocol, H2Protocol):
        for buffer in list(protocol.stream_buffers.values()):
            await buffer.close()


async def _refuse_http2(wrapper: ProtocolWrapper) -> None:
    """Send GOAWAY ENHANCE_YOUR_CALM on an HTTP/2 connection and close it."""
    protocol = wrapper.protocol
    if isinstance(protocol, H2Protocol):
        try:
            protocol.connection.close_connection(error_code=h2.errors.ErrorCodes.ENHANCE_YOUR_CALM)
        except h2.exceptions.ProtocolError:
            pass  # h2 has closed the connection already
        data = protocol.connection.data_to_send()
        if data:
            await wrapper.send(RawData(data=data))
    await wrapper.send(Closed())


def _watch_websocket(stream: WSStream, limit: int) -> None:
    """Watch what the client of an accepted WebSocket sends, on its way to wsproto.

    On a protocol violation (an unmasked frame, a reserved opcode or bits, invalid UTF-8 in
    a text message...) wsproto's ``Connection.events()`` yields a ``CloseConnection`` with
    the code (1002, 1007) but stays ``OPEN``, and hypercorn's ``WSStream`` then closes the
    connection without a Close frame (it answers a close only in ``REMOTE_CLOSING``). Here
    the connection is put in ``REMOTE_CLOSING`` (wsproto's ``_state``) when that happens, so
    hypercorn answers with a Close frame of that code before it closes.

    A frame header that takes its message past ``limit`` bytes
    (``websocket_frames.MessageLengths``) is refused at once: the bytes before it are
    parsed, then a Close frame with 1009, and the stream closes, without the payload."""
    lengths = MessageLengths(limit)
    handle = stream.handle
    watching = False

    async def handle_watched(event: Any) -> None:
        nonlocal watching
        if type(event) is Data and stream.state is ASGIWebsocketState.CONNECTED:
            if not watching:
                watching = True
                _close_on_violations(stream.connection)
            over = lengths.feed(event.data)
            if over is not None:
                if over:
                    await handle(Data(stream_id=event.stream_id, data=event.data[:over]))
                if not stream.closed:
                    await stream._send_wsproto_event(
                        CloseConnection(code=CloseReason.MESSAGE_TOO_BIG))
                    await stream.send(StreamClosed(stream_id=stream.stream_id))
                return
        await handle(event)

    stream.handle = handle_watched  # type: ignore[method-assign]


def _close_on_violations(connection: WSConnection) -> None:
    """Make the ``CloseConnection`` wsproto yields for a protocol violation put ``connection``
    in ``REMOTE_CLOSING`` (:func:`_watch_websocket`)."""
    events = connection.events

    def events_closing_on_violations() -> Iterator[WSEvent]:
        for event in events():
            if type(event) is CloseConnection and connection.state is WSState.OPEN:
                connection._state = WSState.REMOTE_CLOSING
            yield event

    connection.events = events_closing_on_violations  # type: ignore[method-assign,assignment]


class _ServedConnection:
    """hypercorn's ``TCPServer`` (asyncio or trio) of one connection, as hostkit serves it.

    ``TCPServer.run`` sets the connection's ``protocol`` (a ``ProtocolWrapper``) and calls
    ``_read_data`` before it reads a byte; there the connection's HTTP/1.1 protocol is
    prepared (:func:`_prepare_http11`: reason phrases, its config's guard, watched
    WebSockets) and the flood guard put in front of HTTP/2 (:func:`_prepare_http2`).

    It also ends at once when its client has gone (``sending.py``). hypercorn's own goes on:
    its ``protocol_send`` tells the protocol ``Closed`` and returns, so the app's next sends
    "succeed" (on asyncio each logging ``socket.send() raised exception`` and re-raising the
    reader's error, whose traceback pins every chunk), the response "ends", and the next
    pipelined request is served into the void. Here ``protocol_send`` writes ``RawData``
    through ``_write`` (asyncio: a bounded buffer, ``sending.write_bounded``) under the
    ``TCPServer``'s ``send_lock``; the first write that finds the client gone stops
    ``_read_data`` (the ``TCPServer``'s read loop, which waits on the protocol while a
    request is answered and so never sees the client leave), tells the protocol ``Closed``
    (its streams close; the apps get ``http.disconnect``), and every write from then on is
    refused (``sending.client_gone``). ``Updated`` is handled as hypercorn does; other
    events go to hypercorn's ``protocol_send``."""

    departed = False
    _reading: anyio.CancelScope | None = None
    protocol: ProtocolWrapper
    config: Config
    send_lock: Any
    idle_task: Any
    _task_group: Any
    _idle_timeout: Any

    def _write(self, data: bytes) -> Awaitable[bool]:
        """Write ``data``; False when the client has gone."""
        raise NotImplementedError

    async def protocol_send(self, event: Any) -> None:
        """hypercorn's ``protocol_send``, called with every event a protocol sends."""
        kind = type(event)
        if kind is RawData:
            async with self.send_lock:
                if not self.departed and await self._write(event.data):
                    return
                leaving = not self.departed
                self.departed = True
            if leaving:
                if self._reading is not None:
                    self._reading.cancel()
                await self.protocol.handle(Closed())
            client_gone()
        elif kind is Updated:  # as hypercorn's own (the same on asyncio and trio)
            if event.idle:
                await self.idle_task.restart(self._task_group, self._idle_timeout)
            else:
                await self.idle_task.stop()
        else:
            await super().protocol_send(event)  # type: ignore[misc]

    async def _read_data(self) -> None:
        wrapper = self.protocol
        config = self.config
        protocol = wrapper.protocol
        if isinstance(protocol, H11Protocol) and isinstance(protocol.connection, h11.Connection):
            _prepare_http11(protocol, getattr(config, _GUARD, None),
                            config.websocket_max_message_size)
        _prepare_http2(wrapper, getattr(config, _HTTP2_GUARD, None))
        self._reading = reading = anyio.CancelScope()
        if self.departed:
            reading.cancel()
        try:
            with reading:
                await super()._read_data()  # type: ignore[misc]
        finally:
            # Nothing more is read, so nothing is waited for: the connection closes once its
            # last response is written (hypercorn's idle task kept its task group open, and
            # the socket in CLOSE_WAIT, until the keep-alive timeout).
            self.idle_task.end()
        if reading.cancelled_caught:
            await self.protocol.handle(Closed())


class _AsyncioTCPServer(_ServedConnection, AsyncioTCPServer):
    """One asyncio connection (:class:`_ServedConnection`), writing through a bounded buffer
    (``sending.write_bounded``), its idle time kept by an :class:`_IdleTimer`."""

    context: _AsyncioContext

    def __init__(self, *args: Any) -> None:
        super().__init__(*args)
        self._write = functools.partial(write_bounded, self.writer)  # type: ignore[method-assign]
        self.idle_task = _IdleTimer(self)


class _IdleTimer:
    """The idle task of one asyncio connection, as a timer: what the ``TCPServer`` awaits
    ``restart`` (as it starts, and as each response ends) and ``stop`` of (as each request
    starts, and as it closes).

    hypercorn's (``AsyncioSingleTask``) runs a task per idle time, which waits for the
    keep-alive timeout or the worker context's ``terminated``; each ``restart`` or ``stop``
    cancels the last one and waits for it to end: two tasks and several turns of the loop
    per request. This arms a ``loop.call_later`` instead; when it fires, or when the context
    terminates while it is armed (:func:`terminate`), the connection closes as hypercorn's
    does (its ``_initiate_server_close``, in the connection's task group)."""

    __slots__ = ("_server", "_handle", "_ended")

    def __init__(self, server: _AsyncioTCPServer):
        self._server = server
        self._handle: asyncio.TimerHandle | None = None
        self._ended = False

    async def restart(self, task_group: Any, action: Any) -> None:
        """The connection is idle: close it after the keep-alive timeout, or now when its
        worker is terminating (``action``, hypercorn's idle task, is not needed)."""
        self._disarm()
        server = self._server
        if self._ended:
            return
        if server.context.terminated.is_set():
            self.expire()
            return
        self._handle = server.loop.call_later(server.config.keep_alive_timeout, self.expire)
        server.context.idle_timers.add(self)

    async def stop(self) -> None:
        """The connection is busy, or closing: no idle timeout."""
        self._disarm()

    def end(self) -> None:
        """The connection's read loop has ended: no idle timeout from now on."""
        self._ended = True
        self._disarm()

    def expire(self) -> None:
        """The idle time is over: start the connection's close (unless its task group is
        ending already, after an error: then the connection closes with it)."""
        self._disarm()
        server = self._server
        close = server._initiate_server_close()
        try:
            server._task_group._task_group.create_task(close)
        except RuntimeError:
            close.close()

    def _disarm(self) -> None:
        if self._handle is not None:
            self._handle.cancel()
            self._handle = None
            self._server.context.idle_timers.discard(self)


@functools.cache
def _trio_tcp_server() -> type[TrioTCPServer]:
    """The class of one trio connection (:class:`_ServedConnection`), made on first use: an
    asyncio host does not load trio."""
    from hypercorn.trio.tcp_server import TCPServer as TrioTCPServer

    import trio

    class _TrioTCPServer(_ServedConnection, TrioTCPServer):
        def __init__(self, *args: Any) -> None:
            super().__init__(*args)
            self.idle_task = _TrioIdleWatch(self)

        async def _write(self, data: bytes) -> bool:
            try:
                # Shielded, as hypercorn's: a cancelled app does not cut a frame short.
                with trio.CancelScope(shield=True):
                    await self.stream.send_all(data)
            except (trio.BrokenResourceError, trio.ClosedResourceError):
                return False
            return True

    class _TrioIdleWatch:
        """The idle task of one trio connection: one task for the connection's life, in its
        task group, waiting in a cancel scope whose deadline ``restart`` and ``stop`` move.

        hypercorn's (``TrioSingleTask``) starts a task per idle time (``nursery.start``),
        which waits for the keep-alive timeout or the worker context's ``terminated``, and
        cancels it as the next request starts. Here the deadline passing while the
        connection is idle, or ``terminated`` while it is idle (or at the end of the response
        in flight), closes the connection as hypercorn's does (its
        ``_initiate_server_close``, shielded)."""

        __slots__ = ("_server", "_scope", "_deadline", "_idle", "_ended", "_started")

        def __init__(self, server: _TrioTCPServer):
            self._server = server
            self._scope: trio.CancelScope | None = None
            self._deadline = math.inf
            self._idle = False
            self._ended = False
            self._started = False

        async def restart(self, task_group: Any, action: Any) -> None:
            """The connection is idle: close it after the keep-alive timeout, or now when
            its worker is terminating (``action``, hypercorn's idle task, is not needed)."""
            if self._ended:
                return
            server = self._server
            self._idle = True
            self._move(-math.inf if server.context.terminated.is_set() else
                       trio.current_time() + server.config.keep_alive_timeout)
            if not self._started:
                self._started = True
                await task_group._nursery.start(self._watch)

        async def stop(self) -> None:
            """The connection is busy: no idle timeout."""
            self._idle = False
            self._move(math.inf)

        def end(self) -> None:
            """The connection's read loop has ended: the watch ends, closing nothing."""
            self._ended = True
            if self._scope is not None:
                self._scope.cancel()

        def _move(self, deadline: float) -> None:
            self._deadline = deadline
            if self._scope is not None:
                self._scope.deadline = deadline

        async def _watch(self, *, task_status: Any) -> None:
            task_status.started()
            terminated = self._server.context.terminated
            while not self._ended:
                with trio.CancelScope(deadline=self._deadline) as self._scope:
                    await terminated.wait()
                    if not self._idle:  # busy: its ``restart`` sets a past deadline
                        await trio.sleep_forever()
                # A request may have started between the deadline and this task's turn.
                if self._idle and not self._ended:
                    with trio.CancelScope(shield=True):
                        await self._server._initiate_server_close()
                    return

    return _TrioTCPServer


async def serve_asyncio_connection(app: AppWrapper, config: Config,
                                   context: AsyncioWorkerContext,
                                   reader: asyncio.StreamReader,
                                   writer: asyncio.StreamWriter) -> None:
    """Serve one accepted asyncio connection until it closes (an error hypercorn lets
    escape ends this connection only: :func:`_connection_failed`)."""
    try:
        await _AsyncioTCPServer(app, asyncio.get_running_loop(), config, context, {}, reader,
                                writer)
    except Exception:
        _connection_failed()


async def serve_trio_connection(app: AppWrapper, config: Config, context: TrioWorkerContext,
                                stream: Any) -> None:
    """Serve one accepted trio stream (a ``trio.SocketStream`` or ``trio.SSLStream``) until
    it closes. hypercorn's trio ``TCPServer`` begins with the TLS handshake, which returns at
    once when the caller has done it already. An error hypercorn lets escape ends this
    connection only (:func:`_connection_failed`): on trio it would end the server."""
    try:
        await _trio_tcp_server()(app, config, context, {}, stream)
    except Exception:
        _connection_failed()


def _connection_failed() -> None:
    """Log the error that ended a connection inside hypercorn. hypercorn lets some escape: a
    WebSocket handshake followed by bytes that are not WebSocket frames has its 400 written
    through an ``h11.Connection`` already in ``ERROR`` (``h11.LocalProtocolError``)."""
    logging.getLogger("hypercorn.error").exception("a connection ended with an error")


async def terminate(context: AsyncioWorkerContext | TrioWorkerContext) -> None:
    """Tell every connection of a worker that it stops: idle keep-alive connections close,
    the others after their current response."""
    await context.terminated.set()
    if isinstance(context, _AsyncioContext):
        for timer in list(context.idle_timers):
            timer.expire()
