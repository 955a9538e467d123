"""The gateway's request rules on the HTTP/1.1 connections hypercorn serves.

hypercorn reads each HTTP/1.1 request with an ``h11.Connection`` and builds the app's scope
from the ``h11.Request`` that connection returns. Before a connection's first byte is read,
``hypercorn_internals.guard_http11`` hands that ``h11.Connection`` to one of the two guards
here, which wrap its ``receive_data``, ``next_event`` and ``start_next_cycle``:

- :func:`gateway_rules` (the ``SERVE`` role, a public listener): every request is checked by
  :func:`hostkit.request_rules.check`, the rules the OutOfProcess front applies too, against
  its head as received (a copy of the bytes up to the end of the head); a refused request
  never reaches the app: hypercorn answers its status with ``Connection: close`` and closes
  the connection. An absolute-form target reaches the app as its path, with ``Host`` from
  the target (RFC 9112 §3.2.2); a chunked body's sizes are limited
  (:func:`hostkit.request_rules.limit_chunk_sizes`); what a client sends after a request
  that ends the connection (HTTP/1.0, ``Connection: close``) is ignored, as at the front, so
  that request gets its own response. HTTP/2's preface (``PRI * HTTP/2.0``) and an
  ``Upgrade: h2c`` are left to hypercorn, which switches to HTTP/2 (docs/protocols.md).
- :func:`http11_only` (the ``CHILD`` role, behind a front that applied the rules already): a
  request of any HTTP version but 1.x is refused with 505, so the HTTP/2 preface is too; the
  child also takes no ``Upgrade: h2c`` (``hypercorn_internals.guard_http11``).

A refusal is raised as h11's ``RemoteProtocolError`` from ``next_event``, which is how
hypercorn learns of any request h11 itself refuses: it answers ``error_status_hint``.
"""

from __future__ import annotations

import h11

from hostkit.plugin import request_rules

#: How much of a connection's bytes is copied while a head is awaited: a head longer than
#: the rules' limit is refused whole (431), so its end need not be in the copy.
_COPY_LIMIT = request_rules.MAX_HEAD_SIZE + 4
# h11's event classes, looked up once: next_event compares every event with them.
_REQUEST, _END_OF_MESSAGE = h11.Request, h11.EndOfMessage


class _GatewayRules:
    """The rules on one connection (see the module docstring); installed by
    :func:`gateway_rules`.

    Its ``receive_data`` stands in for the connection's own only while a head is awaited: a
    request's body goes to h11 without a call of this class's; :meth:`start_next_cycle`
    puts it back."""

    __slots__ = ("connection", "receive", "next", "next_cycle", "raw", "in_head", "closing")

    def __init__(self, connection: h11.Connection):
        self.connection = connection
        self.receive = connection.receive_data
        self.next = connection.next_event
        self.next_cycle = connection.start_next_cycle
        #: the bytes received since the current request's head began to be awaited (up to
        #: about the copy limit; usually one ``receive_data``'s bytes, kept without a copy).
        self.raw = b""
        #: whether the current request's head is still awaited.
        self.in_head = True
        #: whether the client's last request was whole and ends the connection (HTTP/1.0,
        #: ``Connection: close``): whatever it sends after is ignored (RFC 9112 §9.6).
        self.closing = False
        connection.receive_data = self.receive_data  # type: ignore[method-assign]
        connection.next_event = self.next_event  # type: ignore[method-assign]
        connection.start_next_cycle = self.start_next_cycle  # type: ignore[method-assign]

    def receive_data(self, data: bytes) -> None:
        """h11's ``receive_data``, keeping the bytes of a head being awaited."""
        if self.in_head:
            raw = self.raw
            if not raw:
                self.raw = data
            elif len(raw) < _COPY_LIMIT:
                self.raw = raw + data[:_COPY_LIMIT]
        self.receive(data)

    def next_event(self) -> h11.Event | type[h11.PAUSED] | type[h11.NEED_DATA]:
        """h11's ``next_event``, with each ``h11.Request`` checked (:meth:`_checked`)."""
        try:
            event = self.next()
        except h11.RemoteProtocolError:
            if self.closing:
                # h11 refuses any byte after such a request ("Got data when expecting EOF"),
                # and hypercorn would answer that 400 in place of the request's response.
                return h11.NEED_DATA
            raise
        # type() rather than isinstance(): h11's event classes make isinstance slow.
        kind = type(event)
        if kind is _REQUEST:
            return self._checked(event)  # type: ignore[arg-type]
        if kind is _END_OF_MESSAGE and self.connection.their_state is h11.MUST_CLOSE:
            self.closing = True
        return event  # type: ignore[return-value]

    def start_next_cycle(self) -> None:
        """h11's ``start_next_cycle``: the next head is awaited, beginning with what came
        after the last request."""
        self.next_cycle()
        connection = self.connection
        self.raw = connection.trailing_data[0][:_COPY_LIMIT]
        self.in_head = True
        connection.receive_data = self.receive_data  # type: ignore[method-assign]

    def _checked(self, request: h11.Request) -> h11.Request:
        """``request`` as the app gets it; h11's ``RemoteProtocolError`` if it is refused."""
        raw, self.raw, self.in_head = self.raw, b"", False
        if request.method == b"PRI" and request.http_version == b"2.0":
            return request  # the HTTP/2 preface: hypercorn switches the connection to HTTP/2
        verdict = request_rules.verdict_of(request, request_rules.head_of(raw))
        kind = type(verdict)
        if kind is request_rules.Refusal:
            raise h11.RemoteProtocolError(verdict.reason,  # type: ignore[union-attr]
                                          error_status_hint=verdict.status)  # type: ignore[union-attr]
        connection = self.connection
        request_rules.limit_chunk_sizes(connection)
        del connection.receive_data  # h11's own until the next cycle (start_next_cycle)
        if kind is bytes:
            return request  # forwarded as it came
        return _origin_form(request, verdict)  # type: ignore[arg-type]


def _origin_form(request: h11.Request, forwarded: request_rules.Forwarded) -> h11.Request:
    """``request`` with its absolute-form target replaced by the origin-form one, and its
    ``Host`` by the target's authority (added if it had none)."""
    headers = [(name, forwarded.host if name.lower() == b"host" else value)
               for name, value in request.headers.raw_items()]
    if not any(name.lower() == b"host" for name, _ in headers):
        headers.insert(0, (b"Host", forwarded.host))
    return h11.Request(method=request.method, target=forwarded.target, headers=headers,
                       http_version=request.http_version)


def gateway_rules(connection: h11.Connection) -> None:
    """Apply the gateway's request rules to every request ``connection`` returns (called
    with a new connection's parser, before its first byte is received)."""
    _GatewayRules(connection)


def http11_only(connection: h11.Connection) -> None:
    """Refuse (505) every request ``connection`` returns that is not HTTP/1.x (called with a
    new connection's parser, before its first byte is received)."""
    next_event = connection.next_event

    def next_http11_event() -> h11.Event | type[h11.PAUSED] | type[h11.NEED_DATA]:
        event = next_event()
        if type(event) is h11.Request and not event.http_version.startswith(b"1."):  # type: ignore[union-attr]
            raise h11.RemoteProtocolError("only HTTP/1.1 is served here",
                                          error_status_hint=505)
        return event  # type: ignore[return-value]

    connection.next_event = next_http11_event  # type: ignore[method-assign]
