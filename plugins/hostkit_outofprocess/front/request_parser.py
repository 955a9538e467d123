"""The parser of one client request at the front: h11's interface, llhttp's speed.

:class:`RequestParser` has the part of ``h11.Connection`` (server side) the front uses —
:meth:`~RequestParser.receive_data`, :meth:`~RequestParser.next_event` (the same
``h11.Request`` / ``h11.Data`` / ``h11.EndOfMessage`` / ``h11.ConnectionClosed`` events, the
same ``NEED_DATA``, the same ``h11.RemoteProtocolError`` and status hints),
``trailing_data``, ``their_http_version``, ``their_state``,
``they_are_waiting_for_100_continue`` — and reads the common request itself:

- the head is checked by llhttp (``httptools``, strict: no lenient flag is set), which
  refuses what is not HTTP/1.1 in C (names that are not tokens, control characters in
  values, obs-fold, a bare CR or LF, space before a colon, a bad or repeated
  Content-Length); the request line is matched with h11's own expression;
- a Content-Length body is counted here, as h11 counts it.

The request's ``headers`` is a list of ``(lower-case name, value)`` pairs (what
``list(h11_request.headers)`` gives), not h11's ``Headers``.

h11 stays the reference: whatever the two parsers might read differently goes to h11, which
parses the request from its first byte (:attr:`RequestParser.fallback`), so the front answers
exactly as it always did. Those are, beyond what llhttp refuses (h11 then refuses it too, or
takes it: a method llhttp does not know, bare LFs, a control character the request rules
refuse): a first byte below ``!`` (h11 refuses an empty line before a request, llhttp
skips it), a head ended by a bare LF, a request line h11's expression does not match
(llhttp takes two spaces), a version other than 1.0 and 1.1, a missing Host on HTTP/1.1 or a
second Host (h11 refuses them), a Content-Length over h11's 20 digits, Transfer-Encoding
(h11 reads chunked bodies, with :func:`hostkit.request_rules.limit_chunk_sizes`), Upgrade and
CONNECT (h11's protocol switch). tests/test_request_parser.py compares both on each case and
on generated ones.
"""

from __future__ import annotations

import re

import h11
import httptools
from h11._abnf import request_line
from h11._util import Sentinel

from hostkit.plugin import request_rules

MAX_HEAD_SIZE = request_rules.MAX_HEAD_SIZE

#: h11's request line, and its end of a head (a bare LF ends lines there too).
_REQUEST_LINE = re.compile(request_line.encode("ascii"))
_BLANK_LINE = re.compile(rb"\n\r?\n")
#: The header names that need more than llhttp's reading.
_SPECIAL = frozenset([b"host", b"content-length", b"transfer-encoding", b"upgrade", b"expect"])
_HOST_ONLY = [b"host"]
#: The most digits h11 takes in a Content-Length (its CONTENT_LENGTH_MAX_DIGITS).
_MAX_LENGTH_DIGITS = 20

_IDLE, _SEND_BODY, _DONE, _MUST_CLOSE, _CLOSED, _ERROR = (
    h11.IDLE, h11.SEND_BODY, h11.DONE, h11.MUST_CLOSE, h11.CLOSED, h11.ERROR)
_NEED_DATA, _PAUSED = h11.NEED_DATA, h11.PAUSED
_Request, _Data, _EndOfMessage = h11.Request, h11.Data, h11.EndOfMessage
_RemoteProtocolError = h11.RemoteProtocolError
_new = object.__new__
# The slots of a frozen h11.Request, set without its __init__ (which would validate again).
_set_method, _set_target, _set_headers, _set_version = (
    getattr(_Request, name).__set__ for name in ("method", "target", "headers", "http_version"))
_VERSIONS = (b"1.1", b"1.0")
_HTTP_ERRORS = (httptools.HttpParserError, httptools.HttpParserUpgrade)


def h11_parser() -> h11.Connection:
    """The h11 connection a request falls back to (as the front parsed every request before)."""
    return h11.Connection(h11.SERVER, max_incomplete_event_size=MAX_HEAD_SIZE)


class _Head:
    """llhttp's callback target for a head: its headers (lower-case names, values without
    their OWS, as h11 gives them), the :data:`_SPECIAL` names among them in order, and
    whether the header section ended."""

    __slots__ = ("headers", "specials", "done")

    def __init__(self) -> None:
        self.headers: list[tuple[bytes, bytes]] = []
        self.specials: list[bytes] = []
        self.done = False

    def on_header(self, name: bytes, value: bytes) -> None:
        name = name.lower()
        # (llhttp drops the OWS before a value, not the OWS after it.)
        self.headers.append((name, value.rstrip(b" \t")))
        if name in _SPECIAL:
            self.specials.append(name)

    def on_headers_complete(self) -> None:
        self.done = True


class RequestParser:
    """Parses one request of a client's (and keeps what follows it), as the module says.

    Made for each request (``client_input.request_parser``). Once :attr:`fallback` is set
    (by :meth:`next_event`, before it returns the request), the caller uses that h11
    connection in place of this parser; this parser passes calls on to it meanwhile.
    """

    __slots__ = ("their_state", "their_http_version", "they_are_waiting_for_100_continue",
                 "fallback", "raw_head", "_buffer", "_closed", "_searched", "_length", "_remaining",
                 "_headers")

    def __init__(self) -> None:
        #: h11's state of the client: IDLE, SEND_BODY, DONE or MUST_CLOSE, CLOSED, ERROR.
        self.their_state: type[Sentinel] = _IDLE
        #: the request's version, once its head was read (``None`` before).
        self.their_http_version: bytes | None = None
        #: as h11's: the request asked ``Expect: 100-continue`` and no body came yet.
        self.they_are_waiting_for_100_continue = False
        #: the h11 connection that parses this request instead (``None``: this parser does).
        self.fallback: h11.Connection | None = None
        #: the request's head as received, once this parser read it (``None`` before, and
        #: for a request :attr:`fallback` parses).
        self.raw_head: bytes | None = None
        self._buffer: bytes | bytearray = b""
        self._closed = False
        #: how much of the buffer was searched for the end of the head already.
        self._searched = 0
        #: the body's Content-Length, and the bytes of it still to come.
        self._length = self._remaining = 0
        self._headers: list[tuple[bytes, bytes]] = []

    @property
    def trailing_data(self) -> tuple[bytes, bool]:
        """What was received and not parsed, and whether the client's stream ended."""
        if self.fallback is not None:
            return self.fallback.trailing_data
        return bytes(self._buffer), self._closed

    def receive_data(self, data: bytes) -> None:
        """The client's next bytes (``b""``: its stream ended)."""
        if self.fallback is not None:
            self.fallback.receive_data(data)
        elif not data:
            self._closed = True
        elif not self._buffer:
            self._buffer = data
        elif type(self._buffer) is bytearray:
            self._buffer += data
        else:
            self._buffer = bytearray(self._buffer) + data  # growing: no copy per piece

    def next_event(self) -> object:
        """The next event, ``NEED_DATA``, or ``PAUSED`` (after the request, as h11); raises
        ``h11.RemoteProtocolError`` (with h11's ``error_status_hint``) as h11 would."""
        if self.fallback is not None:
            return self.fallback.next_event()
        state = self.their_state
        if state is _SEND_BODY:
            return self._body()
        if state is _IDLE:
            return self._head()
        if state is _ERROR:
            raise _RemoteProtocolError("Can't receive data when peer state is ERROR")
        if self._buffer:
            if state is _DONE:
                return _PAUSED
            self._fail("Got data when expecting EOF", 400)
        if self._closed:
            return self._connection_closed()
        return _NEED_DATA

    # -- the head ---------------------------------------------------------------------------

    def _head(self) -> object:
        """The request, once its whole head is here."""
        buffer = self._buffer
        if not buffer:
            return self._connection_closed() if self._closed else _NEED_DATA
        if buffer[0] < 0x21:  # h11 refuses at once, llhttp skips empty lines
            return self._fall_back()
        start = self._searched - 3 if self._searched > 3 else 0
        end = buffer.find(b"\r\n\r\n", start)
        if end < 0:
            if _BLANK_LINE.search(buffer, start) is not None:
                return self._fall_back()  # a head h11 ends at a bare LF
            self._searched = len(buffer)
            if len(buffer) > MAX_HEAD_SIZE:
                self._fail("Receive buffer too long", 431)
            if self._closed:
                self._fail("peer unexpectedly closed connection", 400)
            return _NEED_DATA
        end += 4
        head = buffer[:end] if type(buffer) is bytes else bytes(buffer[:end])
        line_end = head.find(b"\r\n")
        line = _REQUEST_LINE.fullmatch(head, 0, line_end)
        if line is None:
            return self._fall_back()
        method, target, version = line.groups()
        if version not in _VERSIONS:
            return self._fall_back()
        parsed = _Head()
        try:
            httptools.HttpRequestParser(parsed).feed_data(head)
        except _HTTP_ERRORS:
            return self._fall_back()
        if not parsed.done or method == b"CONNECT":
            return self._fall_back()
        headers = self._headers = parsed.headers
        specials = parsed.specials
        if specials != _HOST_ONLY and not self._special_headers(specials, version):
            return self._fall_back()
        self._buffer = buffer[end:]
        self.raw_head = head
        self.their_state = _SEND_BODY
        self.their_http_version = version
        request = _new(_Request)
        _set_method(request, method)
        _set_target(request, target)
        _set_headers(request, headers)
        _set_version(request, version)
        return request

    def _special_headers(self, specials: list[bytes], version: bytes) -> bool:
        """Read the headers named ``specials`` (in the order of the head) as h11 does, or
        return False for a request h11 must parse."""
        hosts = specials.count(b"host")
        if hosts > 1 or (hosts == 0 and version == b"1.1") \
                or b"transfer-encoding" in specials or b"upgrade" in specials:
            return False
        if b"content-length" in specials:  # (llhttp refused a second one)
            for name, value in self._headers:
                if name == b"content-length":
                    if len(value) > _MAX_LENGTH_DIGITS or not value.isdigit():
                        return False
                    self._length = self._remaining = int(value)
                    break
        if b"expect" in specials and version == b"1.1":
            self.they_are_waiting_for_100_continue = \
                b"100-continue" in _comma_values(self._headers, b"expect")
        return True

    def _fall_back(self) -> object:
        """Hand the request, from its first byte, to h11, and return h11's first event."""
        parser = self.fallback = h11_parser()
        parser.receive_data(bytes(self._buffer))
        if self._closed:
            parser.receive_data(b"")
        self._buffer = b""
        try:
            event = parser.next_event()
        finally:  # (read until the caller uses h11's connection itself)
            self.their_state = parser.their_state
            self.their_http_version = parser.their_http_version
            self.they_are_waiting_for_100_continue = parser.they_are_waiting_for_100_continue
        if type(event) is _Request:
            # A chunk size over the rules' limit is refused as soon as it is read.
            request_rules.limit_chunk_sizes(parser)
        return event

    # -- the body ---------------------------------------------------------------------------

    def _body(self) -> object:
        """The next piece of a Content-Length body, or its end."""
        remaining = self._remaining
        if remaining == 0:
            self.they_are_waiting_for_100_continue = False
            self.their_state = _DONE if self._keeps_alive() else _MUST_CLOSE
            return _EndOfMessage()
        buffer = self._buffer
        if not buffer:
            if self._closed:
                self._fail("peer closed connection without sending complete message body "
                           f"(received {self._length - remaining} bytes, expected "
                           f"{self._length})", 400)
            return _NEED_DATA
        if len(buffer) <= remaining:
            data, self._buffer = buffer, b""
        else:
            data, self._buffer = buffer[:remaining], buffer[remaining:]
        self._remaining = remaining - len(data)
        self.they_are_waiting_for_100_continue = False
        return _Data(data=data)  # type: ignore[arg-type]  # (h11's own are bytearrays too)

    def _keeps_alive(self) -> bool:
        """As h11 reads it: HTTP/1.1 without ``Connection: close``."""
        return self.their_http_version == b"1.1" \
            and b"close" not in _comma_values(self._headers, b"connection")

    # -- the ends ---------------------------------------------------------------------------

    def _connection_closed(self) -> h11.ConnectionClosed:
        self.their_state = _CLOSED
        return h11.ConnectionClosed()

    def _fail(self, reason: str, status: int) -> None:
        """Raise h11's error, and keep refusing as h11 does."""
        self.their_state = _ERROR
        raise _RemoteProtocolError(reason, error_status_hint=status)


def _comma_values(headers: list[tuple[bytes, bytes]], name: bytes) -> list[bytes]:
    """The values of the ``name`` headers, split at commas, lower-case (h11's
    ``get_comma_header``)."""
    out = []
    for found, value in headers:
        if found == name:
            for part in value.lower().split(b","):
                part = part.strip()
                if part:
                    out.append(part)
    return out
