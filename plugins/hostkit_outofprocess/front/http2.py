"""HTTP/2 at the front: one client connection's ``h2`` state machine, and its streams.

A connection speaks HTTP/2 when TLS chose ``h2`` by ALPN, or when its first bytes are the
client preface (cleartext prior knowledge: :class:`~.connection.ClientConnection` sees the
preface's ``PRI * HTTP/2.0`` head and hands the connection over). :class:`Http2Connection`
feeds every byte the client sends to a :class:`hostkit.plugin.FrameWatch` and then to ``h2``;
each request stream is one task inside the connection's task group, forwarded to a child as
an HTTP/1.1 request by an :class:`Http2Exchange`, the HTTP/1.1 :class:`~.exchange.Exchange`
with its client side (the request body, the response) made of HTTP/2 frames. So every rule
of the gateway and of the module applies as it does to HTTP/1.1: the request rules
(:mod:`hostkit.request_rules`, on the HTTP/1.1 request the stream becomes), the header rules,
forwarded identity, the token, request ids, health paths, the limit, the access log, metrics.

The translation (RFC 9113 §8.3): ``:authority`` becomes ``Host`` (a ``host`` header that
disagrees is refused), ``:path`` the target, which must be origin-form (or ``*`` for
OPTIONS); a body without ``content-length`` is sent chunked. What HTTP/2 forbids
(connection-specific headers, ``te`` other than ``trailers``, pseudo-header misuse, upper
case names, CR/LF/NUL, a ``content-length`` that disagrees with the DATA) is refused by
``h2`` (``validate_inbound_headers``: the connection ends with GOAWAY ``PROTOCOL_ERROR``)
or here (a 400 on the stream), and never forwarded. The child is told the client's version
(``hostkit-http-version: 2``).

Back-pressure is HTTP/2's flow control: a request body's DATA is acknowledged (so the
client may send more) only once it was handed to the child; a response's DATA is sent only
within the client's window, waiting on its WINDOW_UPDATE. Writes of all streams go through
one lock, so the bytes ``h2`` produced go out in order; a client that stops reading stops
the writers, and the reader too (it waits for its own flush), so what the front holds for
it is bounded by the windows.

Streams beyond ``[server] http2_max_concurrent_streams`` are refused with REFUSED_STREAM
(also before the client acknowledged the SETTINGS that announce the limit; after it, ``h2``
ends the connection with PROTOCOL_ERROR). A flood (:class:`hostkit.plugin.FrameWatch`) gets
GOAWAY ``ENHANCE_YOUR_CALM`` and the connection closes.
"""

from __future__ import annotations

import collections
import logging
import math
import time
from typing import TYPE_CHECKING

import anyio
import h2.config
import h2.connection
import h2.errors
import h2.events
import h2.exceptions
import h2.settings
import h11
from hpack import NeverIndexedHeaderTuple

from hostkit.plugin import HTTP_VERSION_HEADER, REQUEST_ID_HEADER, FloodLimits, FrameWatch, Gateway

from hostkit_outofprocess.front import header_rules, records
from hostkit_outofprocess.front.client_input import STREAM_ERRORS, ClientGone
from hostkit_outofprocess.front.deadlines import BodyPace, Wait
from hostkit_outofprocess.front.exchange import Aborted, BodyTimeout, Exchange
from hostkit_outofprocess.front.identity import ConnectionIdentity
from hostkit_outofprocess.front.pages import ErrorPages
from hostkit_outofprocess.front.serving import ServedConnection
from hostkit_outofprocess.front.streams import READ_SIZE, Stream
from hostkit_outofprocess.front.upstream import ChildConnection, ChildError, ChildResponse, Upstream
from hostkit_outofprocess.front.wire import request_head

if TYPE_CHECKING:
    from collections.abc import Callable, Sequence

    from anyio.abc import TaskGroup

logger = logging.getLogger("hostkit.module")

#: The client connection preface (RFC 9113 §3.4), and its first part, which h11 reads as the
#: head of a ``PRI * HTTP/2.0`` request.
PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"
PREFACE_HEAD = b"PRI * HTTP/2.0\r\n\r\n"
#: What the child is told of the client's version (``hostkit-http-version``).
VERSION_HEADER = (HTTP_VERSION_HEADER, b"2")

# The connection's receive window (every stream's together); a stream's is h2's default,
# 65,535 bytes. Both bound what the front holds of request bodies for one connection.
_CONNECTION_WINDOW = 1 << 20
# The last bytes to a client whose connection ends (a GOAWAY) get at most this long, and
# at most this much of what it still sends is read and dropped meanwhile.
_LAST_WRITE = 1.0
_LINGER_BYTES = 64 * 1024
_TEXT = b"text/plain; charset=utf-8"
_WAIT_HEAD = Wait.NEXT_HEAD
_CONNECTION_SPECIFIC = frozenset({b"connection", b"keep-alive", b"proxy-connection",
                                  b"transfer-encoding", b"upgrade"})


class _FloodLog:
    """The one line a flood is logged with, at most once a second for each reason (a client
    that floods from one connection after another would flood the log as well); the line
    says how many were left out since."""

    __slots__ = ("_last", "_left_out")

    def __init__(self) -> None:
        self._last: dict[str, float] = {}
        self._left_out: dict[str, int] = {}

    def write(self, why: str, client_ip: str | None, frames: int) -> None:
        now = time.monotonic()
        if now - self._last.get(why, -math.inf) < 1.0:
            self._left_out[why] = self._left_out.get(why, 0) + 1
            return
        self._last[why] = now
        left_out = self._left_out.pop(why, 0)
        logger.warning("HTTP/2 client %s: %s; closing its connection (GOAWAY "
                       "ENHANCE_YOUR_CALM) after %d frames%s", client_ip, why, frames,
                       f" ({left_out} more such connections in the last second)"
                       if left_out else "")


_FLOOD_LOG = _FloodLog()


class _Refused(Exception):
    """A request stream the front refuses before it becomes an HTTP/1.1 request."""

    def __init__(self, status: int, reason: str):
        super().__init__(reason)
        self.status = status


class Http2Connection(ServedConnection):
    """Serves one client connection that speaks HTTP/2, until it closes, times out, floods
    or the front stops (see the module docstring).

    ``received`` are bytes already read from the client, the preface's included (for a
    connection handed over by :class:`~.connection.ClientConnection`); ``limits`` the
    ``[server]`` HTTP/2 settings.
    """

    def __init__(self, stream: Stream, upstream: Upstream, pages: ErrorPages, *,
                 identity: ConnectionIdentity, gateway: Gateway, head_timeout: float,
                 stopping: anyio.Event, limits: FloodLimits, received: bytes = b""):
        super().__init__(stream, upstream, pages, identity=identity, gateway=gateway,
                         head_timeout=head_timeout, stopping=stopping)
        self.limits = limits
        self.watch = FrameWatch(limits)
        self.h2 = h2.connection.H2Connection(h2.config.H2Configuration(
            client_side=False, header_encoding=None, validate_inbound_headers=True,
            normalize_inbound_headers=True, validate_outbound_headers=True,
            normalize_outbound_headers=True))
        self._received = received
        #: the connection ends for a flood or a protocol error (GOAWAY, then a lingering
        #: close).
        self._refused = False
        #: the streams whose exchanges run, by id.
        self.streams: dict[int, _Stream] = {}
        self._write_lock = anyio.Lock()
        #: cancelled to stop reading: the connection ends (idle, past its deadline, stopping).
        self._reading = anyio.CancelScope()
        #: set once the last stream ended after the front began stopping.
        self._drained: anyio.Event | None = None
        #: when the connection, without a stream, is closed (``time.monotonic``), checked by
        #: the heartbeat; from accept for the first request.
        self.deadline = stream.opened_at + head_timeout
        #: the connection's task group, where each stream's task runs (once it serves).
        self._task_group: TaskGroup | None = None

    # -- what the server asks of every connection --------------------------------------------

    def check_deadline(self, now: float) -> None:
        """Called by the server's heartbeat: a connection idle past its deadline closes, a
        stream whose child did not answer within ``request_timeout`` gets 504."""
        if now >= self.deadline:
            self._reading.cancel()
        for stream in list(self.streams.values()):
            if now >= stream.deadline:
                stream.deadline_passed = True
                stream.cancel_scope.cancel()

    def close_if_idle(self) -> None:
        """Called when the front stops: a connection without streams closes now, one with
        streams once they are done (new ones are refused meanwhile)."""
        if not self.streams:
            self._reading.cancel()
        else:
            self._drained = anyio.Event()

    # -- serving -------------------------------------------------------------------------------

    async def serve(self) -> None:
        """Serve streams until the connection ends; then close it."""
        h2_connection = self.h2
        h2_connection.local_settings = h2.settings.Settings(client=False, initial_values={
            h2.settings.SettingCodes.MAX_CONCURRENT_STREAMS: self.limits.max_concurrent_streams,
            h2.settings.SettingCodes.MAX_HEADER_LIST_SIZE: self.limits.max_header_list_size,
        })
        h2_connection.initiate_connection()
        h2_connection.increment_flow_control_window(_CONNECTION_WINDOW - 65535)
        try:
            async with anyio.create_task_group() as task_group:
                self._task_group = task_group
                try:
                    await self.flush()
                    with self._reading:
                        await self._read()
                    if self._drained is not None and self.streams:
                        await self._drained.wait()
                except ClientGone:
                    pass
                finally:
                    task_group.cancel_scope.cancel()
            if not self._refused:  # (else a GOAWAY with the reason went out already)
                try:
                    h2_connection.close_connection(
                        last_stream_id=h2_connection.highest_inbound_stream_id)
                except h2.exceptions.ProtocolError:
                    pass  # already closed (a GOAWAY went out, or came in)
            with anyio.CancelScope(shield=True) as last:
                last.deadline = anyio.current_time() + _LAST_WRITE
                try:
                    await self.flush()
                    if self._refused:
                        await self._linger()
                except ClientGone:
                    pass
        finally:
            with anyio.CancelScope(shield=True):
                await self.stream.aclose()

    async def flush(self) -> None:
        """Write what ``h2`` has to send (in order, one writer at a time); :class:`ClientGone`
        if the client cannot be written to."""
        async with self._write_lock:
            data = self.h2.data_to_send()
            if data:
                try:
                    await self.stream.send(data)
                except STREAM_ERRORS:
                    raise ClientGone() from None

    async def _linger(self) -> None:
        """After a GOAWAY for a flood or a protocol error: end the front's side and read
        (and drop) what the client still sends until it closes, as nginx's lingering close
        does, so the GOAWAY is read rather than lost to a reset (a socket closed with unread
        bytes sends RST). Bounded by the caller's deadline and :data:`_LINGER_BYTES`."""
        self.stream.close_write()
        dropped = 0
        while dropped < _LINGER_BYTES:
            try:
                dropped += len(await self.stream.receive(READ_SIZE))
            except STREAM_ERRORS:
                return

    async def _read(self) -> None:
        """Read the client's frames and act on them until the connection should end."""
        data, self._received = self._received, b""
        h2_connection, watch = self.h2, self.watch
        while True:
            if not data:
                try:
                    data = await self.stream.receive(READ_SIZE)
                except STREAM_ERRORS:
                    return
            why = watch.feed(data)
            if why is not None:
                _FLOOD_LOG.write(why, self.identity.client_ip, watch.frames)
                h2_connection.close_connection(h2.errors.ErrorCodes.ENHANCE_YOUR_CALM,
                                               last_stream_id=watch.last_stream_id)
                self._refused = True
                await self.flush()  # the GOAWAY goes out before the streams are cancelled
                return
            try:
                events = h2_connection.receive_data(data)
            except h2.exceptions.ProtocolError as error:
                # h2 has queued its GOAWAY (PROTOCOL_ERROR, or ENHANCE_YOUR_CALM for an
                # oversized header list).
                logger.debug("HTTP/2 client %s: %s", self.identity.client_ip, error)
                self._refused = True
                await self.flush()
                return
            data = b""
            for event in events:
                if not self._handle(event):
                    return
            await self.flush()

    def _handle(self, event: h2.events.Event) -> bool:
        """Act on one of ``h2``'s events; False when the connection ends."""
        if isinstance(event, h2.events.DataReceived):
            stream = self.streams.get(event.stream_id)
            if stream is not None and not stream.finished:
                stream.arrived(event.data, event.flow_controlled_length)
            elif event.flow_controlled_length:
                # Nobody reads it: give the window back now.
                self.h2.acknowledge_received_data(event.flow_controlled_length,
                                                  event.stream_id)
            if event.stream_ended is not None and stream is not None:
                stream.body_ended()
        elif isinstance(event, h2.events.RequestReceived):
            self._open(event)
        elif isinstance(event, h2.events.StreamEnded):
            stream = self.streams.get(event.stream_id)
            if stream is not None:
                stream.body_ended()
        elif isinstance(event, h2.events.StreamReset):
            stream = self.streams.get(event.stream_id)
            if stream is not None:
                stream.gone()
        elif isinstance(event, h2.events.WindowUpdated):
            if event.stream_id:
                stream = self.streams.get(event.stream_id)
                if stream is not None:
                    stream.window_opened()
            else:
                self._open_windows()
        elif isinstance(event, h2.events.RemoteSettingsChanged):
            self._open_windows()
        elif isinstance(event, h2.events.ConnectionTerminated):
            return False
        return True  # trailers are not forwarded; pings and settings are h2's

    def _open_windows(self) -> None:
        for stream in self.streams.values():
            stream.window_opened()

    def _open(self, event: h2.events.RequestReceived) -> None:
        """A request stream begins: refuse it, or start its exchange in a task of its own."""
        stream_id = event.stream_id
        if self.stopping.is_set() or self._drained is not None \
                or len(self.streams) >= self.limits.max_concurrent_streams:
            self.h2.reset_stream(stream_id, h2.errors.ErrorCodes.REFUSED_STREAM)
            return
        stream = _Stream(self, stream_id)
        if event.stream_ended is not None:
            stream.body_done = True
        self.streams[stream_id] = stream
        self.deadline = math.inf
        task_group = self._task_group
        assert task_group is not None  # the reader runs inside serve()'s task group
        try:
            request, raw_head = translate(event.headers or [], has_body=not stream.body_done)
        except _Refused as refused:
            task_group.start_soon(self._refuse_stream, stream, refused)
            return
        task_group.start_soon(self._serve_stream, stream, request, raw_head)

    async def _serve_stream(self, stream: _Stream, request: h11.Request,
                            raw_head: bytes) -> None:
        """Run one stream's exchange, then forget the stream."""
        # A _Stream has every part of a ClientConnection an exchange uses (see _Stream).
        exchange = Http2Exchange(stream, request, b"2")
        try:
            with stream.cancel_scope:
                try:
                    await exchange.run(raw_head)
                except BodyTimeout:
                    await exchange.refuse(408)
                except (Aborted, ClientGone):
                    pass
                except h11.RemoteProtocolError as error:
                    await exchange.refuse(error.error_status_hint or 400)
            if stream.cancel_scope.cancelled_caught and stream.deadline_passed:
                await exchange.refuse(504, self.pages.for_status(504))
        except ClientGone:
            pass
        finally:
            exchange.finish()
            await self._end_stream(stream)

    async def _refuse_stream(self, stream: _Stream, refused: _Refused) -> None:
        """Answer a stream whose request the front refuses before an exchange is made: the
        status, its request id, recorded as a head that did not parse."""
        request_id = self.new_request_id()
        try:
            await stream.respond(refused.status, [
                (b"content-length", b"0"), (REQUEST_ID_HEADER, request_id.encode("ascii"))],
                b"", head=False)
        except (ClientGone, Aborted):
            pass
        finally:
            if self.records:
                records.unparsed_head(self.access_log, self.metrics,
                                      client_ip=self.identity.client_ip,
                                      status=refused.status, request_id=request_id, waited=0.0)
            await self._end_stream(stream)

    async def _end_stream(self, stream: _Stream) -> None:
        """The stream's exchange is over: give back the window of what it did not read, end
        the stream if the client still may send on it (RST_STREAM NO_ERROR, RFC 9113 §8.1),
        and close the connection if the front stops and this was its last stream."""
        stream.finished = True
        self.streams.pop(stream.stream_id, None)
        h2_connection = self.h2
        unread = stream.unacknowledged + sum(length for _, length in stream.chunks)
        stream.chunks.clear()
        try:
            if unread:
                h2_connection.acknowledge_received_data(unread, stream.stream_id)
            if not stream.lost and not (stream.body_done and stream.response_ended):
                h2_connection.reset_stream(
                    stream.stream_id, h2.errors.ErrorCodes.NO_ERROR if stream.response_ended
                    else h2.errors.ErrorCodes.CANCEL)
        except h2.exceptions.ProtocolError:
            pass  # the stream or the connection is closed already
        if not self.streams:
            self.deadline = time.monotonic() + self.head_timeout
            if self._drained is not None:  # the front stops: this was the last stream
                self._drained.set()
                self._reading.cancel()
        with anyio.CancelScope(shield=True) as scope:
            scope.deadline = anyio.current_time() + _LAST_WRITE
            try:
                await self.flush()
            except ClientGone:
                pass


def translate(headers: Sequence[tuple[bytes, bytes]], *, has_body: bool
              ) -> tuple[h11.Request, bytes]:
    """The HTTP/1.1 request a stream's ``headers`` (pseudo-headers first, as ``h2``
    validated them) become, and its head as the child would get it (for the request rules'
    size and framing checks). ``has_body``: the HEADERS frame did not end the stream.

    Raises :class:`_Refused` for what cannot be forwarded: see the module docstring.
    """
    pseudo: dict[bytes, bytes] = {}
    regular: list[tuple[bytes, bytes]] = []
    host: bytes | None = None
    for name, value in headers:
        if name[:1] == b":":
            if name in pseudo:
                raise _Refused(400, f"a second {name.decode()}")
            pseudo[name] = value
            continue
        if name != name.lower() or name in _CONNECTION_SPECIFIC:
            raise _Refused(400, f"the {name.decode('latin-1')} header is not HTTP/2's")
        if name == b"te" and value.lower() != b"trailers":
            raise _Refused(400, "te other than trailers")
        if name == b"host":
            if host is not None:
                raise _Refused(400, "a second host header")
            host = value
            continue
        regular.append((name, value))
    method = pseudo.get(b":method")
    path = pseudo.get(b":path")
    authority = pseudo.get(b":authority")
    if method is None or path is None or b":scheme" not in pseudo \
            or set(pseudo) - {b":method", b":path", b":scheme", b":authority"}:
        if method == b"CONNECT":
            raise _Refused(501, "CONNECT is not supported")
        raise _Refused(400, "the pseudo-headers are not a request's")
    if not (path.startswith(b"/") or (path == b"*" and method == b"OPTIONS")):
        raise _Refused(400, ":path is not origin-form")
    if authority is not None and host is not None and host != authority:
        raise _Refused(400, "host disagrees with :authority")
    authority = authority if authority is not None else host
    if authority is None:
        raise _Refused(400, "neither :authority nor host")
    forwarded = [(b"host", authority), *regular]
    lengths = [value for name, value in regular if name == b"content-length"]
    if has_body and not lengths:
        forwarded.append((b"transfer-encoding", b"chunked"))
    elif not has_body and lengths and lengths != [b"0"]:
        # h2 compares a content-length with the DATA that follows; none follows here.
        raise _Refused(400, "a content-length, and the stream ended with its headers")
    try:
        request = h11.Request(method=method, target=path, headers=forwarded,
                              http_version=b"1.1")
    except h11.LocalProtocolError as error:
        raise _Refused(400, str(error)) from None
    return request, request_head(method, path, forwarded)


class _Stream:
    """One request stream: what its :class:`Http2Exchange` sees as its connection (the
    connection's parts, its own deadline and cancel scope) and as its input (the body's DATA
    as it arrives, and whether the client reset the stream)."""

    __slots__ = ("connection", "stream_id", "upstream", "pages", "identity", "gateway",
                 "new_request_id", "access_log", "metrics", "limit", "health_paths", "records",
                 "stopping", "input", "cancel_scope", "deadline", "deadline_passed",
                 "waiting_for", "chunks", "unacknowledged", "body_done", "lost", "finished",
                 "response_ended", "on_gone", "on_end", "_arrival", "_window")

    #: An HTTP/2 stream never half-closes as an HTTP/1.1 client does (its END_STREAM is
    #: :attr:`body_done`): what the exchange reads as the client's end of stream.
    ended = False

    def __init__(self, connection: Http2Connection, stream_id: int):
        self.connection = connection
        self.stream_id = stream_id
        self.upstream = connection.upstream
        self.pages = connection.pages
        self.identity = connection.identity
        self.gateway = connection.gateway
        self.new_request_id = connection.new_request_id
        self.access_log = connection.access_log
        self.metrics = connection.metrics
        self.limit = connection.limit
        self.health_paths = connection.health_paths
        self.records = connection.records
        self.stopping = connection.stopping
        #: the exchange's input is the stream itself (``grant``, ``on_gone``, ``lost`` …).
        self.input = self
        self.cancel_scope = anyio.CancelScope()
        self.deadline = math.inf
        self.deadline_passed = False
        self.waiting_for = _WAIT_HEAD
        #: DATA received and not yet taken: (data, flow-controlled length).
        self.chunks: collections.deque[tuple[bytes, int]] = collections.deque()
        #: flow-controlled bytes taken and not yet acknowledged.
        self.unacknowledged = 0
        #: the client ended the stream (its body is all here); it reset it.
        self.body_done = False
        self.lost = False
        #: the exchange is over; the response's last frame was sent.
        self.finished = False
        self.response_ended = False
        #: set by the exchange (see ClientInput); the stream's own scope is what a reset
        #: cancels.
        self.on_gone: Callable[[], None] | None = None
        self.on_end: Callable[[], None] | None = None
        self._arrival: anyio.Event | None = None
        self._window: anyio.Event | None = None

    # -- as the exchange's input (see ClientInput) ---------------------------------------------

    def grant(self) -> None:
        """Nothing to do: the body's window is given back as it is taken."""

    async def drain(self) -> None:
        """Nothing to read and drop after an answer that did not need the body (a 413): the
        stream is reset (``NO_ERROR``) once its exchange is over, and the window of what
        came is given back then (:meth:`Http2Connection._end_stream`)."""

    def arrived(self, data: bytes, length: int) -> None:
        """Called by the connection's reader with a DATA frame's contents."""
        if data or length:
            self.chunks.append((data, length))
        self._wake()

    def body_ended(self) -> None:
        self.body_done = True
        self._wake()

    def gone(self) -> None:
        """The client reset the stream (or the connection ended): the exchange ends."""
        self.lost = True
        self._wake()
        self.window_opened()
        self.cancel_scope.cancel()

    def _wake(self) -> None:
        if self._arrival is not None:
            self._arrival.set()
            self._arrival = None

    async def next_body(self) -> h11.Data | h11.EndOfMessage:
        """The next piece of the request body; what was taken before was handed to the
        child by now, so its window goes back to the client. :class:`ClientGone` if the
        client reset the stream."""
        connection = self.connection
        if self.unacknowledged:
            connection.h2.acknowledge_received_data(self.unacknowledged, self.stream_id)
            self.unacknowledged = 0
            await connection.flush()
        while not self.chunks:
            if self.lost:
                raise ClientGone()
            if self.body_done:
                return h11.EndOfMessage()
            self._arrival = anyio.Event()
            await self._arrival.wait()
        data, length = self.chunks.popleft()
        self.unacknowledged += length
        return h11.Data(data=data)

    def available(self) -> list[h11.Data | h11.EndOfMessage]:
        """The body pieces already here (and its end, if it is here too), without waiting."""
        events: list[h11.Data | h11.EndOfMessage] = []
        while self.chunks:
            data, length = self.chunks.popleft()
            self.unacknowledged += length
            events.append(h11.Data(data=data))
        if self.body_done and not self.lost:
            events.append(h11.EndOfMessage())
        return events

    # -- the response ----------------------------------------------------------------------------

    def window_opened(self) -> None:
        if self._window is not None:
            self._window.set()
            self._window = None

    async def respond(self, status: int, headers: list[tuple[bytes, bytes]], body: bytes,
                      *, head: bool) -> None:
        """A whole response: HEADERS (and DATA unless ``head``), the stream ended."""
        self.send_head(status, headers, end=head or not body)
        if not head and body:
            await self.send_data(body, end=True)
        else:
            await self.connection.flush()

    def send_head(self, status: int, headers: list[tuple[bytes, bytes]], *, end: bool) -> None:
        """Queue the response's HEADERS (``end``: it has no body); the next flush sends
        them. :class:`ClientGone` if the stream is closed."""
        try:
            self.connection.h2.send_headers(
                self.stream_id, [(b":status", b"%d" % status), *headers], end_stream=end)
        except h2.exceptions.ProtocolError:
            raise ClientGone() from None
        if end:
            self.response_ended = True

    async def send_data(self, data: bytes, *, end: bool) -> None:
        """Send ``data`` within the client's flow-control windows, waiting for them to
        open; ``end`` ends the stream after it. :class:`ClientGone` if the client reset the
        stream or left."""
        connection = self.connection
        h2_connection = connection.h2
        stream_id = self.stream_id
        view = memoryview(data)
        try:
            while True:
                while view:
                    window = min(h2_connection.local_flow_control_window(stream_id),
                                 h2_connection.max_outbound_frame_size)
                    if window <= 0:
                        break
                    piece, view = view[:window], view[window:]
                    h2_connection.send_data(stream_id, piece.tobytes(),
                                            end_stream=end and not view)
                await connection.flush()
                if not view:
                    break
                if self.lost:
                    raise ClientGone()
                if h2_connection.local_flow_control_window(stream_id) > 0:
                    continue  # it opened while the flush was under way
                self._window = anyio.Event()
                await self._window.wait()
            if end:
                if not data:
                    h2_connection.end_stream(stream_id)
                    await connection.flush()
                self.response_ended = True
        except h2.exceptions.ProtocolError:
            raise ClientGone() from None


class Http2Exchange(Exchange):
    """An :class:`~.exchange.Exchange` whose client is an HTTP/2 stream: its connection is
    a :class:`_Stream`; the body comes from the stream's DATA, the response goes out as
    HEADERS and DATA within the client's window. Everything else (the gateway's duties, the
    rules, forwarding, the pool, retries, records) is the exchange's own."""

    __slots__ = ()

    connection: _Stream  # type: ignore[assignment]

    def __init__(self, connection: _Stream, request: h11.Request, client_version: bytes):
        super().__init__(connection, request, client_version)  # type: ignore[arg-type]
        # A request id is new in every response: HPACK would add each one to the dynamic
        # table, which then holds little but stale ids, and the encoder searches all of it
        # for every header of every response. Never indexed, it is sent as a literal.
        self.request_id_header = NeverIndexedHeaderTuple(*self.request_id_header)

    async def _continue_if_expected(self) -> None:
        """``expect: 100-continue``: a 100 HEADERS frame before the body is read."""
        if any(name == b"expect" and value.lower() == b"100-continue"
               for name, value in self.headers):
            self.connection.send_head(100, [], end=False)
            await self.connection.connection.flush()

    async def _next_body_event(self) -> h11.Data | h11.EndOfMessage:
        """The stream's next DATA (or its end), unpaced."""
        return await self.connection.next_body()

    async def _body_start(self) -> list[h11.Data | h11.EndOfMessage]:
        pace = self.pace = BodyPace(self.connection.upstream.request_header_timeout)
        events: list[h11.Data | h11.EndOfMessage] = [await self._body_event()]
        size = 0
        if not isinstance(events[0], h11.EndOfMessage):
            for event in self.connection.available():
                events.append(event)
                if isinstance(event, h11.Data):
                    size += len(event.data)
                    pace.received += len(event.data)
                if size >= READ_SIZE:
                    break
        return events

    def request_read(self) -> bool:
        return True

    async def _relay(self, response: ChildResponse, child: ChildConnection,
                     head_request: bool) -> bool:
        """The child's response as HEADERS and DATA frames (no connection-specific header)."""
        self.status = status = response.status_code
        headers = header_rules.response_headers(response.headers, self.request_id_header)
        stream = self.connection
        no_body = head_request or status in (204, 304)
        self.response_started = True
        stream.send_head(status, headers, end=no_body and child.response_complete)
        if no_body:
            if not stream.response_ended:
                await stream.send_data(b"", end=True)
            else:
                await stream.connection.flush()
            child.finish(head_request)
            return True
        while True:
            body = child.take_body()
            for data in body:
                self.bytes_sent += len(data)
            data = b"".join(body)
            if child.response_complete:
                await stream.send_data(data, end=True)
                child.finish(head_request)
                return True
            if data:
                await stream.send_data(data, end=False)
            else:
                await stream.connection.flush()
            try:
                await child.read_more()
            except ChildError:
                raise Aborted() from None

    async def answer(self, status: int, body: bytes = b"",
                     content_type: bytes = b"text/html; charset=utf-8",
                     extra: list[header_rules.Header] | None = None,
                     close: bool = False) -> None:
        """The front's own answer on this stream (``close`` means nothing here: the stream
        ends with it). :class:`Aborted` once a response has started."""
        if self.response_started:
            raise Aborted()
        headers = [(b"content-length", b"%d" % len(body))]
        if body:
            headers.append((b"content-type", content_type))
        if extra:
            headers += extra
        headers.append(self.request_id_header)
        self.response_started = True
        self.status = status
        head = self.method == b"HEAD"
        if not head:
            self.bytes_sent = len(body)
        await self.connection.respond(status, headers, body, head=head)

    async def send(self, data: bytes) -> None:
        """Never called for HTTP/2 (no raw bytes reach the client): :class:`Aborted`."""
        raise Aborted()

