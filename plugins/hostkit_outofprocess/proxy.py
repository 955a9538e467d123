"""One client connection to the module: parse with h11, forward to a child, relay the answer.

Nothing is relayed as raw bytes while HTTP is spoken (SPEC §4): a client's requests are parsed
by h11 and checked (:mod:`request_rules`), the child's responses are parsed by llhttp
(:mod:`pool`), and both are serialized again (:mod:`serialize`). Bodies stream in both
directions, a chunk at a time.

A reader task per connection reads the client's bytes at most one chunk ahead of the handler:
memory stays bounded for any body size, and a client that goes away while its response is
still being produced is noticed at once, so the child's connection is closed and the child's
``request_aborted`` fires.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable
from typing import Protocol

import anyio
import h11
from anyio.abc import ByteStream

from hostkit.authentication import AuthenticateResult

from hostkit_outofprocess import headers as header_rules
from hostkit_outofprocess import request_rules
from hostkit_outofprocess.connection_identity import ConnectionIdentity
from hostkit_outofprocess.pages import ErrorPages
from hostkit_outofprocess.pool import (
    READ_SIZE,
    ChildConnection,
    ChildError,
    ChildResponse,
    ConnectionPool,
)
from hostkit_outofprocess.process import ChildUnavailable
from hostkit_outofprocess.serialize import (
    BODY_AS_IS,
    BODY_CHUNKED,
    BODY_NONE,
    CONTINUE,
    LAST_CHUNK,
    chunk,
    informational_head,
    phrase,
    request_head,
    response_head,
)
from hostkit_outofprocess.streams import ProtocolStream

logger = logging.getLogger("hostkit.module")

MAX_HEAD_SIZE = 16 * 1024
#: How often the module checks its connections' deadlines (Kestrel's heartbeat does it once a
#: second). A timer armed and cancelled around every wait cost the module about a tenth of its
#: CPU per request (bench/outofprocess.py); with the heartbeat a wait is a float assignment, and
#: a deadline is kept to within this much.
HEARTBEAT = 0.25
_FLUSH_SIZE = 64 * 1024
_CLIENT_ERRORS = (anyio.EndOfStream, anyio.BrokenResourceError, anyio.ClosedResourceError,
                  OSError)


class Target(Protocol):
    """A child ready for a request: its connection pool and token."""

    pool: ConnectionPool
    token: bytes

    async def unreachable(self) -> bool:
        """A new connection to the child was refused. Returns whether the child has exited
        (so another child can take the request)."""


class Upstream(Protocol):
    """What the proxy needs from the module."""

    request_timeout: float
    #: also the grace period of a request body's minimum data rate (:class:`BodyPace`).
    request_header_timeout: float

    async def acquire(self) -> Target:
        """A child for the next request; raises ``ChildUnavailable`` with the answer to give."""


class _Aborted(Exception):
    """The exchange cannot go on; the client connection is closed without a made-up end."""


class _ClientGone(Exception):
    """The client closed its connection."""


async def _read_into(reader: _ClientReader | _DirectInput) -> bytes:
    """Read the client's next bytes into h11 (and the raw-head copy). ``b""``: the end.

    ``reader.head`` is looked up after the read: the connection starts a new copy for each
    request, also while a read is under way.
    """
    try:
        data = await reader.stream.receive(READ_SIZE)
    except _CLIENT_ERRORS:
        data = b""
    if len(reader.head) < MAX_HEAD_SIZE:
        reader.head += data[:MAX_HEAD_SIZE]
    reader.connection.receive_data(data)
    return data


class _ClientReader:
    """Reads the client's bytes into h11 in a task of its own, one chunk ahead at most."""

    def __init__(self, stream: ByteStream, connection: h11.Connection):
        self.stream = stream
        self.connection = connection
        self.gone = False
        #: called when the client goes away (cancels the exchange in flight, if any).
        self.on_gone: Callable[[], None] | None = None
        self.head = bytearray()  # what arrived since the current request began
        self._ready_tx, self._ready_rx = anyio.create_memory_object_stream[None](1)
        self._credit_tx, self._credit_rx = anyio.create_memory_object_stream[None](1)
        self._scope = anyio.CancelScope()
        self.stopped = anyio.Event()

    async def run(self) -> None:
        with self._scope, self._ready_tx:
            try:
                while True:
                    data = await _read_into(self)
                    self._nudge()
                    if not data:
                        self.gone = True
                        if self.on_gone is not None:
                            self.on_gone()
                        return
                    await self._credit_rx.receive()
            finally:
                self.stopped.set()

    def _nudge(self) -> None:
        try:
            self._ready_tx.send_nowait(None)
        except anyio.WouldBlock:
            pass

    def grant(self) -> None:
        """Everything read so far was used: read the next chunk."""
        try:
            self._credit_tx.send_nowait(None)
        except anyio.WouldBlock:
            pass

    async def take_available(self) -> None:
        """Nothing to do: what this reader has read is in h11 already."""

    async def wait_data(self) -> None:
        """Wait until more bytes (or the end) reached h11."""
        self.grant()
        try:
            await self._ready_rx.receive()
        except anyio.EndOfStream:
            pass

    async def stop(self) -> None:
        """Stop reading (before a protocol switch hands the raw stream to a tunnel)."""
        self._scope.cancel()
        await self.stopped.wait()


class _DirectInput:
    """On asyncio: the handler reads the client itself, and the protocol's callbacks report a
    client that leaves, so no reader task is needed. Same interface as :class:`_ClientReader`.
    """

    def __init__(self, stream: ProtocolStream, connection: h11.Connection):
        self.stream = stream
        self.connection = connection
        self.on_gone: Callable[[], None] | None = None
        self.head = bytearray()
        self._ended = False
        stream.protocol.on_eof = self._left

    @property
    def gone(self) -> bool:
        """True once the client's end was read (everything it sent before is in h11)."""
        return self._ended

    def _left(self) -> None:
        if self.on_gone is not None:
            self.on_gone()

    async def run(self) -> None:
        """Nothing to run: reading happens in :meth:`wait_data`."""

    def grant(self) -> None:
        """Reading ahead is the protocol's job here (bounded by its high-water mark)."""

    async def wait_data(self) -> None:
        if not await _read_into(self):
            self._ended = True

    async def take_available(self) -> None:
        """Feed h11 what the protocol has buffered already, without waiting for more."""
        while self.stream.protocol.chunks:
            await _read_into(self)

    async def stop(self) -> None:
        self.stream.protocol.on_eof = None


class ClientConnection:
    """Serves one accepted client connection until it closes, times out or the module stops."""

    def __init__(self, stream: ByteStream, upstream: Upstream, pages: ErrorPages, *,
                 identity: ConnectionIdentity, head_timeout: float, stopping: anyio.Event):
        self.stream = stream
        self.upstream = upstream
        self.pages = pages
        self.identity = identity
        self.head_timeout = head_timeout
        self._pace = BodyPace(0.0)
        self.stopping = stopping
        #: h11 parses the client's requests; a fresh one for each (:meth:`_next_cycle`), since
        #: responses are written by :mod:`serialize`, not through h11's state machine.
        self.h11 = _request_parser()
        self.reader: _ClientReader | _DirectInput = (
            _DirectInput(stream, self.h11) if isinstance(stream, ProtocolStream)
            else _ClientReader(stream, self.h11))
        self.idle = True
        # The request being answered, as far as the response's framing needs it.
        self._method = b""
        self._http_11 = False
        self._keep_alive = False
        self._response_started = False
        #: Whether the request has no body, so was read whole with its head.
        self._bodyless = False
        #: Whether the connection ends after the response written last.
        self._must_close = False
        #: When the wait under way (the next head, or the child's response head) ends, on
        #: ``time.monotonic``'s clock (a C call; anyio's asks sniffio which loop runs, every
        #: time); checked by the module's heartbeat (:meth:`check_deadline`).
        self.deadline = math.inf
        # One cancel scope for the whole connection (a scope per request and per wait cost
        # about a tenth of the module's CPU). The heartbeat cancels it past the deadline
        # (answered as _on_deadline says); so do the client leaving mid-request and the
        # module stopping while the connection is idle.
        self._scope = anyio.CancelScope()
        self._on_deadline: int | None = None
        self._deadline_passed = False

    def check_deadline(self, now: float) -> None:
        """Called by the module's heartbeat every :data:`HEARTBEAT` seconds: past its
        deadline, the connection's wait ends (with 408 or 504, see :meth:`_answer_deadline`)."""
        if now >= self.deadline:
            self._deadline_passed = True
            self._scope.cancel()

    def close_if_idle(self) -> None:
        """Called when the module stops: a connection between requests closes now."""
        if self.idle:
            self._scope.cancel()

    async def serve(self) -> None:
        try:
            async with anyio.create_task_group() as task_group:
                task_group.start_soon(self.reader.run)
                try:
                    await self._serve_requests()
                finally:
                    task_group.cancel_scope.cancel()
        finally:
            with anyio.CancelScope(shield=True):
                await self.stream.aclose()

    async def _serve_requests(self) -> None:
        with self._scope:
            while not self.stopping.is_set():
                self.idle = True
                self._method, self._http_11, self._keep_alive = b"", False, False
                self._bodyless = self._response_started = False
                self._on_deadline = 408
                self.deadline = time.monotonic() + self.head_timeout
                try:
                    event = await self._next_event()
                except h11.RemoteProtocolError as error:
                    await self._answer(error.error_status_hint or 400, close=True)
                    return
                self.deadline = math.inf
                self.idle = False
                if not isinstance(event, h11.Request):
                    return  # closed, or the module stops
                try:
                    keep_alive = await self._exchange(
                        event, request_rules.head_of(bytes(self.reader.head)))
                except (_Aborted, _ClientGone):
                    return
                except h11.RemoteProtocolError as error:
                    await self._answer(error.error_status_hint or 400, close=True)
                    return
                except _BodyTimeout:
                    await self._refuse(408)
                    return
                if not keep_alive or self._must_close or not (
                        self._bodyless or self.h11.their_state in _REQUEST_READ):
                    return
                self._next_cycle()
        if self._scope.cancelled_caught and self._deadline_passed:
            await self._answer_deadline()

    def _next_cycle(self) -> None:
        """The request was read and answered: a new parser takes what came after it."""
        rest, closed = self.h11.trailing_data
        self.h11 = self.reader.connection = _request_parser()
        # The raw copy of the next head starts with what was read of it already.
        self.reader.head = bytearray(rest[:MAX_HEAD_SIZE])
        if rest:
            self.h11.receive_data(rest)
        if closed:
            self.h11.receive_data(b"")

    async def _answer_deadline(self) -> None:
        """The connection's deadline passed: 408 for a head begun and not finished in time,
        504 when the child did not answer within ``request_timeout``."""
        if self._on_deadline == 408:
            if self.reader.head.strip(b"\r\n") and not self.stopping.is_set():
                await self._refuse(408)
        elif self._on_deadline == 504:
            await self._refuse(504, self.pages.for_status(504))

    async def _next_event(self) -> h11.Event:
        while True:
            event = self.h11.next_event()
            if event is h11.NEED_DATA:
                if self.reader.gone:
                    raise _ClientGone()
                await self.reader.wait_data()
                continue
            return event  # type: ignore[return-value]

    # -- one request ------------------------------------------------------------------------

    async def _exchange(self, request: h11.Request, raw_head: bytes | None) -> bool:
        """Forward one request and relay its response. Returns whether to keep the connection."""
        # h11's Headers is a Sequence read through __getitem__: read it once, as a list.
        headers = list(request.headers)
        self._method = request.method
        # As h11 reads keep-alive: HTTP/1.0 closes, and so does "Connection: close".
        self._http_11 = request.http_version >= b"1.1"
        connection_tokens = header_rules.connection_tokens(headers)
        self._keep_alive = self._http_11 and b"close" not in connection_tokens
        checked = request_rules.check(request, headers, raw_head, MAX_HEAD_SIZE)
        if isinstance(checked, request_rules.Refusal):
            await self._answer(checked.status, close=True)
            return False
        framing, has_body = _framing(headers)
        # A request without a body ends with its head. h11's end-of-message event for it is
        # not taken: the parser is replaced after the request (_next_cycle), and that event
        # would cost another pass of h11's state machine.
        self._bodyless = not has_body
        authenticated = await self.identity.authenticate(request)
        if authenticated is not None and authenticated.failure is not None:
            await self._answer(401, extra=self.identity.challenge_headers(), close=has_body)
            return not has_body
        websocket = header_rules.is_websocket_upgrade(headers, connection_tokens)
        if has_body and self.h11.they_are_waiting_for_100_continue:
            await self._send(CONTINUE)
        body_start: list[h11.Data | h11.EndOfMessage] = []
        if has_body:
            # Nothing reaches the child before its body has begun well-formed.
            body_start = await self._body_start()
            if isinstance(body_start[-1], h11.EndOfMessage):  # all of it is here
                length = sum(len(e.data) for e in body_start if isinstance(e, h11.Data))
                framing = (b"content-length", str(length).encode())
        outgoing = _Outgoing(request, headers, connection_tokens, checked.target, checked.host,
                             body_start)
        idempotent = not has_body and request.method in header_rules.IDEMPOTENT_METHODS
        stale_retried = False
        for _ in range(_MAX_ATTEMPTS):
            try:
                target = await self.upstream.acquire()
            except ChildUnavailable as unavailable:
                await self._answer_unavailable(unavailable, close=has_body)
                return not has_body
            try:
                child = await target.pool.get()
            except OSError:
                if await target.unreachable():
                    continue  # the child died; nothing reached it: the next child takes it
                break
            outcome = await self._forward(outgoing, framing, has_body, websocket, target, child,
                                          authenticated, first_attempt=not stale_retried,
                                          idempotent=idempotent)
            if isinstance(outcome, bool):
                return outcome
            stale_retried = True
        await self._answer(502, self.pages.for_status(502), close=has_body)
        return not has_body

    async def _forward(self, outgoing: _Outgoing, framing: header_rules.Header | None,
                       has_body: bool, websocket: bool, target: Target, child: ChildConnection,
                       authenticated: AuthenticateResult | None, first_attempt: bool,
                       idempotent: bool) -> bool | object:
        """Send the request on ``child`` and relay the answer.

        Returns keep-alive, or ``_RETRY`` when a reused (pooled) connection turned out to be
        stale before the request reached the child: the head could not be written, or (for an
        idempotent request without a body) the child closed without a byte of answer.
        """
        request = outgoing.request
        stale_retry = first_attempt and child.reused
        forwarded = header_rules.request_headers(
            outgoing.headers, outgoing.connection_tokens, client_ip=self.identity.client_ip,
            scheme=self.identity.scheme, token=target.token, framing=framing,
            websocket=websocket,
            identity=self.identity.forwarded_headers(authenticated, target.token))
        head = request_head(request.method, outgoing.target, [(b"host", outgoing.host),
                                                               *forwarded])
        if outgoing.body_start:
            head += _frame_body(outgoing.body_start, framing)
        head_request = request.method == b"HEAD"
        reusable = False
        # The client leaving cancels the connection's scope; while the module waits for the
        # response head, the deadline is request_timeout (504, _answer_deadline). Either way
        # the child's connection is closed, so the child sees the request end.
        scope = self._scope
        self.reader.on_gone = scope.cancel
        if self.reader.gone:
            scope.cancel()
        try:
            try:
                await child.stream.send(head)
            except _CLIENT_ERRORS:
                if stale_retry:
                    return _RETRY
                await self._answer(502, self.pages.for_status(502), close=True)
                return False
            if has_body and not isinstance(outgoing.body_start[-1], h11.EndOfMessage):
                body_sent = await self._send_body(child, chunked=framing is not None
                                                  and framing[0] == b"transfer-encoding")
            elif has_body:
                body_sent = True
                self.reader.grant()
            else:
                body_sent = True
                if not websocket:
                    self.reader.grant()  # keep reading: a client that leaves is seen now
            self._on_deadline = 504
            self.deadline = time.monotonic() + self.upstream.request_timeout
            try:
                response = await child.response_head(head_request)
            except ChildError:
                response = None
            self.deadline = math.inf
            if response is None:  # the child closed before answering
                if stale_retry and idempotent:
                    return _RETRY
                await self._answer(502, self.pages.for_status(502), close=True)
                return False
            if response.status_code == 101:
                if not websocket:
                    raise _Aborted()  # only a forwarded WebSocket handshake may switch
                await self._switch_protocols(response, child)
                return False
            keep = await self._relay(response, child, head_request)
            # A handshake's connection is never reused, even when the child refused it:
            # a strict parser treats whatever follows an upgrade request as the new protocol.
            reusable = not websocket
            return keep and body_sent
        finally:
            self.reader.on_gone = None
            if reusable and not scope.cancel_called:
                await target.pool.put(child)
            else:
                await child.aclose()

    async def _body_event(self) -> h11.Data | h11.EndOfMessage:
        """The next piece of the request body, at the pace :class:`BodyPace` allows."""
        started = time.monotonic()
        with anyio.move_on_after(self._pace.allowance()) as waiting:
            event = await self._next_event()
        self._pace.waited += time.monotonic() - started
        if waiting.cancelled_caught:
            raise _BodyTimeout()
        if isinstance(event, h11.Data):
            self._pace.received += len(event.data)
            return event
        if isinstance(event, h11.EndOfMessage):
            return event
        raise _ClientGone()

    async def _body_start(self) -> list[h11.Data | h11.EndOfMessage]:
        """The first piece of the body and whatever more of it has already arrived.

        Taken before anything is sent to the child: a body that begins malformed gets its 400
        (raised by h11) while the child has seen nothing of the request.
        """
        self._pace = BodyPace(self.upstream.request_header_timeout)
        events: list[h11.Data | h11.EndOfMessage] = [await self._body_event()]
        await self.reader.take_available()
        size = 0
        while not isinstance(events[-1], h11.EndOfMessage) and size < READ_SIZE:
            event = self.h11.next_event()
            if event is h11.NEED_DATA:
                break
            if not isinstance(event, (h11.Data, h11.EndOfMessage)):
                raise _ClientGone()
            if isinstance(event, h11.Data):
                size += len(event.data)
                self._pace.received += len(event.data)
            events.append(event)
        return events

    async def _send_body(self, child: ChildConnection, chunked: bool) -> bool:
        """Stream the rest of the request body to the child (after :meth:`_body_start`).

        Returns False if the child stopped taking it.
        """
        while True:
            event = await self._body_event()
            if isinstance(event, h11.Data):
                data = chunk(event.data) if chunked else event.data
            else:
                data = LAST_CHUNK if chunked else b""  # client trailers are not forwarded
            if data:
                try:
                    await child.stream.send(data)
                except _CLIENT_ERRORS:
                    # The child stopped reading (it may have answered early, e.g. 413).
                    return False
            if isinstance(event, h11.EndOfMessage):
                self.reader.grant()
                return True

    async def _relay(self, response: ChildResponse, child: ChildConnection,
                     head_request: bool) -> bool:
        """Send the child's response to the client, a chunk at a time. Returns keep-alive."""
        out, body, self._must_close = response_head(
            response.status_code, response.reason,
            header_rules.response_headers(response.headers), method=self._method,
            http_11=self._http_11, close=self._ends_after())
        self._response_started = True
        while True:
            for data in child.take_body():
                if body == BODY_AS_IS:
                    out += data
                elif body == BODY_CHUNKED:
                    out += chunk(data)
                if len(out) >= _FLUSH_SIZE:
                    await self._send(out)
                    out = b""
            if child.response_complete:
                if body == BODY_CHUNKED:
                    out += LAST_CHUNK
                await self._send(out)
                child.finish(head_request)
                return not self._must_close
            if out:
                await self._send(out)  # before waiting on the child: nothing sits in a buffer
                out = b""
            try:
                await child.read_more()
            except ChildError:
                # The child died mid-response: abort, never a made-up end of body.
                raise _Aborted() from None

    async def _switch_protocols(self, response: ChildResponse, child: ChildConnection) -> None:
        """After the child's 101: tell the client, then carry bytes both ways until one ends."""
        await self.reader.stop()
        self._response_started = True
        await self._send(informational_head(response.status_code, response.reason,
                                            response.headers))
        client_rest = self.h11.trailing_data[0]
        child_rest = child.upgraded_data
        try:
            if child_rest:
                await self._send(child_rest)
            if client_rest:
                await child.stream.send(client_rest)
            async with anyio.create_task_group() as task_group:
                task_group.start_soon(_copy, self.stream, child.stream, task_group.cancel_scope)
                task_group.start_soon(_copy, child.stream, self.stream, task_group.cancel_scope)
        finally:
            await child.aclose()

    # -- answers from the module itself -----------------------------------------------------

    async def _send(self, data: bytes) -> None:
        try:
            await self.stream.send(data)
        except _CLIENT_ERRORS:
            raise _ClientGone() from None

    async def _answer(self, status: int, body: bytes = b"",
                      content_type: bytes = b"text/html; charset=utf-8",
                      extra: list[tuple[bytes, bytes]] | None = None, close: bool = False) -> None:
        if self._response_started:
            raise _Aborted()
        response_headers = [(b"content-length", str(len(body)).encode())]
        if body:
            response_headers.append((b"content-type", content_type))
        response_headers += extra or []
        out, body_written, self._must_close = response_head(
            status, phrase(status), response_headers, method=self._method,
            http_11=self._http_11, close=self._ends_after(close))
        self._response_started = True
        if body_written != BODY_NONE:
            out += body
        await self._send(out)

    def _ends_after(self, close: bool = False) -> bool:
        """Whether the connection ends after the response being written: ``close`` says so,
        the client does not keep it alive, or the module stops."""
        return close or not self._keep_alive or self.stopping.is_set()

    async def _refuse(self, status: int, body: bytes = b"") -> None:
        """Answer ``status`` (with ``body``, an HTML page) and close, unless the response
        began or the client left."""
        try:
            await self._answer(status, body, close=True)
        except (_Aborted, _ClientGone):
            pass

    async def _answer_unavailable(self, unavailable: ChildUnavailable, close: bool) -> None:
        status, body, extra = self.pages.for_unavailable(unavailable)
        await self._answer(status, body, extra=extra, close=close)


class _BodyTimeout(Exception):
    """The client's request body stopped coming at the pace :class:`BodyPace` allows."""


class BodyPace:
    """How long the module waits for the next bytes of a request body (slow-client defence).

    The body gets ``grace`` seconds (``server.request_header_timeout``) of waiting, plus
    1/:attr:`MIN_RATE` s for every byte received, counting only the time spent waiting on the
    client (not on the child): Kestrel's ``MinRequestBodyDataRate`` of 240 bytes/s, with the
    header timeout as its grace period. A body trickling slower is cut off with 408.
    """

    MIN_RATE = 240.0

    def __init__(self, grace: float):
        self.grace = grace
        self.received = 0
        self.waited = 0.0

    def allowance(self) -> float:
        """Seconds the module may still wait for the client's next body bytes."""
        return max(0.0, self.grace + self.received / self.MIN_RATE - self.waited)


class _Outgoing:
    """A checked request on its way to the child: its headers (as a list) and the names its
    ``Connection`` header lists, its target and Host as forwarded, and the start of its body
    (read before anything is sent)."""

    __slots__ = ("request", "headers", "connection_tokens", "target", "host", "body_start")

    def __init__(self, request: h11.Request, headers: list[header_rules.Header],
                 connection_tokens: frozenset[bytes], target: bytes, host: bytes,
                 body_start: list[h11.Data | h11.EndOfMessage]):
        self.request = request
        self.headers = headers
        self.connection_tokens = connection_tokens
        self.target = target
        self.host = host
        self.body_start = body_start


_RETRY = object()
# h11's state for a client whose request body was read whole and who keeps the connection.
# After an upgrade request, h11 waits in MIGHT_SWITCH_PROTOCOL for a 101 that h11 never sees
# (responses are the module's, serialize.py), so that state means the same here.
_REQUEST_READ = (h11.DONE, h11.MIGHT_SWITCH_PROTOCOL)
# Connection refused by a child that died, plus one stale pooled connection, at most.
_MAX_ATTEMPTS = 3


def _request_parser() -> h11.Connection:
    """A new h11 connection, to parse one request of a client's (and what follows it)."""
    return h11.Connection(h11.SERVER, max_incomplete_event_size=MAX_HEAD_SIZE)


def _framing(headers: list[header_rules.Header]) -> tuple[header_rules.Header | None, bool]:
    """The framing header to forward, and whether the request has a body."""
    for name, value in headers:
        if name == b"transfer-encoding":
            return (b"transfer-encoding", b"chunked"), True
    for name, value in headers:
        if name == b"content-length":
            length = int(value)  # h11 checked it is digits; the child gets it without zeros
            return (b"content-length", str(length).encode()), length != 0
    return None, False


def _frame_body(events: list[h11.Data | h11.EndOfMessage],
                framing: header_rules.Header | None) -> bytes:
    """The body events read so far, framed as ``framing`` says."""
    chunked = framing is not None and framing[0] == b"transfer-encoding"
    out = b"".join(chunk(e.data) if chunked else bytes(e.data)
                   for e in events if isinstance(e, h11.Data))
    if chunked and events and isinstance(events[-1], h11.EndOfMessage):
        out += LAST_CHUNK
    return out


async def _copy(source: ByteStream, sink: ByteStream, scope: anyio.CancelScope) -> None:
    """Copy bytes until ``source`` ends, then end the whole tunnel."""
    try:
        while True:
            data = await source.receive(READ_SIZE)
            await sink.send(data)
    except _CLIENT_ERRORS:
        pass
    finally:
        scope.cancel()

