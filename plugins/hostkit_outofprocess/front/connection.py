"""One accepted client connection: its state and its request loop, :class:`ClientConnection`.

The connection reads request heads and hands each request to an
:class:`~hostkit_outofprocess.front.exchange.Exchange`, which forwards it and relays the
answer; what lives longer than one request is here: the stream and its input
(:mod:`~hostkit_outofprocess.front.client_input`), whether it is idle, its deadline
(:mod:`~hostkit_outofprocess.front.deadlines`), and what every connection holds (who the
client is, the parts of the gateway its exchanges use:
:class:`~hostkit_outofprocess.front.serving.ServedConnection`).
"""

from __future__ import annotations

import math
import time

import anyio
import h11

from hostkit.plugin import REQUEST_ID_HEADER, FloodLimits, Gateway

from hostkit_outofprocess.front import records
from hostkit_outofprocess.front.client_input import STREAM_ERRORS, ClientGone, client_input
from hostkit_outofprocess.front.deadlines import Wait
from hostkit_outofprocess.front.exchange import Aborted, BodyTimeout, Exchange
from hostkit_outofprocess.front.http2 import PREFACE_HEAD, Http2Connection
from hostkit_outofprocess.front.identity import ConnectionIdentity
from hostkit_outofprocess.front.pages import ErrorPages
from hostkit_outofprocess.front.serving import ServedConnection
from hostkit_outofprocess.front.streams import Stream
from hostkit_outofprocess.front.upstream import Upstream
from hostkit_outofprocess.front.wire import own_response

# Enum members are looked up through a descriptor on Python 3.11: the request loop uses
# this module global instead.
_WAIT_HEAD = Wait.NEXT_HEAD


class ClientConnection(ServedConnection):
    """Serves one accepted client connection until it closes, times out or the front stops."""

    def __init__(self, stream: Stream, upstream: Upstream, pages: ErrorPages, *,
                 identity: ConnectionIdentity, gateway: Gateway, head_timeout: float,
                 stopping: anyio.Event, http2: FloodLimits | None = None):
        super().__init__(stream, upstream, pages, identity=identity, gateway=gateway,
                         head_timeout=head_timeout, stopping=stopping)
        self.input = client_input(stream)
        #: True between requests (the front stopping closes the connection then).
        self.idle = True
        #: the exchange under way (``None`` between requests).
        self.exchange: Exchange | None = None
        #: When the wait under way (:attr:`waiting_for`) ends, on ``time.monotonic``'s clock;
        #: checked by the server's heartbeat (:meth:`check_deadline`).
        self.deadline = math.inf
        self.waiting_for = _WAIT_HEAD
        #: One cancel scope for the whole connection (not a scope per request and per wait,
        #: which would cost more than the heartbeat does). The heartbeat cancels it past the
        #: deadline; so do the client leaving mid-request and the front stopping while the
        #: connection is idle.
        self.cancel_scope = anyio.CancelScope()
        self._deadline_passed = False
        #: When the wait for the first head began (``None`` once it is over): at accept, so
        #: the TLS handshake counts against that deadline as well.
        self._first_wait_began: float | None = stream.opened_at
        #: When the wait for the head being read began (``time.monotonic``).
        self._head_wait_began = stream.opened_at
        #: The HTTP/2 settings, for a connection that begins with the HTTP/2 preface (prior
        #: knowledge); ``None``: such a connection gets 505, as any HTTP/2.0 request head.
        self.http2_limits = http2
        #: The connection once it turned out to speak HTTP/2 (it serves from then on).
        self.http2: Http2Connection | None = None

    def check_deadline(self, now: float) -> None:
        """Called by the server's heartbeat every ``HEARTBEAT`` seconds: past its deadline,
        the connection's wait ends (with 408 or 504, see :meth:`_answer_deadline`)."""
        if self.http2 is not None:
            self.http2.check_deadline(now)
            return
        if now >= self.deadline:
            self._deadline_passed = True
            self.cancel_scope.cancel()

    def close_if_idle(self) -> None:
        """Called when the front stops: a connection between requests closes now."""
        if self.http2 is not None:
            self.http2.close_if_idle()
            return
        if self.idle:
            self.cancel_scope.cancel()

    async def serve(self) -> None:
        """Serve requests until the connection ends; then close it. A connection that
        begins with the HTTP/2 preface is served by an :class:`Http2Connection` from then on."""
        try:
            async with anyio.create_task_group() as task_group:
                task_group.start_soon(self.input.run)
                try:
                    await self._serve_requests()
                except ClientGone:
                    pass  # the client left before its answer was written: not an error
                finally:
                    task_group.cancel_scope.cancel()
        finally:
            if self.exchange is not None:
                self.exchange.finish()
                self.exchange = None  # it refers to the connection: no cycle left to collect
            if self.http2 is None:
                with anyio.CancelScope(shield=True):
                    await self.stream.aclose()
        if self.http2 is not None:
            await self.http2.serve()

    async def _serve_requests(self) -> None:
        client = self.input
        with self.cancel_scope:
            while not self.stopping.is_set():
                self.idle = True
                if self.exchange is not None:
                    self.exchange.finish()
                    self.exchange = None  # the last one's state goes with it
                self.waiting_for = _WAIT_HEAD
                first = self._first_wait_began is not None
                self.deadline = self._next_head_deadline()
                try:
                    event = await client.next_event()
                except h11.RemoteProtocolError as error:
                    await self._answer_without_request(error.error_status_hint or 400)
                    return
                self.deadline = math.inf
                self.idle = False
                if not isinstance(event, h11.Request):
                    return  # closed, or the front stops
                if first and event.method == b"PRI" and await self._switch_to_http2(event):
                    return
                exchange = self.exchange = Exchange(self, event)
                try:
                    keep_alive = await exchange.run(client.raw_head())
                except (Aborted, ClientGone):
                    return
                except h11.RemoteProtocolError as error:
                    # Also a body cut short by the client's half-close: it may still read.
                    await exchange.refuse(error.error_status_hint or 400)
                    return
                except BodyTimeout:
                    await exchange.refuse(408)
                    return
                if not keep_alive or exchange.must_close or not exchange.request_read():
                    return
                client.next_request()
        if self.cancel_scope.cancelled_caught and self._deadline_passed:
            await self._answer_deadline()

    async def _switch_to_http2(self, request: h11.Request) -> bool:
        """The connection's first request is ``PRI``: if it is ``PRI * HTTP/2.0``, the start
        of the HTTP/2 preface, stop reading HTTP/1.1, make the :class:`Http2Connection` that
        serves the connection from now on (with what was read already) and return True;
        False for a request to answer as any other (a 505)."""
        if self.http2_limits is None or request.http_version != b"2.0" \
                or not self.input.head.startswith(PREFACE_HEAD):
            return False
        client = self.input
        await client.stop()
        self.http2 = Http2Connection(
            self.stream, self.upstream, self.pages, identity=self.identity, gateway=self.gateway,
            head_timeout=self.head_timeout, stopping=self.stopping, limits=self.http2_limits,
            received=PREFACE_HEAD + client.parser.trailing_data[0])
        return True

    def _next_head_deadline(self) -> float:
        """Called as the connection begins waiting for a request head: ``head_timeout`` after
        the wait began, at accept for the first head, now for a later one."""
        began = self._first_wait_began if self._first_wait_began is not None \
            else time.monotonic()
        self._first_wait_began = None
        self._head_wait_began = began
        return began + self.head_timeout

    async def _answer_deadline(self) -> None:
        """The connection's deadline passed: 408 for a head begun and not finished in time,
        504 when the child did not answer within ``request_timeout``."""
        if self.waiting_for is _WAIT_HEAD:
            if self.input.head.strip(b"\r\n") and not self.stopping.is_set():
                try:
                    await self._answer_without_request(408)
                except ClientGone:
                    pass
        elif self.exchange is not None:
            await self.exchange.refuse(504, self.pages.for_status(504))

    async def _answer_without_request(self, status: int) -> None:
        """Answer ``status`` to a head that was malformed or did not arrive in time, and
        close: nothing is known of a request, so nothing of HTTP/1.1 is assumed either (the
        answer still has its request id, and is recorded). :class:`ClientGone` if the
        client cannot be written to."""
        request_id = self.new_request_id()
        out, _ = own_response(status, b"", content_type=b"",
                              extra=[(REQUEST_ID_HEADER, request_id.encode("ascii"))],
                              method=b"", http_11=False, close=True)
        try:
            await self.stream.send(out)
        except STREAM_ERRORS:
            raise ClientGone() from None
        finally:
            if self.records:
                records.unparsed_head(
                    self.access_log, self.metrics, client_ip=self.identity.client_ip,
                    status=status, request_id=request_id,
                    waited=time.monotonic() - self._head_wait_began)
