"""HTTP/1.1 messages read from raw bytes, by two independent parsers.

The smuggling suite reads what the client sent and what the child received with both h11 (the
module's own parser) and llhttp through httptools (strict: no lenient flags), so a difference
between the module's reading and the child's shows up whichever parser is wrong.
"""

from __future__ import annotations

import dataclasses
import re

import h11
import httptools

Header = tuple[bytes, bytes]


@dataclasses.dataclass(frozen=True)
class Message:
    """One complete request as a parser saw it; header names in lower case."""

    method: bytes
    target: bytes
    headers: tuple[Header, ...]
    body: bytes
    trailers: tuple[Header, ...] = ()

    def summary(self) -> str:
        return f"{self.method.decode('latin-1')} {self.target[:60]!r} body={len(self.body)}"


@dataclasses.dataclass(frozen=True)
class Reading:
    """What a parser made of a byte stream: the complete requests, then how it stopped.

    ``error`` is the parser's complaint (the stream is invalid from that point); otherwise
    ``rest`` is how many bytes after the last complete request it was still waiting on.
    """

    messages: tuple[Message, ...]
    error: str | None = None
    rest: int = 0
    #: where each message ends in the bytes read (h11 only).
    ends: tuple[int, ...] = ()

    @property
    def clean(self) -> bool:
        """Every byte belonged to a complete, valid request."""
        return self.error is None and self.rest == 0


def read_h11(data: bytes) -> Reading:
    """``data`` read as consecutive requests by h11, as a server."""
    connection = h11.Connection(h11.SERVER, max_incomplete_event_size=1 << 20)
    connection.receive_data(data)
    messages: list[Message] = []
    ends: list[int] = []
    request: h11.Request | None = None
    body = bytearray()
    consumed = 0
    try:
        while True:
            event = connection.next_event()
            if event is h11.NEED_DATA:
                return Reading(tuple(messages), rest=len(data) - consumed, ends=tuple(ends))
            if event is h11.PAUSED:
                # After a request that ends the connection (Connection: close, HTTP/1.0)
                # nothing more is read; a protocol switch is not taken.
                return Reading(tuple(messages), ends=tuple(ends))
            if isinstance(event, h11.Request):
                request, body = event, bytearray()
            elif isinstance(event, h11.Data):
                body += event.data
            elif isinstance(event, h11.EndOfMessage):
                assert request is not None
                messages.append(Message(request.method, request.target,
                                        tuple(request.headers.raw_items()), bytes(body),
                                        tuple(event.headers.raw_items())))
                consumed = len(data) - len(connection.trailing_data[0])
                ends.append(consumed)
                # A blank answer (never a protocol switch) lets h11 go on to the next request.
                status = 400 if request.method == b"CONNECT" else 200
                connection.send(h11.Response(status_code=status,
                                             headers=[(b"content-length", b"0")]))
                connection.send(h11.EndOfMessage())
                if connection.our_state is h11.DONE and connection.their_state is h11.DONE:
                    connection.start_next_cycle()
            elif isinstance(event, h11.ConnectionClosed):
                return Reading(tuple(messages), ends=tuple(ends))
    except h11.RemoteProtocolError as error:
        return Reading(tuple(messages), f"h11: {error}", ends=tuple(ends))
    except h11.LocalProtocolError as error:
        return Reading(tuple(messages), f"h11 (state): {error}", ends=tuple(ends))


class _LlhttpTarget:
    """httptools' callback target: builds :class:`Message` objects."""

    def __init__(self) -> None:
        self.messages: list[Message] = []
        self.parser: httptools.HttpRequestParser | None = None
        self.in_message = False
        self._reset()

    def _reset(self) -> None:
        self.url = b""
        self.headers: list[Header] = []
        self.trailers: list[Header] = []
        self.body = bytearray()
        self.in_trailers = False

    def on_message_begin(self) -> None:
        self._reset()
        self.in_message = True

    def on_url(self, url: bytes) -> None:
        self.url += url

    def on_header(self, name: bytes, value: bytes) -> None:
        (self.trailers if self.in_trailers else self.headers).append((name.lower(), value))

    def on_headers_complete(self) -> None:
        self.in_trailers = True

    def on_body(self, body: bytes) -> None:
        self.body += body

    def on_message_complete(self) -> None:
        assert self.parser is not None
        self.messages.append(Message(self.parser.get_method(), self.url, tuple(self.headers),
                                     bytes(self.body), tuple(self.trailers)))
        self.in_message = False


#: llhttp parses only the methods in its own table; any other token is a valid method too.
LLHTTP_STAND_IN = b"PUT"


def with_stand_in_methods(data: bytes, starts: list[int]) -> bytes:
    """``data`` with the method of each request beginning at ``starts`` replaced by
    :data:`LLHTTP_STAND_IN`, so llhttp can check the rest of what was sent."""
    out = bytearray()
    previous = 0
    for start in starts:
        line_start = start + len(data[start:]) - len(data[start:].lstrip(b"\r\n"))
        space = data.find(b" ", line_start)
        if space < 0:
            break
        out += data[previous:line_start] + LLHTTP_STAND_IN
        previous = space
    return bytes(out + data[previous:])


def read_llhttp(data: bytes) -> Reading:
    """``data`` read as consecutive requests by llhttp (httptools), strict."""
    target = _LlhttpTarget()
    parser = httptools.HttpRequestParser(target)
    target.parser = parser
    try:
        parser.feed_data(data)
    except httptools.HttpParserUpgrade as upgrade:
        # llhttp stops after a request asking for a protocol switch: whatever follows on the
        # connection belongs to the new protocol, never to HTTP/1.1.
        after = len(data) - upgrade.args[0]
        return Reading(tuple(target.messages),
                       f"llhttp: {after} bytes after an upgrade request" if after else None)
    except httptools.HttpParserError as error:
        return Reading(tuple(target.messages), f"llhttp: {error}")
    # llhttp keeps no count of unparsed bytes: a message begun and not complete is the rest.
    return Reading(tuple(target.messages), rest=1 if target.in_message else 0)


# --- responses -----------------------------------------------------------------------------

_STATUS_LINE = re.compile(rb"HTTP/1\.[01] (\d{3})(?: [^\r\n]*)?\r\n")


@dataclasses.dataclass(frozen=True)
class Answer:
    """One response the client got."""

    status: int
    headers: tuple[Header, ...]
    body: bytes

    def header(self, name: bytes) -> bytes | None:
        return next((value for key, value in self.headers if key == name), None)


def split_responses(data: bytes, methods: list[bytes]) -> tuple[list[Answer], bytes]:
    """The responses in ``data`` (as the module writes them), and any bytes left over.

    ``methods`` are the methods of the requests in order, so a response to HEAD is read
    without a body; interim (1xx) answers are skipped.
    """
    answers: list[Answer] = []
    position = 0
    while position < len(data):
        end = data.find(b"\r\n\r\n", position)
        match = _STATUS_LINE.match(data, position)
        if end < 0 or match is None:
            break
        status = int(match.group(1))
        headers = tuple(_header(line) for line in data[match.end():end].split(b"\r\n") if line)
        body_start = end + 4
        if 100 <= status < 200:
            position = body_start
            continue
        method = methods[len(answers)] if len(answers) < len(methods) else b"GET"
        body, position = _body(data, body_start, dict(headers), method, status)
        if position < 0:
            break
        answers.append(Answer(status, headers, body))
    return answers, data[position:] if position >= 0 else b""


def _header(line: bytes) -> Header:
    name, _, value = line.partition(b":")
    return name.strip().lower(), value.strip()


def _body(data: bytes, start: int, headers: dict[bytes, bytes], method: bytes,
          status: int) -> tuple[bytes, int]:
    if method == b"HEAD" or status in (204, 304):
        return b"", start
    if headers.get(b"transfer-encoding", b"").lower() == b"chunked":
        body = bytearray()
        position = start
        while True:
            line_end = data.find(b"\r\n", position)
            if line_end < 0:
                return b"", -1
            size = int(data[position:line_end].split(b";")[0], 16)
            position = line_end + 2
            if size == 0:
                trailer_end = data.find(b"\r\n\r\n", position - 2)
                return bytes(body), (trailer_end + 4 if trailer_end >= 0 else -1)
            body += data[position:position + size]
            position += size + 2
    if b"content-length" in headers:
        length = int(headers[b"content-length"])
        if start + length > len(data):
            return b"", -1
        return data[start:start + length], start + length
    return data[start:], len(data)  # delimited by the close
