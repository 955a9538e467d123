"""The gateway's request rules on the HTTP/1.1 connections hypercorn serves.

hypercorn reads each HTTP/1.1 request with an ``h11.Connection`` and builds the app's scope
from the ``h11.Request`` that connection returns. Before a connection's first byte is read,
``hypercorn_internals.guard_http11`` gives its ``h11.Connection`` one of the two guards here
(:class:`Guard`): h11 reads every request head of the connection through the guard's
:meth:`~Guard.read_head`, which stands in for h11's reader of a head (h11 0.16's
``_readers.maybe_read_from_IDLE_client``, kept in the connection's ``_reader`` while a head
is awaited), and the guard's :meth:`~Guard.admitted` is called once h11 has taken the head:

- :func:`gateway_rules` (the ``SERVE`` role, a public listener): every request is checked by
  :func:`hostkit.request_rules.verdict_of`, the rules the OutOfProcess front applies too,
  against its head as received (the bytes h11 took for it, from its receive buffer); a
  refused request never reaches the app: hypercorn answers its status with ``Connection:
  close`` and closes the connection. An absolute-form target reaches the app as its path,
  with ``Host`` from the target (RFC 9112 §3.2.2); a chunked body's sizes are limited
  (:func:`hostkit.request_rules.limit_chunk_sizes`); what a client sends after a request
  that ends the connection (HTTP/1.0, ``Connection: close``) is ignored, as at the front, so
  that request gets its own response. HTTP/2's preface (``PRI * HTTP/2.0``) and an
  ``Upgrade: h2c`` are left to hypercorn, which switches to HTTP/2 (docs/protocols.md).
- :func:`http11_only` (the ``CHILD`` role, behind a front that applied the rules already): a
  request of any HTTP version but 1.x is refused with 505, so the HTTP/2 preface is too; the
  child also takes no ``Upgrade: h2c`` (``hypercorn_internals.guard_http11``).

A refusal is raised from the reader as h11's ``LocalProtocolError``, which h11's
``next_event`` raises again as the ``RemoteProtocolError`` hypercorn learns of any request
h11 itself refuses by: it answers ``error_status_hint``. Before that, the connection is told
whether the request asked to end it, as h11 would have been by taking the request, so the
refusal's head is the one it was when the rules ran after h11.
"""

from __future__ import annotations

from typing import NoReturn, Protocol

import h11
from h11._connection import _keep_alive
from h11._readers import ChunkedReader, maybe_read_from_IDLE_client
from h11._receivebuffer import ReceiveBuffer

from hostkit.plugin import request_rules

#: How much of h11's receive buffer is copied before it takes a head: a head longer than the
#: rules' limit is refused whole (431), so the copy need not hold it all.
_COPY_LIMIT = request_rules.MAX_HEAD_SIZE + 4
# h11's event classes, looked up once: next_event compares every event with them.
_END_OF_MESSAGE = h11.EndOfMessage
_Refusal = request_rules.Refusal


class Guard(Protocol):
    """The guard of one connection's requests, as ``hypercorn_internals`` uses it."""

    def read_head(self, buffer: ReceiveBuffer) -> h11.Request | None:
        """h11's reader of a request head: the ``h11.Request`` at the start of ``buffer``
        (taken from it), or None while it is not all there. Raises h11's
        ``LocalProtocolError`` for a head h11 or the guard refuses."""

    def admitted(self) -> None:
        """Called once h11 has taken the head :meth:`read_head` returned (its state is that
        of the request's body), before the request reaches the app."""


def _refuse(connection: h11.Connection, request: h11.Request, status: int,
            reason: str) -> NoReturn:
    """Refuse ``request`` (just read, not yet taken by h11) with ``status``: raises h11's
    ``LocalProtocolError``. A request that asks to end the connection has the connection's
    keep-alive turned off first, as h11 does when it takes it: the refusal's
    ``Connection: close`` then stands where h11 puts it for such a request."""
    if not _keep_alive(request):
        connection._cstate.process_keep_alive_disabled()
    raise h11.LocalProtocolError(reason, error_status_hint=status)


class _GatewayRules:
    """The rules on one connection (see the module docstring); made by
    :func:`gateway_rules`."""

    __slots__ = ("connection",)

    def __init__(self, connection: h11.Connection):
        self.connection = connection

    def read_head(self, buffer: ReceiveBuffer) -> h11.Request | None:
        """h11's reader of a head, each ``h11.Request`` checked against the bytes h11 took
        for it (the rules look at the raw head: h11 merges repeated headers)."""
        data = buffer._data
        size = len(data)
        raw = bytes(data) if size <= _COPY_LIMIT else bytes(data[:_COPY_LIMIT])
        request = maybe_read_from_IDLE_client(buffer)
        if request is None:
            return None
        length = size - len(data)  # the head, up to its blank line, is what h11 took
        if request.method == b"PRI" and request.http_version == b"2.0":
            return request  # the HTTP/2 preface: hypercorn switches the connection to HTTP/2
        verdict = request_rules.verdict_of(request, raw[:length] if length <= len(raw) else None)
        kind = type(verdict)
        if kind is bytes:
            return request  # forwarded as it came
        if kind is _Refusal:
            _refuse(self.connection, request, verdict.status,  # type: ignore[union-attr]
                    verdict.reason)  # type: ignore[union-attr]
        return _origin_form(request, verdict)  # type: ignore[arg-type]

    def admitted(self) -> None:
        """The request's chunk sizes limited (a chunked body), and, for a request that ends
        the connection, what comes after it ignored (:class:`_Closing`)."""
        connection = self.connection
        if type(connection._reader) is ChunkedReader:  # (limit_chunk_sizes looks again)
            request_rules.limit_chunk_sizes(connection)
        if not connection._cstate.keep_alive:
            _Closing(connection)


class _Closing:
    """The ``next_event`` of a connection whose request ends it (HTTP/1.0, ``Connection:
    close``): once that request is whole, whatever the client sends after is ignored
    (RFC 9112 §9.6) instead of refused. Installed by :meth:`_GatewayRules.admitted`, once."""

    __slots__ = ("connection", "next", "closing")

    def __init__(self, connection: h11.Connection):
        self.connection = connection
        self.next = connection.next_event
        #: whether the request is whole: what comes after it is ignored.
        self.closing = False
        connection.next_event = self.next_event  # type: ignore[method-assign]

    def next_event(self) -> h11.Event | type[h11.PAUSED] | type[h11.NEED_DATA]:
        try:
            event = self.next()
        except h11.RemoteProtocolError:
            if self.closing:
                # h11 refuses any byte after such a request ("Got data when expecting EOF"),
                # and hypercorn would answer that 400 in place of the request's response.
                return h11.NEED_DATA
            raise
        if type(event) is _END_OF_MESSAGE and self.connection.their_state is h11.MUST_CLOSE:
            self.closing = True
        return event  # type: ignore[return-value]


def _origin_form(request: h11.Request, forwarded: request_rules.Forwarded) -> h11.Request:
    """``request`` with its absolute-form target replaced by the origin-form one, and its
    ``Host`` by the target's authority (added if it had none)."""
    headers = [(name, forwarded.host if name.lower() == b"host" else value)
               for name, value in request.headers.raw_items()]
    if not any(name.lower() == b"host" for name, _ in headers):
        headers.insert(0, (b"Host", forwarded.host))
    return h11.Request(method=request.method, target=forwarded.target, headers=headers,
                       http_version=request.http_version)


def gateway_rules(connection: h11.Connection) -> Guard:
    """The guard applying the gateway's request rules to every request of ``connection``
    (called with a new connection's parser, before its first byte is received)."""
    return _GatewayRules(connection)


class _Http11Only:
    """Refuses (505) a request of any HTTP version but 1.x; made by :func:`http11_only`."""

    __slots__ = ("connection",)

    def __init__(self, connection: h11.Connection):
        self.connection = connection

    def read_head(self, buffer: ReceiveBuffer) -> h11.Request | None:
        request = maybe_read_from_IDLE_client(buffer)
        if request is not None and not request.http_version.startswith(b"1."):
            _refuse(self.connection, request, 505, "only HTTP/1.1 is served here")
        return request

    def admitted(self) -> None:
        """Nothing to do once a request is in."""


def http11_only(connection: h11.Connection) -> Guard:
    """The guard refusing (505) every request of ``connection`` that is not HTTP/1.x (called
    with a new connection's parser, before its first byte is received)."""
    return _Http11Only(connection)
