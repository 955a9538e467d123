"""Hand-written raw-byte request vectors for the smuggling suite.

Each :class:`Vector` is what one client sends on a fresh connection, in one write. ``expect``
is ``"reject"`` when the module must refuse the (first) request, ``"accept"`` when it must
forward it, and ``None`` when either is allowed as long as the module and the child read the
bytes the same way (the suite checks that for every vector).

Categories follow the usual desync literature (Kettle's "HTTP Desync Attacks", the
RFC 9112 §6.3 framing rules, and the h11 / llhttp advisories): CL.TE and TE.CL, repeated or
malformed Content-Length, Transfer-Encoding obfuscations, chunk-size tricks, bare LF in chunk
lines, chunk data without its CRLF, trailers that would change framing or identity, pipelining,
obs-fold, CR and NUL where they do not belong, bad request lines, Host problems and
absolute-form targets.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator


@dataclasses.dataclass(frozen=True)
class Vector:
    """One attack (or control) input."""

    category: str
    name: str
    data: bytes
    expect: str | None = None


def crlf(*lines: bytes) -> bytes:
    """Lines joined with CRLF; the empty line that ends the head must be given."""
    return b"\r\n".join(lines)


def head(*lines: bytes, method: bytes = b"POST", target: bytes = b"/echo") -> bytes:
    """A request head with ``Host: a`` and ``lines``, ending with the blank line."""
    return crlf(method + b" " + target + b" HTTP/1.1", b"Host: a", *lines, b"", b"")


SMUGGLED = b"GET /smuggled HTTP/1.1\r\nHost: a\r\n\r\n"
CHUNKED_HELLO = b"5\r\nhello\r\n0\r\n\r\n"


def _cl_te() -> Iterator[Vector]:
    c = "cl-te"
    yield Vector(c, "CL then TE", head(b"Content-Length: 6", b"Transfer-Encoding: chunked")
                 + b"0\r\n\r\nX", "reject")
    yield Vector(c, "TE then CL", head(b"Transfer-Encoding: chunked", b"Content-Length: 6")
                 + b"0\r\n\r\nX", "reject")
    yield Vector(c, "CL.TE smuggle", head(b"Content-Length: 44", b"Transfer-Encoding: chunked")
                 + b"0\r\n\r\n" + SMUGGLED, "reject")
    yield Vector(c, "TE.CL smuggle", head(b"Content-Length: 4", b"Transfer-Encoding: chunked")
                 + b"5c\r\n" + SMUGGLED + b"\r\n0\r\n\r\n", "reject")
    yield Vector(c, "CL 0 with TE", head(b"Content-Length: 0", b"Transfer-Encoding: chunked")
                 + b"0\r\n\r\n", "reject")
    yield Vector(c, "TE with CL 0 after", head(b"Transfer-Encoding: chunked",
                                               b"Content-Length: 0") + b"0\r\n\r\n", "reject")
    for te in (b"chunked", b"CHUNKED", b"Chunked", b" chunked", b"chunked ", b"\tchunked",
               b"identity", b"gzip, chunked", b"chunked, chunked", b"x"):
        yield Vector(c, f"CL with TE {te!r}", head(b"Content-Length: 5",
                                                   b"Transfer-Encoding: " + te)
                     + b"hello", "reject")
    for spelled in (b"content-length: 5", b"CONTENT-LENGTH: 5", b"Content-length: 5"):
        yield Vector(c, f"TE with {spelled!r}", head(b"Transfer-Encoding: chunked", spelled)
                     + CHUNKED_HELLO, "reject")
    yield Vector(c, "GET with CL and TE", head(b"Content-Length: 5", b"Transfer-Encoding: chunked",
                                               method=b"GET") + b"0\r\n\r\n", "reject")
    yield Vector(c, "HTTP/1.0 CL and TE",
                 crlf(b"POST /echo HTTP/1.0", b"Host: a", b"Content-Length: 5",
                      b"Transfer-Encoding: chunked", b"", b"") + CHUNKED_HELLO, "reject")
    yield Vector(c, "TE in a folded line after CL",
                 head(b"Content-Length: 5", b"X: y", b" Transfer-Encoding: chunked")
                 + b"hello", "reject")
    yield Vector(c, "CL and TE under other names",
                 head(b"Content_Length: 5", b"Transfer_Encoding: chunked") + b"", None)
    yield Vector(c, "TE duplicate with CL",
                 head(b"Transfer-Encoding: chunked", b"Transfer-Encoding: chunked",
                      b"Content-Length: 5") + CHUNKED_HELLO, "reject")


def _content_length() -> Iterator[Vector]:
    c = "content-length"
    valid = (b"hello", b"Content-Length: 5")
    yield Vector(c, "valid CL (control)", head(valid[1]) + valid[0], "accept")
    yield Vector(c, "CL 0 (control)", head(b"Content-Length: 0"), "accept")
    for first, second in ((b"5", b"5"), (b"5", b"6"), (b"6", b"5"), (b"0", b"5"), (b"5", b"0"),
                          (b"5", b"05"), (b"5", b" 5"), (b"5", b"")):
        yield Vector(c, f"two CL {first!r} {second!r}",
                     head(b"Content-Length: " + first, b"Content-Length: " + second) + b"hello",
                     "reject")
    yield Vector(c, "three CL", head(b"Content-Length: 5", b"Content-Length: 5",
                                     b"Content-Length: 5") + b"hello", "reject")
    yield Vector(c, "CL differently cased twice",
                 head(b"Content-Length: 5", b"content-length: 5") + b"hello", "reject")
    for value in (b"5, 5", b"5,5", b"5, 6", b"5 5", b"+5", b"-5", b"0x5", b"5.0", b"5e0",
                  b"five", b"", b" ", b"5a", b"a5", b"0005a", b"\x005",
                  b"99999999999999999999999999", b"-0", b"5;", b"5\t6", b"1_0", b"\xd9\xa5"):
        yield Vector(c, f"CL {value!r}", head(b"Content-Length: " + value) + b"hello", "reject")
    for value in (b"05", b"005", b"0000000000000000000005"):
        yield Vector(c, f"CL with leading zeros {value!r}",
                     head(b"Content-Length: " + value) + b"hello", None)
    for value in (b"5 ", b" 5", b"\t5", b"5\t"):
        yield Vector(c, f"CL with OWS {value!r}", head(b"Content-Length:" + value) + b"hello",
                     None)
    yield Vector(c, "CL shorter than body: rest is a request",
                 head(b"Content-Length: 5") + b"hello" + SMUGGLED, None)
    yield Vector(c, "CL 0 then smuggled request", head(b"Content-Length: 0") + SMUGGLED, None)
    yield Vector(c, "CL longer than body (client stops)", head(b"Content-Length: 50") + b"hello",
                 None)
    yield Vector(c, "CL on GET with smuggled body",
                 head(b"Content-Length: %d" % len(SMUGGLED), method=b"GET") + SMUGGLED, None)
    yield Vector(c, "CL on HEAD", head(b"Content-Length: 5", method=b"HEAD") + b"hello", None)
    yield Vector(c, "space before colon", head(b"Content-Length : 5") + b"hello", "reject")
    yield Vector(c, "tab before colon", head(b"Content-Length\t: 5") + b"hello", "reject")
    yield Vector(c, "CL name with NUL", head(b"Content-Length\x00: 5") + b"hello", "reject")
    yield Vector(c, "CL in a folded continuation", head(b"X: a", b" Content-Length: 5")
                 + b"hello", "reject")
    yield Vector(c, "CL split by obs-fold", head(b"Content-Length:", b" 5") + b"hello", "reject")


# Hand-picked Transfer-Encoding values: only the exact token "chunked" frames a body.
_TE_VALUES = (
    b"chunked ", b" chunked", b"\tchunked", b"chunked\t", b"CHUNKED", b"Chunked", b"chUnked",
    b"xchunked", b"chunkedx", b"chunked-false", b"chunk", b"chunke", b"\"chunked\"",
    b"'chunked'", b"chunked;", b"chunked; q=1", b"chunked;foo=bar", b"identity",
    b"identity, chunked", b"chunked, identity", b"gzip, chunked", b"chunked, gzip",
    b"deflate", b"compress", b"gzip", b"chunked,", b",chunked", b", chunked", b"chunked,,",
    b"chunked, chunked", b"x, chunked", b"\x0bchunked", b"\x0cchunked", b"chunked\x0b",
    b"\xa0chunked", b"ch\x00unked", b"chunked\x00", b"c\xc3\xa4unked", b"chunked\r",
    b"", b" ", b"*", b"chunked chunked", b"cHuNkEd ",
)


def _transfer_encoding() -> Iterator[Vector]:
    c = "transfer-encoding"
    yield Vector(c, "chunked (control)", head(b"Transfer-Encoding: chunked") + CHUNKED_HELLO,
                 "accept")
    for value in _TE_VALUES:
        yield Vector(c, f"TE {value!r}", head(b"Transfer-Encoding: " + value) + CHUNKED_HELLO,
                     None)
    yield Vector(c, "TE twice", head(b"Transfer-Encoding: chunked",
                                     b"Transfer-Encoding: chunked") + CHUNKED_HELLO, "reject")
    yield Vector(c, "TE then identity", head(b"Transfer-Encoding: chunked",
                                             b"Transfer-Encoding: identity") + CHUNKED_HELLO,
                 "reject")
    yield Vector(c, "TE identity then chunked", head(b"Transfer-Encoding: identity",
                                                     b"Transfer-Encoding: chunked")
                 + CHUNKED_HELLO, "reject")
    yield Vector(c, "TE name with underscore", head(b"Transfer_Encoding: chunked")
                 + CHUNKED_HELLO, None)
    yield Vector(c, "TE name with space before colon", head(b"Transfer-Encoding : chunked")
                 + CHUNKED_HELLO, "reject")
    yield Vector(c, "TE name prefixed by space (obs-fold)",
                 crlf(b"POST /echo HTTP/1.1", b"Host: a", b" Transfer-Encoding: chunked", b"",
                      b"") + CHUNKED_HELLO, "reject")
    yield Vector(c, "TE folded value", head(b"Transfer-Encoding:", b" chunked")
                 + CHUNKED_HELLO, "reject")
    yield Vector(c, "TE value folded after chunked", head(b"Transfer-Encoding: chunked",
                                                          b" , identity") + CHUNKED_HELLO, "reject")
    yield Vector(c, "TE on HTTP/1.0", crlf(b"POST /echo HTTP/1.0", b"Host: a",
                                           b"Transfer-Encoding: chunked", b"", b"")
                 + CHUNKED_HELLO, "reject")
    yield Vector(c, "TE on GET", head(b"Transfer-Encoding: chunked", method=b"GET")
                 + CHUNKED_HELLO, None)
    yield Vector(c, "TE line with bare LF before it",
                 b"POST /echo HTTP/1.1\r\nHost: a\r\nX: y\nTransfer-Encoding: chunked\r\n\r\n"
                 + CHUNKED_HELLO, None)
    yield Vector(c, "TE header with CR inside name",
                 head(b"Transfer-\rEncoding: chunked") + CHUNKED_HELLO, "reject")


def _chunk_sizes() -> Iterator[Vector]:
    c = "chunk-size"
    te = head(b"Transfer-Encoding: chunked")
    sizes = (
        (b"0x5", "reject"), (b"+5", "reject"), (b"-5", "reject"), (b" 5", "reject"),
        (b"5 ", None), (b"5\t", None), (b"05", "accept"), (b"00000000000000000005", None),
        # h11 reads sizes of up to 20 hex digits and waits for that much data; a size of
        # 2^63 or more is refused at once (hostkit/request_rules.py, both models).
        (b"ffffffffffffffff5", "reject"), (b"10000000000000005", "reject"),
        # h11 accepts any chunk extension up to the CRLF; the module never forwards one.
        (b"5;", None), (b"5;ext", "accept"), (b"5;ext=1", "accept"),
        (b"5;ext=\"q\"", "accept"), (b"5 ;ext", None), (b"5;ext=\"a\rb\"", None),
        (b"5;ext\x00", None), (b"5;\n", "reject"), (b"5\x00", "reject"),
        (b"", "reject"), (b"g", "reject"), (b"5g", "reject"), (b"\x005", "reject"),
        (b"5\x0b", "reject"), (b"5_0", "reject"), (b"0005;a=b;c=d", "accept"),
    )
    for size, expect in sizes:
        yield Vector(c, f"chunk size {size!r}", te + size + b"\r\nhello\r\n0\r\n\r\n", expect)
    yield Vector(c, "uppercase hex", te + b"A\r\n0123456789\r\n0\r\n\r\n", "accept")
    yield Vector(c, "size says less than data", te + b"3\r\nhello\r\n0\r\n\r\n", "reject")
    yield Vector(c, "size says more than data then request",
                 te + b"50\r\nhello\r\n0\r\n\r\n" + SMUGGLED, None)
    yield Vector(c, "last chunk with extension", te + b"5\r\nhello\r\n0;x=y\r\n\r\n", "accept")
    yield Vector(c, "last chunk 000", te + b"5\r\nhello\r\n000\r\n\r\n", "accept")
    yield Vector(c, "last chunk with space", te + b"5\r\nhello\r\n0 \r\n\r\n", None)
    yield Vector(c, "smuggle in last-chunk extension",
                 te + b"0;x=\"\r\n" + SMUGGLED + b"\"\r\n\r\n", "reject")
    yield Vector(c, "many small chunks", te + b"1\r\na\r\n" * 40 + b"0\r\n\r\n", "accept")
    yield Vector(c, "zero-size chunk in the middle",
                 te + b"2\r\nhe\r\n0\r\n\r\n3\r\nllo\r\n0\r\n\r\n", None)
    yield Vector(c, "huge extension", te + b"5;" + b"x" * 20000 + b"\r\nhello\r\n0\r\n\r\n",
                 None)
    yield Vector(c, "chunk size overflowing 64 bits to 5",
                 te + b"10000000000000005\r\nhello\r\n0\r\n\r\n", "reject")


def _bare_lf_in_chunks() -> Iterator[Vector]:
    c = "bare-lf-chunks"
    te = head(b"Transfer-Encoding: chunked")
    # h11 ends chunk lines only at CRLF: a size line ended by a bare LF runs on into the next
    # line and fails there, or waits for a CRLF that never comes (no answer, nothing
    # forwarded past the last well-formed chunk). In the trailer section a bare LF is a line
    # end (RFC 9112 §2.2 allows a recipient to accept it).
    bodies = (
        (b"5\nhello\r\n0\r\n\r\n", "reject"), (b"5\r\nhello\n0\r\n\r\n", "reject"),
        (b"5\r\nhello\r\n0\n\r\n", "reject"), (b"5\r\nhello\r\n0\r\n\n", None),
        (b"5\nhello\n0\n\n", None), (b"5\r\nhello\r\n0\n\n", None),
        (b"5;a\nhello\r\n0\r\n\r\n", "reject"), (b"5\r\rhello\r\n0\r\n\r\n", "reject"),
        (b"5\r\nhello\r\r0\r\n\r\n", "reject"), (b"5\r\nhello\r\n0\r\r\n", "reject"),
        (b"5\n\rhello\r\n0\r\n\r\n", "reject"),
        (b"5\r\nhello\r\n0\r\nX: y\n\r\n", None),
        (b"5\r\nhello\r\n0\r\nX: y\r\n\n", None),
        (b"2\nhe\r\n3\r\nllo\r\n0\r\n\r\n", "reject"),
        (b"0\n\n" + SMUGGLED, "reject"),
    )
    for body, expect in bodies:
        yield Vector(c, f"chunks {body[:24]!r}", te + body, expect)


def _chunk_data_without_crlf() -> Iterator[Vector]:
    c = "chunk-data-crlf"
    te = head(b"Transfer-Encoding: chunked")
    bodies = (
        b"5\r\nhelloXX0\r\n\r\n", b"5\r\nhello0\r\n\r\n", b"5\r\nhello\r0\r\n\r\n",
        b"5\r\nhello\n\r0\r\n\r\n", b"5\r\nhello  \r\n0\r\n\r\n", b"5\r\nhelloX\r\n0\r\n\r\n",
        b"5\r\nhell\r\n0\r\n\r\n", b"3\r\nhello\r\n0\r\n\r\n",
        b"5\r\nhello\r\n5\r\nworld0\r\n\r\n", b"5\r\nhello\x00\x000\r\n\r\n",
        b"5\r\nhelloGET /smuggled HTTP/1.1\r\nHost: a\r\n\r\n0\r\n\r\n",
        b"5\r\nhello\r\n0\r\n\r\nX", b"5\r\nhello\r\n0\r\n",
        b"1\r\nAB\r\n0\r\n\r\n", b"0\r\nhello\r\n\r\n",
    )
    for body in bodies:
        yield Vector(c, f"chunks {body[:24]!r}", te + body,
                     None if body.endswith((b"\r\n0\r\n", b"\r\n\r\nX")) else "reject")


def _trailers() -> Iterator[Vector]:
    c = "trailers"
    te = head(b"Transfer-Encoding: chunked", b"Trailer: X-Check")
    for trailer in (b"X-Check: 1", b"Content-Length: 44", b"Transfer-Encoding: chunked",
                    b"Host: evil", b"Hostkit-Token: forged", b"hostkit_identity: admin",
                    b"Hostkit-Client-Cert: AAAA", b"X-Forwarded-For: 10.0.0.1",
                    b"X-Forwarded-Proto: https", b"Forwarded: for=10.0.0.1",
                    b"X-Real-IP: 10.0.0.1", b"Connection: close", b"Authorization: Basic eA==",
                    b"Cookie: a=b", b"Content-Type: text/evil", b"Expect: 100-continue",
                    b"Trailer: Content-Length", b"Upgrade: websocket",
                    b"Set-Cookie: x=y", b"Content-Encoding: gzip"):
        yield Vector(c, f"trailer {trailer!r}", te + b"5\r\nhello\r\n0\r\n" + trailer
                     + b"\r\n\r\n", None)
    yield Vector(c, "trailer then smuggled request",
                 te + b"0\r\nX-Check: 1\r\n\r\n" + SMUGGLED, None)
    yield Vector(c, "trailer with bare LF", te + b"0\r\nX-Check: 1\n\r\n", None)
    yield Vector(c, "trailer without colon", te + b"0\r\nX-Check\r\n\r\n", "reject")
    yield Vector(c, "trailer folded", te + b"0\r\nX-Check: 1\r\n folded\r\n\r\n", None)
    yield Vector(c, "trailer with NUL", te + b"0\r\nX-Check: 1\x002\r\n\r\n", "reject")


def _pipelining() -> Iterator[Vector]:
    c = "pipelining"
    get = b"GET /echo HTTP/1.1\r\nHost: a\r\n\r\n"
    post = head(b"Content-Length: 5") + b"hello"
    chunked = head(b"Transfer-Encoding: chunked") + CHUNKED_HELLO
    yield Vector(c, "two GETs", get * 2, "accept")
    yield Vector(c, "five GETs", get * 5, "accept")
    yield Vector(c, "GET then POST", get + post, "accept")
    yield Vector(c, "POST then GET", post + get, "accept")
    yield Vector(c, "chunked then GET", chunked + get, "accept")
    yield Vector(c, "GET then chunked then POST", get + chunked + post, "accept")
    yield Vector(c, "GET then CL+TE", get + head(b"Content-Length: 5",
                                                 b"Transfer-Encoding: chunked") + b"0\r\n\r\n",
                 None)
    yield Vector(c, "GET then bad request line", get + b"GET / HTTP/1.1 X\r\nHost: a\r\n\r\n",
                 None)
    yield Vector(c, "GET then junk", get + b"\x00\x01\x02\r\n\r\n", None)
    yield Vector(c, "GET with Connection: close then GET",
                 b"GET /echo HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n" + get, None)
    yield Vector(c, "HTTP/1.0 then GET", b"GET /echo HTTP/1.0\r\nHost: a\r\n\r\n" + get, None)
    yield Vector(c, "HTTP/1.0 keep-alive then GET",
                 b"GET /echo HTTP/1.0\r\nHost: a\r\nConnection: keep-alive\r\n\r\n" + get, None)
    yield Vector(c, "HEAD then GET", b"HEAD /echo HTTP/1.1\r\nHost: a\r\n\r\n" + get, "accept")
    yield Vector(c, "HEAD with CL then GET",
                 b"HEAD /echo HTTP/1.1\r\nHost: a\r\nContent-Length: 0\r\n\r\n" + get, None)
    yield Vector(c, "CRLF between requests", get + b"\r\n" + get, None)
    yield Vector(c, "two CRLFs between requests", get + b"\r\n\r\n" + get, None)
    yield Vector(c, "LF between requests", get + b"\n" + get, None)
    yield Vector(c, "space between requests", get + b" " + get, None)
    yield Vector(c, "leading CRLF", b"\r\n" + get, None)
    yield Vector(c, "Expect 100-continue with body then GET",
                 head(b"Content-Length: 5", b"Expect: 100-continue") + b"hello" + get, None)
    yield Vector(c, "OPTIONS * then GET", b"OPTIONS * HTTP/1.1\r\nHost: a\r\n\r\n" + get, None)
    yield Vector(c, "Upgrade h2c then GET",
                 b"GET /echo HTTP/1.1\r\nHost: a\r\nConnection: Upgrade, HTTP2-Settings\r\n"
                 b"Upgrade: h2c\r\nHTTP2-Settings: AAMAAABkAAQAAP__\r\n\r\n" + get, None)
    yield Vector(c, "websocket upgrade then GET",
                 b"GET /echo HTTP/1.1\r\nHost: a\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n"
                 b"Sec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
                 b"\r\n" + get, None)
    yield Vector(c, "CONNECT then GET", b"CONNECT a:443 HTTP/1.1\r\nHost: a:443\r\n\r\n" + get,
                 "reject")
    yield Vector(c, "PRI preface", b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n", "reject")


def _obs_fold() -> Iterator[Vector]:
    c = "obs-fold"
    for lines in ((b"X: a", b" b"), (b"X: a", b"\tb"), (b"X: a", b"  "), (b"X:", b" a"),
                  (b"X: a", b" b", b" c"), (b"Host-Extra: a", b" Host: evil"),
                  (b"X: a", b" Hostkit-Token: forged"), (b"X: a", b" X-Forwarded-For: 1.2.3.4"),
                  (b"X: a", b" \r\n"), (b"X: a", b"\x0bb"), (b"X: a", b"\x0cb")):
        yield Vector(c, f"fold {lines!r}", head(*lines, method=b"GET"), "reject")
    yield Vector(c, "fold as first header line",
                 b"GET /echo HTTP/1.1\r\n folded: x\r\nHost: a\r\n\r\n", "reject")
    yield Vector(c, "fold after request line",
                 b"GET /echo HTTP/1.1\r\n\tHost: a\r\n\r\n", "reject")
    yield Vector(c, "fold with bare LF", b"GET /echo HTTP/1.1\r\nHost: a\r\nX: a\n b\r\n\r\n",
                 "reject")
    yield Vector(c, "fold in Host", b"GET /echo HTTP/1.1\r\nHost: a\r\n b\r\n\r\n", "reject")


def _control_characters() -> Iterator[Vector]:
    c = "cr-nul"
    for value in (b"a\rb", b"a\x00b", b"\x00", b"a\r", b"\ra", b"a\x7f", b"a\x01b",
                  b"a\x1bb", b"a\x0bb", b"a\x0cb", b"a\r\x00"):
        yield Vector(c, f"value {value!r}", head(b"X-Test: " + value, method=b"GET"), "reject"
                     if value != b"a\x7f" else None)
    for name in (b"X\rTest", b"X\x00Test", b"X Test", b"X\tTest", b"(X)", b"X:Y", b"",
                 b"X\x7fTest", b"\xc3\xa9t\xc3\xa9", b"X@Test", b"X/Test", b"X\"T"):
        yield Vector(c, f"name {name!r}", head(name + b": v", method=b"GET"),
                     None if name in (b"X:Y",) else "reject")
    for target in (b"/a\rb", b"/a\x00b", b"/a b", b"/a\tb", b"/\x7f", b"/a\x01"):
        yield Vector(c, f"target {target!r}", crlf(b"GET " + target + b" HTTP/1.1", b"Host: a",
                                                   b"", b""), "reject")
    yield Vector(c, "CR-only line endings", b"GET /echo HTTP/1.1\rHost: a\r\r", None)
    yield Vector(c, "NUL before request", b"\x00GET /echo HTTP/1.1\r\nHost: a\r\n\r\n", "reject")
    yield Vector(c, "NUL after head", b"GET /echo HTTP/1.1\r\nHost: a\r\n\r\n\x00", None)
    yield Vector(c, "Host with CR", b"GET /echo HTTP/1.1\r\nHost: a\rX: b\r\n\r\n", "reject")
    yield Vector(c, "bare LF line endings", b"GET /echo HTTP/1.1\nHost: a\n\n", None)
    yield Vector(c, "mixed LF and CRLF", b"GET /echo HTTP/1.1\r\nHost: a\nX: b\r\n\r\n", None)


def _request_lines() -> Iterator[Vector]:
    c = "request-line"
    lines = (
        (b"GET /echo HTTP/1.1", "accept"), (b"GET /echo HTTP/1.0", None),
        (b"GET /echo HTTP/1.2", None), (b"GET /echo HTTP/2.0", "reject"),
        (b"GET /echo HTTP/0.9", "reject"), (b"GET /echo HTTP/3.0", "reject"),
        (b"GET /echo HTTP/9.9", "reject"), (b"GET /echo http/1.1", "reject"),
        (b"GET /echo HTTP/1.1 ", "reject"), (b"GET  /echo HTTP/1.1", "reject"),
        (b"GET /echo  HTTP/1.1", "reject"), (b" GET /echo HTTP/1.1", "reject"),
        (b"GET\t/echo HTTP/1.1", "reject"), (b"GET /echo\tHTTP/1.1", "reject"),
        (b"GET /echo", "reject"), (b"GET", "reject"), (b"/echo HTTP/1.1", "reject"),
        (b"GET /echo HTTP/1.1 extra", "reject"), (b"GET /echo HTTP/11", "reject"),
        (b"GET /echo HTTP/1", "reject"), (b"GET /echo HTTP/1.1.1", "reject"),
        (b"GET /echo HTTPS/1.1", "reject"), (b"G\x00T /echo HTTP/1.1", "reject"),
        (b"GE(T /echo HTTP/1.1", "reject"), (b"GET@ /echo HTTP/1.1", "reject"),
        (b"get /echo HTTP/1.1", "reject"), (b"FOO /echo HTTP/1.1", None),
        (b"GET /echo?x=1#frag HTTP/1.1", "reject"), (b"GET echo HTTP/1.1", None),
        (b"GET ../../etc/passwd HTTP/1.1", None), (b"GET //evil/x HTTP/1.1", None),
        (b"GET /%00 HTTP/1.1", None), (b"GET /\xff HTTP/1.1", None),
        (b"GET / HTTP/1.1 HTTP/1.1", "reject"), (b"DELETE * HTTP/1.1", None),
        (b"GET /" + b"a" * 20000 + b" HTTP/1.1", "reject"),
    )
    for line, expect in lines:
        yield Vector(c, f"request line {line[:40]!r}", crlf(line, b"Host: a", b"", b""), expect)
    yield Vector(c, "empty request", b"\r\n\r\n", None)
    yield Vector(c, "head too large", crlf(b"GET /echo HTTP/1.1", b"Host: a",
                                           *[b"X-%d: %s" % (i, b"v" * 100) for i in range(200)],
                                           b"", b""), "reject")
    yield Vector(c, "TLS client hello on plain HTTP",
                 b"\x16\x03\x01\x00\xa5\x01\x00\x00\xa1\x03\x03" + b"\x00" * 32, "reject")


def _host() -> Iterator[Vector]:
    c = "host"
    yield Vector(c, "no Host on 1.1", b"GET /echo HTTP/1.1\r\n\r\n", "reject")
    yield Vector(c, "no Host on 1.0", b"GET /echo HTTP/1.0\r\n\r\n", None)
    yield Vector(c, "two Host", b"GET /echo HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n", "reject")
    yield Vector(c, "two same Host", b"GET /echo HTTP/1.1\r\nHost: a\r\nHost: a\r\n\r\n",
                 "reject")
    yield Vector(c, "Host and host", b"GET /echo HTTP/1.1\r\nHost: a\r\nhost: b\r\n\r\n", "reject")
    yield Vector(c, "empty Host", b"GET /echo HTTP/1.1\r\nHost:\r\n\r\n", "reject")
    yield Vector(c, "Host list", b"GET /echo HTTP/1.1\r\nHost: a, b\r\n\r\n", "reject")
    yield Vector(c, "Host with space", b"GET /echo HTTP/1.1\r\nHost: a b\r\n\r\n", "reject")
    yield Vector(c, "Host with userinfo", b"GET /echo HTTP/1.1\r\nHost: u@a\r\n\r\n",
                 "reject")
    yield Vector(c, "Host with path", b"GET /echo HTTP/1.1\r\nHost: a/b\r\n\r\n", "reject")
    yield Vector(c, "Host with query", b"GET /echo HTTP/1.1\r\nHost: a?b\r\n\r\n", "reject")
    yield Vector(c, "Host with fragment", b"GET /echo HTTP/1.1\r\nHost: a#b\r\n\r\n",
                 "reject")
    yield Vector(c, "empty Host on 1.0", b"GET /echo HTTP/1.0\r\nHost:\r\n\r\n", "accept")
    yield Vector(c, "Host_ spelled with underscore", b"GET /echo HTTP/1.1\r\nHost: a\r\n"
                 b"Ho_st: b\r\n\r\n", None)
    yield Vector(c, "Host with port", b"GET /echo HTTP/1.1\r\nHost: a:8080\r\n\r\n", "accept")
    yield Vector(c, "Host with bad port", b"GET /echo HTTP/1.1\r\nHost: a:x\r\n\r\n", "reject")
    yield Vector(c, "IPv6 Host", b"GET /echo HTTP/1.1\r\nHost: [::1]:80\r\n\r\n", "accept")
    yield Vector(c, "X-Forwarded-Host", b"GET /echo HTTP/1.1\r\nHost: a\r\n"
                 b"X-Forwarded-Host: evil\r\n\r\n", "accept")
    yield Vector(c, "X-Host", b"GET /echo HTTP/1.1\r\nHost: a\r\nX-Host: evil\r\n\r\n", "accept")


def _absolute_form() -> Iterator[Vector]:
    c = "absolute-form"
    for target, host, expect in (
            (b"http://a/echo", b"a", "accept"), (b"http://evil/echo", b"a", None),
            (b"https://evil/echo", b"a", None), (b"http://evil:8080/echo?q=1", b"a", None),
            (b"http://u:p@evil/echo", b"a", None), (b"http://evil", b"a", None),
            (b"HTTP://EVIL/echo", b"a", None), (b"ftp://evil/echo", b"a", None),
            (b"http:/evil/echo", b"a", None), (b"http://[::1]/echo", b"a", None),
            (b"http://evil/echo", b"", None), (b"//evil/echo", b"a", None),
            (b"http://evil/%2e%2e/x", b"a", None), (b"http://a@evil/echo", b"a", None)):
        host_line = (b"Host: " + host,) if host else ()
        yield Vector(c, f"target {target!r} host {host!r}",
                     crlf(b"GET " + target + b" HTTP/1.1", *host_line, b"", b""), expect)
    yield Vector(c, "absolute-form without Host",
                 b"GET http://evil/echo HTTP/1.1\r\n\r\n", None)
    yield Vector(c, "authority-form on GET", b"GET evil:80 HTTP/1.1\r\nHost: a\r\n\r\n", None)
    yield Vector(c, "CONNECT", b"CONNECT evil:443 HTTP/1.1\r\nHost: evil:443\r\n\r\n", "reject")
    yield Vector(c, "CONNECT with body", b"CONNECT evil:443 HTTP/1.1\r\nHost: evil:443\r\n"
                 b"Content-Length: 5\r\n\r\nhello", "reject")


def _other() -> Iterator[Vector]:
    c = "other"
    yield Vector(c, "Expect 100-continue", head(b"Content-Length: 5", b"Expect: 100-continue")
                 + b"hello", "accept")
    yield Vector(c, "Expect unknown", head(b"Content-Length: 5", b"Expect: 200-ok") + b"hello",
                 None)
    yield Vector(c, "Connection names Content-Length",
                 head(b"Connection: Content-Length", b"Content-Length: 5") + b"hello", None)
    yield Vector(c, "Connection names Transfer-Encoding",
                 head(b"Connection: Transfer-Encoding", b"Transfer-Encoding: chunked")
                 + CHUNKED_HELLO, None)
    yield Vector(c, "Connection names Host", head(b"Connection: Host", method=b"GET"), None)
    yield Vector(c, "Connection names Hostkit-Token",
                 head(b"Connection: Hostkit-Token", method=b"GET"), None)
    yield Vector(c, "Connection close", head(b"Connection: close", method=b"GET"), "accept")
    yield Vector(c, "Proxy-Connection", head(b"Proxy-Connection: keep-alive", method=b"GET"),
                 "accept")
    yield Vector(c, "Keep-Alive header", head(b"Keep-Alive: timeout=100", method=b"GET"),
                 "accept")
    yield Vector(c, "TE: trailers", head(b"TE: trailers", method=b"GET"), "accept")
    yield Vector(c, "body on GET with CL", head(b"Content-Length: 5", method=b"GET") + b"hello",
                 "accept")
    yield Vector(c, "body on OPTIONS chunked", head(b"Transfer-Encoding: chunked",
                                                    method=b"OPTIONS") + CHUNKED_HELLO, "accept")
    yield Vector(c, "DELETE with body", head(b"Content-Length: 5", method=b"DELETE") + b"hello",
                 "accept")
    yield Vector(c, "100 headers", head(*[b"X-%d: v" % i for i in range(100)], method=b"GET"),
                 "accept")
    yield Vector(c, "empty header value", head(b"X-Empty:", method=b"GET"), "accept")
    yield Vector(c, "header value with obs-text", head(b"X-T: caf\xe9", method=b"GET"), "accept")
    yield Vector(c, "header value with quotes", head(b"X-T: \"a\\\"b\"", method=b"GET"),
                 "accept")
    yield Vector(c, "large body CL", head(b"Content-Length: 100000") + b"x" * 100000, "accept")
    yield Vector(c, "large body chunked", head(b"Transfer-Encoding: chunked")
                 + b"186a0\r\n" + b"x" * 100000 + b"\r\n0\r\n\r\n", "accept")


def vectors() -> list[Vector]:
    """Every hand-written vector, in category order."""
    return [*_cl_te(), *_content_length(), *_transfer_encoding(), *_chunk_sizes(),
            *_bare_lf_in_chunks(), *_chunk_data_without_crlf(), *_trailers(), *_pipelining(),
            *_obs_fold(), *_control_characters(), *_request_lines(), *_host(),
            *_absolute_form(), *_other()]
