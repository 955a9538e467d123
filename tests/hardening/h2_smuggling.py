"""Downgrade smuggling: HTTP/2 vectors against the front, which forwards each stream to its
child as HTTP/1.1 (the h2 → h1 translation), read back by the recording child.

The front is :class:`tests.hardening.smuggling.RecordingFront` (its child,
``tests/programs/recorder.py``, logs every byte it receives); each vector is one request
stream on a fresh HTTP/2 connection, sent by an ``h2`` client whose outbound validation is
off (so it sends what ``h2`` would refuse to): header injection through CR/LF/NUL,
``content-length`` against the DATA sent, ``transfer-encoding`` and the other
connection-specific headers, ``:path`` with spaces or without ``/``, ``:authority`` against
``host``, duplicated or misplaced pseudo-headers, trailers.

A **divergence** is any of: the child's two parsers (h11, llhttp) disagree or refuse what the
front sent; the child completed a request different from the stream the front received
(method, target, Host, body, a header the client did not send and the front does not add);
the child completed a request for a vector that must be refused; an accepted vector whose
answer did not come from the child; a refusal that is neither a stream or connection error
nor an error status; a child that completed more requests than the client got answers from
it.
"""

from __future__ import annotations

import collections
import dataclasses
import time

from tests.hardening.smuggling import MODULE_HEADERS, RecordingFront, _same_request
from tests.hardening.wire import Message
from tests.support.h2client import H2Client, H2Response

Header = tuple[bytes, bytes]
#: What the front adds to a forwarded request, HTTP/2's version header included.
ADDED = MODULE_HEADERS | {b"hostkit-http-version"}
_WAIT = 10.0  # bounds a stall on a loaded machine; an answer ends the wait at once
_SETTLE = 2.0


@dataclasses.dataclass(frozen=True)
class H2Vector:
    """One request stream: ``headers`` (pseudo-headers included, in order), the DATA frames,
    trailers (a HEADERS frame ending the stream), and what must happen (``accept``,
    ``reject``, or ``None``: either, as long as nothing diverges)."""

    name: str
    headers: tuple[Header, ...]
    data: tuple[bytes, ...] = ()
    trailers: tuple[Header, ...] | None = None
    expect: str | None = None


def _request(method: bytes = b"GET", path: bytes = b"/echo", authority: bytes = b"a",
             *extra: Header) -> tuple[Header, ...]:
    return ((b":method", method), (b":scheme", b"http"), (b":authority", authority),
            (b":path", path), *extra)


def vectors() -> list[H2Vector]:
    """The HTTP/2 corpus."""
    v = H2Vector
    smuggled = b"GET /smuggled HTTP/1.1\r\nHost: a\r\n\r\n"
    return [
        # Sound requests, forwarded exactly.
        v("plain GET", _request(), expect="accept"),
        v("GET with a query", _request(path=b"/echo?a=1&b=%20"), expect="accept"),
        v("POST with content-length", _request(b"POST", b"/echo", b"a",
                                               (b"content-length", b"5")), (b"hello",),
          expect="accept"),
        v("POST without content-length", _request(b"POST"), (b"hel", b"lo"), expect="accept"),
        v("POST with a request in its body", _request(b"POST", b"/echo", b"a",
                                                      (b"content-length", b"%d" % len(smuggled))),
          (smuggled,), expect="accept"),
        v("POST without length, a request in its body", _request(b"POST"),
          (b"0\r\n\r\n" + smuggled,), expect="accept"),
        v("host only, no :authority", ((b":method", b"GET"), (b":scheme", b"http"),
                                       (b":path", b"/echo"), (b"host", b"a")), expect="accept"),
        v("host equal to :authority", _request(b"GET", b"/echo", b"a", (b"host", b"a")),
          expect="accept"),
        v("OPTIONS *", _request(b"OPTIONS", b"*"), expect="accept"),
        v("te trailers", _request(b"GET", b"/echo", b"a", (b"te", b"trailers")),
          expect="accept"),
        v("trailers after a body", _request(b"POST"), (b"hello",),
          ((b"x-trailer", b"1"),), expect="accept"),
        v("trailers that frame", _request(b"POST"), (b"hello",),
          ((b"transfer-encoding", b"chunked"), (b"content-length", b"0")), expect="reject"),
        v("trailers that smuggle a header line", _request(b"POST"), (b"hello",),
          ((b"x-t", b"1\r\nContent-Length: 0"),), expect="reject"),
        # Header injection.
        v("CR LF in a value", _request(b"GET", b"/echo", b"a",
                                       (b"x-a", b"1\r\nTransfer-Encoding: chunked")),
          expect="reject"),
        v("LF in a value", _request(b"GET", b"/echo", b"a", (b"x-a", b"1\nHost: evil")),
          expect="reject"),
        v("CR in a value", _request(b"GET", b"/echo", b"a", (b"x-a", b"1\rHost: evil")),
          expect="reject"),
        v("NUL in a value", _request(b"GET", b"/echo", b"a", (b"x-a", b"1\x00"))),
        v("CR LF in a name", _request(b"GET", b"/echo", b"a", (b"x-a\r\nhost", b"evil")),
          expect="reject"),
        v("colon in a name", _request(b"GET", b"/echo", b"a", (b"x-a:b", b"1")), expect="reject"),
        v("space in a name", _request(b"GET", b"/echo", b"a", (b"x a", b"1")), expect="reject"),
        v("uppercase name", _request(b"GET", b"/echo", b"a", (b"Content-Length", b"0")),
          expect="reject"),
        v("CR LF in :path", _request(path=b"/echo HTTP/1.1\r\nHost: evil\r\n\r\nGET /x"),
          expect="reject"),
        v("CR LF in :method", _request(method=b"GET /echo HTTP/1.1\r\nX:"), expect="reject"),
        v("space in :method", _request(method=b"GET /x"), expect="reject"),
        v("CR LF in :authority", _request(authority=b"a\r\nX-Injected: 1"), expect="reject"),
        # Content-length against the DATA.
        v("content-length larger than the DATA", _request(b"POST", b"/echo", b"a",
                                                          (b"content-length", b"10")),
          (b"hello",), expect="reject"),
        v("content-length smaller than the DATA", _request(b"POST", b"/echo", b"a",
                                                           (b"content-length", b"3")),
          (b"hello" + smuggled,), expect="reject"),
        v("content-length and no DATA", _request(b"POST", b"/echo", b"a",
                                                 (b"content-length", b"5")), expect="reject"),
        v("two content-length", _request(b"POST", b"/echo", b"a", (b"content-length", b"5"),
                                         (b"content-length", b"5")), (b"hello",),
          expect="reject"),
        v("content-length list", _request(b"POST", b"/echo", b"a", (b"content-length", b"5, 5")),
          (b"hello",), expect="reject"),
        v("content-length not a number", _request(b"POST", b"/echo", b"a",
                                                  (b"content-length", b"+5")), (b"hello",),
          expect="reject"),
        # Connection-specific headers.
        v("transfer-encoding chunked", _request(b"POST", b"/echo", b"a",
                                                (b"transfer-encoding", b"chunked")),
          (b"0\r\n\r\n" + smuggled,), expect="reject"),
        v("transfer-encoding with content-length", _request(
            b"POST", b"/echo", b"a", (b"content-length", b"5"),
            (b"transfer-encoding", b"chunked")), (b"hello",), expect="reject"),
        v("connection", _request(b"GET", b"/echo", b"a", (b"connection", b"close")),
          expect="reject"),
        v("keep-alive", _request(b"GET", b"/echo", b"a", (b"keep-alive", b"1")), expect="reject"),
        v("proxy-connection", _request(b"GET", b"/echo", b"a", (b"proxy-connection", b"x")),
          expect="reject"),
        v("upgrade websocket", _request(b"GET", b"/echo", b"a", (b"connection", b"upgrade"),
                                        (b"upgrade", b"websocket")), expect="reject"),
        v("upgrade h2c", _request(b"GET", b"/echo", b"a", (b"upgrade", b"h2c")), expect="reject"),
        v("te gzip", _request(b"GET", b"/echo", b"a", (b"te", b"gzip")), expect="reject"),
        v("te trailers, gzip", _request(b"GET", b"/echo", b"a", (b"te", b"trailers, gzip")),
          expect="reject"),
        # :path.
        v(":path with a space", _request(path=b"/echo x"), expect="reject"),
        v(":path with a tab", _request(path=b"/echo\tx"), expect="reject"),
        v(":path without /", _request(path=b"echo"), expect="reject"),
        v(":path absolute-form", _request(path=b"http://evil/echo"), expect="reject"),
        v(":path authority-form", _request(path=b"evil:80"), expect="reject"),
        v(":path * for GET", _request(path=b"*"), expect="reject"),
        v(":path empty", _request(path=b""), expect="reject"),
        v(":path with a fragment", _request(path=b"/echo#x"), expect="reject"),
        # :authority and host.
        v("host disagrees with :authority", _request(b"GET", b"/echo", b"a", (b"host", b"evil")),
          expect="reject"),
        v("two host headers", ((b":method", b"GET"), (b":scheme", b"http"), (b":path", b"/echo"),
                               (b"host", b"a"), (b"host", b"evil")), expect="reject"),
        v(":authority with a path", _request(authority=b"a/b"), expect="reject"),
        v(":authority with userinfo", _request(authority=b"u@a"), expect="reject"),
        v(":authority with a space", _request(authority=b"a b"), expect="reject"),
        v("neither :authority nor host", ((b":method", b"GET"), (b":scheme", b"http"),
                                          (b":path", b"/echo")), expect="reject"),
        # Pseudo-headers.
        v("duplicated :path", (*_request(), (b":path", b"/other")), expect="reject"),
        v("duplicated :method", ((b":method", b"GET"), *_request(b"POST")), expect="reject"),
        v("duplicated :authority", (*_request(), (b":authority", b"evil")), expect="reject"),
        v("pseudo-header after a regular one", ((b":method", b"GET"), (b":scheme", b"http"),
                                                (b"x-a", b"1"), (b":authority", b"a"),
                                                (b":path", b"/echo")), expect="reject"),
        v("unknown pseudo-header", (*_request(), (b":evil", b"1")), expect="reject"),
        v(":status in a request", (*_request(), (b":status", b"200")), expect="reject"),
        v(":protocol without CONNECT", (*_request(), (b":protocol", b"websocket")),
          expect="reject"),
        v("missing :method", _request()[1:], expect="reject"),
        v("missing :scheme", (_request()[0], *_request()[2:]), expect="reject"),
        v("missing :path", _request()[:3], expect="reject"),
        v("CONNECT", ((b":method", b"CONNECT"), (b":authority", b"evil:443")), expect="reject"),
        # Reserved and forwarding headers go the way they go over HTTP/1.1.
        v("hostkit- headers", _request(b"GET", b"/echo", b"a", (b"hostkit-token", b"evil"),
                                       (b"hostkit-http-version", b"1.0")), expect="accept"),
        v("forwarding headers", _request(b"GET", b"/echo", b"a", (b"x-forwarded-for", b"6.6.6.6"),
                                         (b"forwarded", b"for=6.6.6.6")), expect="accept"),
    ]


@dataclasses.dataclass
class H2Outcome:
    vector: H2Vector
    response: H2Response
    goaway: int | None
    forwarded: int
    child_bytes: int
    divergences: list[str]

    @property
    def accepted(self) -> bool:
        return self.forwarded > 0

    @property
    def refused(self) -> bool:
        return not self.accepted and (self.response.reset is not None or self.goaway is not None
                                      or self.response.status >= 400)

    def describe(self) -> str:
        response = self.response
        return (f"{self.vector.name}: status {response.status}, reset {response.reset}, "
                f"goaway {self.goaway}, {self.forwarded} forwarded, {self.child_bytes} bytes to "
                f"the child: " + "; ".join(self.divergences))


def expected_message(vector: H2Vector) -> Message:
    """The HTTP/1.1 request the stream must reach the child as: method, ``:path``, ``Host``
    (``:authority`` or ``host``), every regular header (cookies joined, RFC 9113 §8.2.3),
    the body."""
    pseudo = {name: value for name, value in vector.headers if name.startswith(b":")}
    regular = [(n, v) for n, v in vector.headers if not n.startswith(b":") and n != b"host"]
    host = pseudo.get(b":authority") or next(v for n, v in vector.headers if n == b"host")
    cookies = [v for n, v in regular if n == b"cookie"]
    regular = [(n, v) for n, v in regular if n != b"cookie"]
    if cookies:
        regular.append((b"cookie", b"; ".join(cookies)))
    return Message(pseudo[b":method"], pseudo[b":path"], ((b"host", host), *regular),
                   b"".join(vector.data))


def check(front: RecordingFront, vector: H2Vector) -> H2Outcome:
    """Send ``vector`` and compare what the child received with it."""
    with H2Client("127.0.0.1", front.port, timeout=_WAIT) as client:
        stream_id = client.h2.get_next_available_stream_id()
        response = client.responses.setdefault(stream_id, H2Response(stream_id))
        client.h2.send_headers(stream_id, list(vector.headers),
                               end_stream=not vector.data and vector.trailers is None)
        client.flush()
        for index, data in enumerate(vector.data):
            last = index == len(vector.data) - 1 and vector.trailers is None
            client.h2.send_data(stream_id, data, end_stream=last)
            client.flush()
        if vector.trailers is not None:
            client.h2.send_headers(stream_id, list(vector.trailers), end_stream=True)
            client.flush()
        client.wait(lambda: response.done or client.goaway is not None, _WAIT)
        goaway = client.goaway
    front.fence()
    records = front.log.read()
    touched = list(dict.fromkeys(connection for connection, _ in records))
    child_bytes = sum(len(data) for _, data in records if data)
    received: list[Message] = []
    divergences: list[str] = []
    deadline = time.monotonic() + _SETTLE
    for connection in touched:
        messages, problem = front._settle(connection, deadline)
        received += messages
        if problem:
            divergences.append(problem)
    from_child = response.header(b"x-recorder-serial") is not None
    if len(received) > 1:
        divergences.append(f"the child completed {len(received)} requests for one stream")
    if len(received) != int(from_child):
        divergences.append(f"the child completed {len(received)} requests, the client got "
                           f"{int(from_child)} answers from it")
    if received:
        divergences += _same_request(expected_message(vector), received[0], added=ADDED)
    elif not (response.reset is not None or goaway is not None or response.status >= 400):
        divergences.append(f"nothing forwarded, but no refusal: status {response.status}")
    if vector.expect == "reject" and received:
        divergences.append("expected the front to refuse it")
    if vector.expect == "accept" and not from_child:
        divergences.append("expected it forwarded")
    return H2Outcome(vector, response, goaway, len(received), child_bytes, divergences)


@dataclasses.dataclass
class Figures:
    backend: str
    outcomes: list[H2Outcome]

    @property
    def divergent(self) -> list[H2Outcome]:
        return [o for o in self.outcomes if o.divergences]

    def lines(self) -> list[str]:
        refused = [o for o in self.outcomes if o.refused]
        how = collections.Counter(
            "RST_STREAM" if o.response.reset is not None else
            f"GOAWAY {o.goaway}" if o.goaway is not None else str(o.response.status)
            for o in refused)
        return [f"h2 smuggling ({self.backend}): {len(self.outcomes)} vectors, "
                f"{len(self.divergent)} divergences; "
                f"{sum(o.accepted for o in self.outcomes)} forwarded, {len(refused)} refused ("
                + ", ".join(f"{n}x {k}" for k, n in sorted(how.items())) + f") with "
                f"{sum(o.child_bytes > 0 for o in refused)} bytes-to-the-child cases",
                *(f"  DIVERGENCE {o.describe()}" for o in self.divergent)]

    def problems(self) -> list[str]:
        return [o.describe() for o in self.divergent]


def run(backend: str) -> Figures:
    front = RecordingFront(backend)
    with front:
        return Figures(backend, [check(front, vector) for vector in vectors()])


if __name__ == "__main__":
    failed = False
    for name in ("asyncio", "trio"):
        figures = run(name)
        print("\n".join(figures.lines()), flush=True)
        failed = failed or bool(figures.problems())
    raise SystemExit(1 if failed else 0)
