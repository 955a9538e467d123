"""Generated request vectors: valid requests, then byte-level mutations of them (hypothesis).

:func:`requests` draws one to three pipelined, valid HTTP/1.1 requests (any method token,
Content-Length or chunked bodies with extensions and trailers, forwarding and reserved
headers among the others); :func:`mutated_requests` then applies up to three mutations chosen
from the ones that break framing in practice: inserting CR, LF, NUL, SP, HTAB, commas,
semicolons or whole framing lines, deleting or replacing a byte, duplicating or dropping a
line, changing case, truncating.
"""

from __future__ import annotations

from hypothesis import strategies as st

_METHODS = (b"GET", b"POST", b"PUT", b"DELETE", b"PATCH", b"OPTIONS", b"HEAD", b"PROPFIND",
            b"PURGE", b"X-CUSTOM")
_NAMES = (b"Accept", b"User-Agent", b"Cookie", b"X-Test", b"Content-Type", b"Authorization",
          b"X-Forwarded-For", b"X-Forwarded-Proto", b"X-Forwarded-Host", b"Forwarded",
          b"X-Real-IP", b"Hostkit-Token", b"Hostkit-Identity", b"hostkit_client_cert",
          b"Connection", b"Keep-Alive", b"TE", b"Trailer", b"Upgrade", b"Expect", b"Via")
_FRAGMENTS = (b"\r", b"\n", b"\r\n", b" ", b"\t", b"\x00", b":", b",", b";", b"0", b"\x7f",
              b"\xff", b"\x0b", b"\r\n\r\n", b"Transfer-Encoding: chunked\r\n",
              b"Content-Length: 0\r\n", b"Content-Length: 5\r\n", b"Host: evil\r\n",
              b"0\r\n\r\n", b"GET /smuggled HTTP/1.1\r\nHost: a\r\n\r\n", b"\r\n ")

_token = st.text(alphabet="abcdefghijklmnopqrstuvwxyz-", min_size=1, max_size=12).map(
    lambda text: text.encode("ascii"))
_value = st.text(alphabet="abcdefghijklmnopqrstuvwxyz0123456789 ,;=/.-_\"", max_size=24).map(
    lambda text: text.strip().encode("ascii"))
_target = st.sampled_from([b"/", b"/echo", b"/a/b?c=d", b"/%20", b"*"]) | st.builds(
    lambda path: b"/" + path, _token)


@st.composite
def _chunked(draw: st.DrawFn, body: bytes) -> bytes:
    cuts = sorted(draw(st.lists(st.integers(0, len(body)), max_size=4)))
    pieces = [body[a:b] for a, b in zip([0, *cuts], [*cuts, len(body)]) if b > a]
    out = b""
    for piece in pieces:
        extension = draw(st.sampled_from([b"", b";a", b";a=b", b";a=\"q\""]))
        out += b"%x%s\r\n%s\r\n" % (len(piece), extension, piece)
    trailers = draw(st.lists(st.tuples(st.sampled_from(_NAMES), _value), max_size=2))
    return out + b"0\r\n" + b"".join(n + b": " + v + b"\r\n" for n, v in trailers) + b"\r\n"


@st.composite
def request(draw: st.DrawFn) -> bytes:
    """One valid request."""
    method = draw(st.sampled_from(_METHODS))
    target = draw(_target)
    if target == b"*":
        method = b"OPTIONS"
    headers = [(b"Host", draw(st.sampled_from([b"a", b"a:8080", b"example.com"])))]
    headers += draw(st.lists(st.tuples(st.sampled_from(_NAMES) | _token, _value), max_size=5))
    body = draw(st.binary(max_size=40)) if method not in (b"GET", b"HEAD") else b""
    framing = draw(st.sampled_from(["length", "chunked"])) if body else "none"
    if framing == "length":
        headers.append((b"Content-Length", str(len(body)).encode()))
        encoded = body
    elif framing == "chunked":
        headers.append((b"Transfer-Encoding", b"chunked"))
        encoded = draw(_chunked(body))
    else:
        encoded = b""
    head = b"%s %s HTTP/1.1\r\n" % (method, target)
    head += b"".join(name + b": " + value + b"\r\n" for name, value in headers)
    return head + b"\r\n" + encoded


def requests() -> st.SearchStrategy[bytes]:
    """One to three valid requests, pipelined."""
    return st.lists(request(), min_size=1, max_size=3).map(b"".join)


@st.composite
def _mutate(draw: st.DrawFn, data: bytes) -> bytes:
    kind = draw(st.sampled_from(["insert", "delete", "replace", "duplicate-line",
                                 "drop-line", "case", "truncate"]))
    if not data:
        return data
    at = draw(st.integers(0, len(data) - 1))
    if kind == "insert":
        return data[:at] + draw(st.sampled_from(_FRAGMENTS)) + data[at:]
    if kind == "delete":
        return data[:at] + data[at + 1:]
    if kind == "replace":
        return data[:at] + draw(st.sampled_from(_FRAGMENTS)) + data[at + 1:]
    if kind == "truncate":
        return data[:at]
    lines = data.split(b"\r\n")
    index = draw(st.integers(0, len(lines) - 1))
    if kind == "duplicate-line":
        lines.insert(index, lines[index])
    elif kind == "drop-line":
        del lines[index]
    else:
        lines[index] = lines[index].swapcase()
    return b"\r\n".join(lines)


@st.composite
def mutated_requests(draw: st.DrawFn) -> bytes:
    """Valid requests with one to three mutations applied."""
    data = draw(requests())
    for _ in range(draw(st.integers(1, 3))):
        data = draw(_mutate(data))
    return data
