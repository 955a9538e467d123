"""The bytes the module writes: request heads to a child, and responses to a client.

Everything written here comes from values a parser has already checked (h11 for a client's
request, llhttp for a child's response) or from the module's own fixed ASCII, so it is put
together without checking it again. Only h11 reads what clients send; the responses are
written here, not through a second h11 state machine, which would check again what a parser
checked already, at a cost a proxy pays on every request.

A response's framing follows RFC 9112 §6 the way h11 applies it to the responses it sends:

- 204, 304 and any response to ``HEAD`` have no body, whatever their headers say;
- a ``Content-Length`` is kept and the body written as it comes;
- without one, an HTTP/1.1 client gets ``Transfer-Encoding: chunked``, and an HTTP/1.0 client
  gets the body delimited by the end of the connection (``Connection: close``);
- ``Connection: close`` is added whenever the connection ends after the response.

The status line carries the child's reason phrase when its server sent one (a phrase the app
may have chosen), else the standard one (:func:`hostkit.plugin.status_line`), as uvicorn, nginx and IIS send.
"""

from __future__ import annotations

from collections.abc import Sequence

from hostkit.plugin import status_line

Header = tuple[bytes, bytes]

#: How a response's body is written (the second item :func:`response_head` returns).
BODY_NONE = 0  #: nothing of it (HEAD, 204, 304)
BODY_AS_IS = 1  #: as it comes (``Content-Length``, or delimited by the end of the connection)
BODY_CHUNKED = 2  #: in chunks, ended by :data:`LAST_CHUNK`

LAST_CHUNK = b"0\r\n\r\n"

_NO_BODY_STATUSES = frozenset({204, 304})
CONTINUE = status_line(100, b"") + b"\r\n"


def request_head(method: bytes, target: bytes, headers: list[Header]) -> bytes:
    """The request line and headers of a request to a child."""
    lines = [method, b" ", target, b" HTTP/1.1\r\n"]
    for name, value in headers:
        lines += (name, b": ", value, b"\r\n")
    lines.append(b"\r\n")
    return b"".join(lines)


def chunk(data: bytes) -> bytes:
    """One chunk of a chunked body (``b""`` for no data: an empty chunk would end the body)."""
    return b"%x\r\n%s\r\n" % (len(data), data) if data else b""


def frame_body(out: bytes, pieces: Sequence[bytes], body: int) -> tuple[bytes, int]:
    """``out`` followed by the response body ``pieces`` written as ``body`` (``BODY_*``)
    says, in one new object (nothing of them for :data:`BODY_NONE`); and the size of the
    pieces' data. Called by the relay with what one read of the child's response parsed."""
    if body == BODY_NONE or not pieces:
        return out, 0
    size = 0
    if body == BODY_CHUNKED:
        parts = [out]
        for piece in pieces:
            if piece:
                size += len(piece)
                parts += (b"%x\r\n" % len(piece), piece, b"\r\n")
        return b"".join(parts), size
    if len(pieces) == 1:
        piece = pieces[0]
        return out + piece if out else piece, len(piece)
    for piece in pieces:
        size += len(piece)
    return b"".join([out, *pieces]), size


def informational_head(status: int, reason: bytes, headers: list[Header]) -> bytes:
    """The head of a 1xx response (the module forwards only a WebSocket handshake's 101);
    ``reason`` as for :func:`status_line`."""
    lines = [status_line(status, reason)]
    for name, value in headers:
        lines += (name, b": ", value, b"\r\n")
    lines.append(b"\r\n")
    return b"".join(lines)


def response_head(status: int, reason: bytes, headers: list[Header], *, method: bytes,
                  http_11: bool, close: bool) -> tuple[bytes, int, bool]:
    """The status line and headers of a final response to a client, framed as the module
    docstring says.

    ``reason`` is the child's phrase (``b""`` for none: :func:`status_line`); ``headers``
    carry no hop-by-hop header (:func:`.header_rules.response_headers`); ``method`` is the
    request's (``b""`` when none was parsed); ``http_11`` is whether the client speaks
    HTTP/1.1; ``close`` whether the connection ends after this response anyway.

    Returns the head, how to write the body (``BODY_*``), and whether the connection ends
    after the response (``close``, or a body only the end of the connection can delimit).
    """
    lines = [status_line(status, reason)]
    has_length = False
    for name, value in headers:
        if name == b"content-length":
            has_length = True
        lines += (name, b": ", value, b"\r\n")
    if status in _NO_BODY_STATUSES:
        body = BODY_NONE
    elif has_length:
        body = BODY_AS_IS
    elif http_11:
        lines.append(b"transfer-encoding: chunked\r\n")
        body = BODY_CHUNKED
    else:
        body = BODY_AS_IS
        close = close or method != b"HEAD"
    if method == b"HEAD":
        body = BODY_NONE
    if close:
        lines.append(b"connection: close\r\n")
    lines.append(b"\r\n")
    return b"".join(lines), body, close


def own_response(status: int, body: bytes, *, content_type: bytes,
                 extra: list[Header], method: bytes, http_11: bool,
                 close: bool) -> tuple[bytes, bool]:
    """A whole response of the module's own (an error page, a 401, a refusal): ``body`` with
    its ``Content-Length`` (and ``content_type`` when there is a body), then ``extra``
    headers, framed by :func:`response_head` (so without the body for ``HEAD``).

    Returns the bytes and whether the connection ends after them.
    """
    headers = [(b"content-length", str(len(body)).encode())]
    if body:
        headers.append((b"content-type", content_type))
    headers += extra
    out, framing, close = response_head(status, b"", headers, method=method, http_11=http_11,
                                        close=close)
    if framing != BODY_NONE:
        out += body
    return out, close
