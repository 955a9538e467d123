"""One request of a client connection and its response: :class:`Exchange`.

Like uvicorn's ``RequestResponseCycle``: made once the request's head is parsed, it holds
everything that lives as long as the request does (how the response must be framed, whether
one has started, the body's pace, what is forwarded) and goes with it; the connection keeps
only what outlives a request (:mod:`~hostkit_outofprocess.front.connection`).

Nothing is relayed as raw bytes while HTTP is spoken (SPEC §4): the request was parsed by h11
and is checked here (:mod:`hostkit.request_rules`), the child's response
is parsed by llhttp (:mod:`~hostkit_outofprocess.front.upstream`), and both are written
again (:mod:`~hostkit_outofprocess.front.wire`). Bodies stream in both directions, a chunk
at a time.

The front owns the public listener, so an exchange does the gateway's duties (SPEC §9,
``hostkit.plugin.Gateway``) in the gateway's order: the client's origin after trusted
forwarding and the request id, once the head is read; the health paths, answered here before
authentication and without a child; the limit (``max_concurrent_requests``), entered before
the request is forwarded and left when the exchange ends (:meth:`Exchange.finish`, which
also writes the access log line and the metrics, :mod:`~hostkit_outofprocess.front.records`).
A WebSocket counts against the limit while its tunnel is open, as in IIS and ASP.NET Core's
concurrency limiter. Every response the front writes carries the request's ``X-Request-Id``.
"""

from __future__ import annotations

import enum
import math
import time
from collections.abc import Sequence
from typing import TYPE_CHECKING

import anyio
import h11

from hostkit.plugin import REQUEST_ID_HEADER, RETRY_AFTER_HEADER, AuthenticateResult

from hostkit_outofprocess.children.errors import ChildUnavailable
from hostkit.plugin import request_rules

from hostkit_outofprocess.front import header_rules, records, tunnel
from hostkit_outofprocess.front.client_input import STREAM_ERRORS, ClientGone, ClientInput
from hostkit_outofprocess.front.deadlines import BodyPace, Wait
from hostkit_outofprocess.front.streams import READ_SIZE
from hostkit_outofprocess.front.upstream import ChildConnection, ChildError, ChildResponse, Target
from hostkit_outofprocess.front.wire import (
    BODY_CHUNKED,
    CONTINUE,
    LAST_CHUNK,
    chunk,
    frame_body,
    informational_head,
    own_response,
    request_head,
    response_head,
)

if TYPE_CHECKING:
    from hostkit_outofprocess.front.connection import ClientConnection

# Connection refused by a child that died, plus one stale pooled connection, at most.
_MAX_ATTEMPTS = 3
# h11's state for a client whose request body was read whole and who keeps the connection.
# After an upgrade request, h11 waits in MIGHT_SWITCH_PROTOCOL for a 101 that h11 never sees
# (the responses are the front's own, from wire.py), so that state means the same here.
_REQUEST_READ = (h11.DONE, h11.MIGHT_SWITCH_PROTOCOL)
# The body start of a request without a body: shared, not a new list per request.
_NOTHING: tuple[()] = ()
_TEXT = b"text/plain; charset=utf-8"
_CHUNKED_FRAMING = (b"transfer-encoding", b"chunked")


class Aborted(Exception):
    """The exchange cannot go on; the client connection is closed without a made-up end."""


class BodyTimeout(Exception):
    """The client's request body stopped coming at the pace :class:`BodyPace` allows."""


class BodyTooLarge(Exception):
    """The request body being forwarded passed ``server.max_request_body_size``."""


class Outcome(enum.Enum):
    """How one attempt to forward the request on a child connection ended."""

    #: answered; the connection may carry the next request.
    KEEP_ALIVE = "keep-alive"
    #: answered (or tunnelled, after a 101); the connection ends.
    CLOSE = "close"
    #: a reused pooled connection turned out stale before the request reached the child:
    #: send it again on another.
    RETRY = "retry"


# Enum members are looked up through a descriptor on Python 3.11: the per-request paths use
# these module globals instead.
_KEEP_ALIVE, _CLOSE, _RETRY = Outcome.KEEP_ALIVE, Outcome.CLOSE, Outcome.RETRY
_WAIT_RESPONSE = Wait.RESPONSE
Header = header_rules.Header


class Exchange:
    """One request and its response on a :class:`ClientConnection`; see the module docstring.

    :meth:`run` forwards the request to a child and relays the answer, or answers itself.
    Errors it raises, the connection answers with :meth:`answer` or :meth:`refuse`:
    :class:`Aborted` and :class:`ClientGone` close the connection, h11's
    ``RemoteProtocolError`` (a malformed body) is a 400, :class:`BodyTimeout` a 408.

    The client side is HTTP/1.1 here: the request body comes from the connection's h11
    parser (:meth:`_body_event`, :meth:`_body_start`, :meth:`_continue_if_expected`,
    :meth:`request_read`) and the response is written as HTTP/1.1 bytes (:meth:`_relay`,
    :meth:`answer`, :meth:`send`). Those methods are the client side's whole interface:
    :class:`~hostkit_outofprocess.front.http2.Http2Exchange` implements them with the frames
    of an HTTP/2 stream, and everything else (the gateway's duties, the rules, forwarding,
    retries, records) is shared.
    """

    __slots__ = ("connection", "input", "request", "method", "http_11", "keep_alive",
                 "headers", "connection_tokens", "forwarded_as", "framing", "has_body",
                 "websocket", "authenticated", "body_start", "pace", "response_started",
                 "must_close", "origin", "request_id", "request_id_header", "started",
                 "clock", "status", "bytes_sent", "counted", "holds_slot", "finished",
                 "client_version")

    def __init__(self, connection: ClientConnection, request: h11.Request,
                 client_version: bytes | None = None):
        self.connection = connection
        self.input = connection.input
        self.request = request
        self.method = request.method
        #: the client's HTTP version as the child is told it (``hostkit-http-version``) and
        #: the access log writes it: ``client_version``, else the request's (``1.1``,
        #: ``1.0``); HTTP/2's exchange passes ``2``.
        self.client_version = client_version or request.http_version
        # As h11 reads keep-alive: HTTP/1.0 closes, and so does "Connection: close".
        self.http_11 = http_11 = request.http_version >= b"1.1"
        # h11's Headers is a Sequence read through __getitem__: read it once, as a list.
        self.headers = headers = list(request.headers)
        #: where the request comes from, after trusted forwarding.
        identity = connection.identity
        self.origin = origin = identity.direct or identity.origin(headers)
        #: the request's id, and as the ``X-Request-Id`` the child and the client get.
        self.request_id = request_id = (
            connection.new_request_id() if origin.view is None
            else connection.gateway.request_id(origin.view, headers))
        self.request_id_header = (REQUEST_ID_HEADER, request_id.encode("ascii"))
        #: ``time.time()`` and ``time.perf_counter()`` as the head arrived (for the access
        #: log and the metrics; 0 when neither is on).
        if connection.records:
            self.started = time.time()
            self.clock = time.perf_counter()
        else:
            self.started = self.clock = 0.0
        #: the status of the response written to the client (0: none yet), and its body's
        #: bytes (a tunnel's: what the child sent through it).
        self.status = 0
        self.bytes_sent = 0
        #: whether the metrics count the request in flight, and the limit gave it a slot.
        self.counted = False
        self.holds_slot = False
        self.finished = False
        #: the header names the request's ``Connection`` header lists.
        self.connection_tokens = tokens = header_rules.connection_tokens(headers)
        self.keep_alive = http_11 and b"close" not in tokens
        #: the request line and Host as forwarded (once checked).
        self.forwarded_as: request_rules.Forwarded | None = None
        #: the body framing header to forward (Content-Length or Transfer-Encoding).
        self.framing: Header | None = None
        #: without a body, the request was read whole with its head (h11's end-of-message
        #: event for it is not taken: the parser is replaced after the request, and that
        #: event would cost another pass of h11's state machine).
        self.has_body = False
        self.websocket = False
        self.authenticated: AuthenticateResult | None = None
        #: the start of the body, read before anything is sent to the child.
        self.body_start: Sequence[h11.Data | h11.EndOfMessage] = _NOTHING
        self.pace: BodyPace | None = None
        self.response_started = False
        #: whether the connection ends after the response written last.
        self.must_close = False

    async def run(self, raw_head: bytes | None) -> bool:
        """Forward the request and relay its response, or answer it (``raw_head`` is its head
        as received, :func:`hostkit.request_rules.head_of`). Returns
        whether the response keeps the connection alive; it can carry the next request if,
        also, not :attr:`must_close` and :meth:`request_read`."""
        request, headers, connection = self.request, self.headers, self.connection
        metrics = connection.metrics
        checked = request_rules.check(request, raw_head)
        if isinstance(checked, request_rules.Refusal):
            if metrics is not None:
                metrics.request_started()
                self.counted = True
            await self.answer(checked.status, close=True)
            return False
        self.forwarded_as = checked
        self.framing, has_body = _framing(headers)
        self.has_body = has_body
        if connection.health_paths and await self._answer_health(checked.target):
            return not has_body
        if metrics is not None:
            metrics.request_started()
            self.counted = True
        identity = connection.identity
        if identity.authenticator is not None:
            self.authenticated = authenticated = await identity.authenticate(request,
                                                                             self.origin)
            if authenticated is not None and authenticated.failure is not None:
                await self.answer(401, extra=identity.challenge_headers(), close=has_body)
                return not has_body
        self.websocket = header_rules.is_websocket_upgrade(headers, self.connection_tokens)
        limit = connection.limit
        if limit is not None:
            if not await limit.enter():
                await self.answer(503, connection.pages.for_status(503),
                                  extra=[RETRY_AFTER_HEADER], close=has_body)
                return not has_body
            self.holds_slot = True
        if has_body:
            if _declared_length(self.framing) > connection.upstream.max_request_body_size > 0:
                await self._refuse_too_large()  # before a 100 Continue: no body is sent
                return False
            await self._continue_if_expected()
            # Nothing reaches the child before its body has begun well-formed.
            body_start = self.body_start = await self._body_start()
            if self._over_body_limit():
                await self._refuse_too_large()
                return False
            if isinstance(body_start[-1], h11.EndOfMessage):  # all of it is here
                length = sum(len(e.data) for e in body_start if isinstance(e, h11.Data))
                self.framing = (b"content-length", str(length).encode())
        stale_retried = False
        for _ in range(_MAX_ATTEMPTS):
            target = connection.upstream.acquire_nowait()
            if target is None:
                try:
                    target = await connection.upstream.acquire()
                except ChildUnavailable as unavailable:
                    status, body, extra = connection.pages.for_unavailable(unavailable)
                    await self.answer(status, body, extra=extra, close=has_body)
                    return not has_body
            child = target.pool.get_nowait()
            if child is None:
                try:
                    child = await target.pool.get()
                except OSError:
                    if await target.unreachable():
                        continue  # the child died; nothing reached it: the next child takes it
                    break
            try:
                outcome = await self._forward(target, child, first_attempt=not stale_retried)
            except BodyTooLarge:  # the child's connection, with part of the body, is closed
                await self._refuse_too_large()
                return False
            if outcome is not _RETRY:
                return outcome is _KEEP_ALIVE
            stale_retried = True
        await self.answer(502, connection.pages.for_status(502), close=has_body)
        return not has_body

    async def _continue_if_expected(self) -> None:
        """Before the body is read: answer ``Expect: 100-continue`` (the module answers it
        itself, the child never sees it)."""
        if self.input.parser.they_are_waiting_for_100_continue:
            await self.send(CONTINUE)

    def _over_body_limit(self) -> bool:
        """Whether the body read so far (``BodyPace.received``) is over
        ``server.max_request_body_size``."""
        limit = self.connection.upstream.max_request_body_size
        return limit > 0 and self.pace is not None and self.pace.received > limit

    async def _refuse_too_large(self) -> None:
        """413 (``Connection: close``) to a body over ``server.max_request_body_size``, as
        InProcess, without the child; then a bounded drain of the rest of the body
        (:meth:`ClientInput.drain`), so the client reads the 413 rather than a reset."""
        await self.answer(413, close=True)
        await self.input.drain()

    def request_read(self) -> bool:
        """Whether the whole request was read (so the next one can be), after :meth:`run`."""
        return not self.has_body or self.input.parser.their_state in _REQUEST_READ

    async def _answer_health(self, target: bytes) -> bool:
        """Answer a request for a health path (``target`` as forwarded) and return True;
        False for any other path. Answered here, before authentication and the limit,
        whether or not a child runs."""
        path = target.partition(b"?")[0].decode("latin-1")
        answer = self.connection.gateway.health_answer(path)
        if answer is None:
            return False
        status, body = answer
        await self.answer(status, body, content_type=_TEXT,
                          extra=[RETRY_AFTER_HEADER] if status == 503 else None,
                          close=self.has_body)
        return True

    def finish(self) -> None:
        """Called by the connection once the exchange is over, whatever ended it (its last
        answer written, the client gone, the front stopping): leave the limit, write the
        access log line and the metrics. Once; later calls do nothing."""
        if self.finished:
            return
        self.finished = True
        if self.holds_slot:
            limit = self.connection.limit
            assert limit is not None
            limit.leave()
        if self.connection.records:
            records.exchange_ended(self)

    async def _forward(self, target: Target, child: ChildConnection,
                       first_attempt: bool) -> Outcome:
        """Send the request on ``child`` and relay the answer.

        :data:`Outcome.RETRY` when a reused (pooled) connection turned out to be stale before
        the request reached the child: the head could not be written, or (for an idempotent
        request without a body) the child closed without a byte of answer.
        """
        request, connection, client = self.request, self.connection, self.input
        identity, origin = connection.identity, self.origin
        stale_retry = first_attempt and child.reused
        framing, websocket = self.framing, self.websocket
        forwarded_as = self.forwarded_as
        assert forwarded_as is not None
        host = forwarded_as.host if origin.host is None else origin.host
        forwarded = header_rules.request_headers(
            self.headers, self.connection_tokens, host=host, origin=origin.forwarding,
            token=target.token, framing=framing, websocket=websocket,
            request_id=self.request_id_header, client_port=origin.port_header,
            identity=identity.forwarded_headers(self.authenticated, target.token),
            http_version=self.client_version)
        head = request_head(request.method, forwarded_as.target, forwarded)
        if self.body_start:
            head += _frame_body(self.body_start, framing)
        head_request = request.method == b"HEAD"
        reusable = False
        # The client lost cancels the connection's scope; while the front waits for the
        # response head, the deadline is request_timeout (504). Either way the child's
        # connection is closed, so the child sees the request end.
        scope = connection.cancel_scope
        client.on_gone = scope.cancel
        if client.lost:
            scope.cancel()
        try:
            try:
                if not child.stream.send_nowait(head):
                    await child.stream.send(head)
            except STREAM_ERRORS:
                if stale_retry:
                    return _RETRY
                await self.answer(502, connection.pages.for_status(502), close=True)
                return _CLOSE
            if self.has_body and not isinstance(self.body_start[-1], h11.EndOfMessage):
                body_sent = await self._send_body(child, chunked=framing is not None
                                                  and framing[0] == b"transfer-encoding")
            else:
                body_sent = True
                if self.has_body or not websocket:
                    client.grant()  # keep reading: a client that leaves is seen now
            if not websocket:
                _pass_half_close_on(client, child)
            connection.waiting_for = _WAIT_RESPONSE
            connection.deadline = time.monotonic() + connection.upstream.request_timeout
            try:
                response = await child.response_head(head_request)
            except ChildError:
                response = None
            connection.deadline = math.inf
            if response is None:  # the child closed before answering
                if stale_retry and not self.has_body \
                        and request.method in header_rules.IDEMPOTENT_METHODS:
                    return _RETRY
                await self.answer(502, connection.pages.for_status(502), close=True)
                return _CLOSE
            if response.status_code == 101:
                if not websocket:
                    raise Aborted()  # only a forwarded WebSocket handshake may switch
                await self._switch_protocols(response, child)
                return _CLOSE
            keep = await self._relay(response, child, head_request)
            # A handshake's connection is never reused, even when the child refused it:
            # a strict parser treats whatever follows an upgrade request as the new protocol.
            reusable = not websocket
            return _KEEP_ALIVE if keep and body_sent else _CLOSE
        finally:
            client.on_gone = client.on_end = None
            # After the client's half-close, the child's connection was half-closed too.
            if not (reusable and not scope.cancel_called and not client.ended
                    and target.pool.put_nowait(child)):
                await child.aclose()

    # -- the request body -------------------------------------------------------------------

    async def _body_event(self) -> h11.Data | h11.EndOfMessage:
        """The next piece of the request body, at the pace :class:`BodyPace` allows."""
        pace = self.pace
        assert pace is not None
        started = time.monotonic()
        with anyio.move_on_after(pace.allowance()) as waiting:
            event = await self._next_body_event()
        pace.waited += time.monotonic() - started
        if waiting.cancelled_caught:
            raise BodyTimeout()
        if isinstance(event, h11.Data):
            pace.received += len(event.data)
        return event

    async def _next_body_event(self) -> h11.Data | h11.EndOfMessage:
        """The client's next piece of the body, unpaced (:meth:`_body_event` paces it);
        :class:`ClientGone` when the client closed instead."""
        event = await self.input.next_event()
        if isinstance(event, (h11.Data, h11.EndOfMessage)):
            return event
        raise ClientGone()

    async def _body_start(self) -> list[h11.Data | h11.EndOfMessage]:
        """The first piece of the body and whatever more of it has already arrived.

        Taken before anything is sent to the child: a body that begins malformed gets its 400
        (raised by h11) while the child has seen nothing of the request.
        """
        pace = self.pace = BodyPace(self.connection.upstream.request_header_timeout)
        events: list[h11.Data | h11.EndOfMessage] = [await self._body_event()]
        client = self.input
        await client.take_available()
        parser = client.parser
        size = 0
        while not isinstance(events[-1], h11.EndOfMessage) and size < READ_SIZE:
            event = parser.next_event()
            if event is h11.NEED_DATA:
                break
            if not isinstance(event, (h11.Data, h11.EndOfMessage)):
                raise ClientGone()
            if isinstance(event, h11.Data):
                size += len(event.data)
                pace.received += len(event.data)
            events.append(event)
        return events

    async def _send_body(self, child: ChildConnection, chunked: bool) -> bool:
        """Stream the rest of the request body to the child (after :meth:`_body_start`).

        Returns False if the child stopped taking it.
        """
        while True:
            event = await self._body_event()
            if isinstance(event, h11.Data):
                if self._over_body_limit():
                    raise BodyTooLarge()
                data = chunk(event.data) if chunked else event.data
            else:
                data = LAST_CHUNK if chunked else b""  # client trailers are not forwarded
            if data:
                try:
                    await child.stream.send(data)
                except STREAM_ERRORS:
                    # The child stopped reading (it may have answered early, e.g. 413).
                    return False
            if isinstance(event, h11.EndOfMessage):
                self.input.grant()
                return True

    # -- the response -----------------------------------------------------------------------

    async def _relay(self, response: ChildResponse, child: ChildConnection,
                     head_request: bool) -> bool:
        """Send the child's response to the client, a chunk at a time. Returns keep-alive."""
        self.status = status = response.status_code
        out, body, self.must_close = response_head(
            status, response.reason,
            header_rules.response_headers(response.headers, self.request_id_header),
            method=self.method, http_11=self.http_11, close=self._ends_after())
        self.response_started = True
        client = self.connection.stream
        while True:
            # What one read of the child parsed (at most READ_SIZE), in one write.
            out, size = frame_body(out, child.take_body(), body)
            self.bytes_sent += size
            if child.response_complete:
                if body == BODY_CHUNKED:
                    out += LAST_CHUNK
                if not self._send_nowait(out):
                    await self.send(out)
                child.finish(head_request)
                return not self.must_close
            if out:
                # Before waiting on the child: nothing sits in a buffer.
                if not self._send_nowait(out):
                    await self.send(out)
                out = b""
            # A slow reader holds the relay here, holding nothing: the rest of the response
            # waits in the child's connection (its buffer, then the child's socket).
            await client.writable()
            try:
                await child.read_more()
            except ChildError:
                # The child died mid-response: abort, never a made-up end of body.
                raise Aborted() from None

    async def _switch_protocols(self, response: ChildResponse, child: ChildConnection) -> None:
        """After the child's 101: tell the client, then carry bytes both ways until one ends
        (:mod:`~hostkit_outofprocess.front.tunnel`)."""
        client = self.input
        await client.stop()
        self.response_started = True
        self.status = response.status_code
        headers = [(name, value) for name, value in response.headers
                   if name != REQUEST_ID_HEADER]
        headers.append(self.request_id_header)
        await self.send(informational_head(response.status_code, response.reason, headers))
        client_rest = client.parser.trailing_data[0]
        child_rest = child.upgraded_data
        try:
            if child_rest:
                await self.send(child_rest)
                self.bytes_sent += len(child_rest)
            if client_rest:
                await child.stream.send(client_rest)
            await tunnel.carry(self.connection.stream, child.stream, self._count_sent)
        finally:
            await child.aclose()

    def _count_sent(self, size: int) -> None:
        """``size`` more bytes of a tunnel reached the client."""
        self.bytes_sent += size

    # -- answers of the front's own ---------------------------------------------------------

    async def send(self, data: bytes) -> None:
        """Write ``data`` to the client; :class:`ClientGone` if it cannot be."""
        try:
            await self.connection.stream.send(data)
        except STREAM_ERRORS:
            raise ClientGone() from None

    def _send_nowait(self, data: bytes) -> bool:
        """Write ``data`` to the client if that needs no wait and return True; False (nothing
        written) when :meth:`send` must be awaited. :class:`ClientGone` as for :meth:`send`."""
        try:
            return self.connection.stream.send_nowait(data)
        except STREAM_ERRORS:
            raise ClientGone() from None

    async def answer(self, status: int, body: bytes = b"",
                     content_type: bytes = b"text/html; charset=utf-8",
                     extra: list[Header] | None = None, close: bool = False) -> None:
        """Answer ``status`` (with ``body``, an HTML page unless ``content_type`` says else)
        and ``extra`` headers; ``close`` ends the connection after it. :class:`Aborted` once a
        response has started, :class:`ClientGone` if the client cannot be written to."""
        if self.response_started:
            raise Aborted()
        headers = [*extra, self.request_id_header] if extra else [self.request_id_header]
        out, self.must_close = own_response(
            status, body, content_type=content_type, extra=headers, method=self.method,
            http_11=self.http_11, close=self._ends_after(close))
        self.response_started = True
        self.status = status
        if self.method != b"HEAD":
            self.bytes_sent = len(body)
        if not self._send_nowait(out):
            await self.send(out)

    async def refuse(self, status: int, body: bytes = b"") -> None:
        """Answer ``status`` (with ``body``, an HTML page) and close, unless the response
        began or the client left."""
        try:
            await self.answer(status, body, close=True)
        except (Aborted, ClientGone):
            pass

    def _ends_after(self, close: bool = False) -> bool:
        """Whether the connection ends after the response being written: ``close`` says so,
        the client does not keep it alive, or the front stops."""
        return close or not self.keep_alive or self.connection.stopping.is_set()


def _pass_half_close_on(client: ClientInput, child: ChildConnection) -> None:
    """Called once the whole request was sent to ``child``: from when the client half-closes
    (or now, if it has), so does the front on the child's connection. The child then reads
    what an InProcess server reads from the client itself (hypercorn sets
    ``request_aborted`` and still sends the response), and the front relays its answer."""
    if client.ended:
        child.stream.close_write()
    else:
        client.on_end = child.stream.close_write


def _declared_length(framing: Header | None) -> int:
    """The body length a ``Content-Length`` framing header declares (0 for chunked)."""
    if framing is None or framing[0] != b"content-length":
        return 0
    return int(framing[1])


def _framing(headers: list[Header]) -> tuple[Header | None, bool]:
    """The framing header to forward, and whether the request has a body."""
    declared = None
    for name, value in headers:
        if name == b"transfer-encoding":
            return _CHUNKED_FRAMING, True
        if name == b"content-length" and declared is None:
            declared = value
    if declared is None:
        return None, False
    length = int(declared)  # h11 checked it is digits; the child gets it without zeros
    return (b"content-length", b"%d" % length), length != 0


def _frame_body(events: Sequence[h11.Data | h11.EndOfMessage], framing: Header | None) -> bytes:
    """The body events read so far, framed as ``framing`` says."""
    chunked = framing is not None and framing[0] == b"transfer-encoding"
    out = b"".join(chunk(e.data) if chunked else bytes(e.data)
                   for e in events if isinstance(e, h11.Data))
    if chunked and events and isinstance(events[-1], h11.EndOfMessage):
        out += LAST_CHUNK
    return out

