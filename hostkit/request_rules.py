"""What the module refuses in a client's request head, and how it rewrites the rest.

A parser with h11's strictness reads the client's bytes (h11 InProcess; at the OutOfProcess
front, llhttp with h11's reading wherever the two could differ); these rules are what a
gateway must add on top, so that the child (whatever its HTTP parser) reads every forwarded
request exactly as the module did
(RFC 9112 §3.2, §6.3; RFC 9110 §5.5, §7.2):

- **size**: a head longer than :data:`MAX_HEAD_SIZE` → 431 (h11 checks its limit only on a
  head that arrives in pieces);
- **framing**: more than one ``Content-Length`` (h11 merges identical ones), a list value,
  or ``Content-Length`` with ``Transfer-Encoding`` → 400, read from the raw head of exactly
  this request;
- **obs-fold** (a header line continued on the next): 400 (RFC 9112 §5.2 allows refusing it,
  and h11's unfolding reads ``Host: a`` + `` Transfer-Encoding: chunked`` as one odd Host);
- **version**: only HTTP/1.0 and HTTP/1.x; any other major version → 505;
- **method**: ``CONNECT`` → 501 (the module is a gateway, not a forward proxy); a method with
  a lower-case letter → 400 (methods are case-sensitive, RFC 9110 §9.1, and every standard
  one is upper-case; nginx refuses them too, and hypercorn would hand the app ``GET`` for a
  client's ``get``);
- **field values**: control characters other than HTAB (h11 allows them; strict parsers
  such as llhttp refuse them) → 400;
- **target**: origin-form (``/path?query``), ``*`` for OPTIONS, or absolute-form with an
  ``http``/``https`` scheme; absolute-form is rewritten to origin-form and its authority
  becomes the ``Host`` (RFC 9112 §3.2.2); userinfo, other schemes, authority-form and
  anything else → 400;
- **fragment**: a target with ``#`` → 400 (a client never sends the fragment; RFC 9110 §4.2.5);
- **Host**: one ``Host`` header (h11 refuses a second one, and a missing one on HTTP/1.1),
  whose value is a ``host[:port]`` (RFC 3986 §3.2.2: a reg-name of unreserved, sub-delims and
  ``%``-escapes, an IPv4 address or a bracketed IP literal, then digits after ``:``); a
  space, ``/ ? # @``, any other character, or an empty value on HTTP/1.1 → 400 (RFC 9110
  §7.2). The Host forwarded is the one the client sent, or the absolute-form authority
  (checked the same way); an HTTP/1.0 request without one gets an empty ``Host``, which every
  HTTP/1.1 parser accepts;
- **HTTP/1.0 with Transfer-Encoding** → 400 (RFC 9112 §6.1: such framing is faulty);
- **chunk sizes**: a chunk-size line whose number is :data:`MAX_CHUNK_SIZE` + 1 (2^63) or
  more → 400 as soon as the line is read (:func:`limit_chunk_sizes`). h11 alone reads up to
  20 hex digits (2^80 bytes) and then waits for bytes that never come; 2^63 - 1 is the
  largest size a signed 64-bit length holds, the limit of nginx, Go and Java servers.

Both hosting models apply these rules from this module: the OutOfProcess front
(``hostkit_outofprocess/front``) and the InProcess server (``hostkit_inprocess/request_guard.py``).
A refusal is answered with its status and ``Connection: close``, and the connection closes.
"""

from __future__ import annotations

import dataclasses
import re

import h11
from h11._readers import ChunkedReader

#: The longest request head the front takes (h11's limit too, for a head in pieces).
MAX_HEAD_SIZE = 16 * 1024

#: The largest chunk size taken (2^63 - 1, the largest signed 64-bit length).
MAX_CHUNK_SIZE = (1 << 63) - 1

#: The control characters refused in a header value: all but HTAB (h11 refuses NUL, CR, LF,
#: VT and FF there itself, and any control character in the request line and the names), so
#: one pass over the raw head, whose line ends are the only CR and LF, finds any.
_CONTROL_BYTES = bytes([*range(0x00, 0x09), 0x0b, 0x0c, *range(0x0e, 0x20), 0x7f])
#: The table :func:`verdict_of` reads a head through: upper-case letters to lower-case (as
#: ``bytes.lower``), HTAB to a space (an obs-fold is then a line beginning with a space), and
#: every byte of :data:`_CONTROL_BYTES` to NUL; the rest unchanged.
_MARKED = bytes((0 if byte in _CONTROL_BYTES else 0x20 if byte == 0x09 else
                 byte + 0x20 if 0x41 <= byte <= 0x5a else byte) for byte in range(256))
#: The methods that pass the method tests at once (no lower-case letter, not CONNECT).
_UPPER_CASE_METHODS = frozenset((b"GET", b"HEAD", b"POST", b"PUT", b"DELETE", b"OPTIONS",
                                 b"PATCH", b"TRACE"))
_ABSOLUTE = re.compile(rb"(?i)(https?)://([^/?#]*)([^#]*)")
_HEAD_END = re.compile(rb"\n\r?\n")  # (the line's own CR, if any, comes before it)
#: host [":" port] (RFC 3986 §3.2.2, §3.2.3): an IP literal in brackets, or a reg-name (an
#: IPv4 address is one too) of unreserved characters, sub-delims and %-escapes.
_HOST = re.compile(rb"(?:\[[0-9A-Za-z:.%_~-]+\]|(?:[A-Za-z0-9._~!$&'()*+,;=-]|%[0-9A-Fa-f]{2})+)"
                   rb"(?::[0-9]*)?")
#: The usual host [":" port]: a reg-name without %-escapes (an IPv4 address is one too).
_PLAIN_HOST = re.compile(rb"[A-Za-z0-9._~!$&'()*+,;=-]+(?::[0-9]*)?")


@dataclasses.dataclass(slots=True)
class Refusal:
    """The module answers ``status`` itself and closes the connection."""

    status: int
    reason: str


@dataclasses.dataclass(slots=True)
class Forwarded:
    """The request line and Host the child gets."""

    target: bytes
    host: bytes


def head_of(raw: bytes) -> bytes | None:
    """The head of the request ``raw`` begins with (leading empty lines skipped), or ``None``
    when ``raw`` does not hold all of it."""
    if raw and (raw[0] == 13 or raw[0] == 10):  # (a byte, as an int: no slice made)
        raw = raw.lstrip(b"\r\n")
    end = _HEAD_END.search(raw)
    return raw[:end.end()] if end else None


def ambiguous_framing(raw_head: bytes) -> str | None:
    """Why a request head's body framing is ambiguous, or ``None`` when it is not.

    ``raw_head`` is this request's head only (:func:`head_of`). h11 merges repeated identical
    ``Content-Length`` headers and ``5, 5`` lists, so those are found here, in the raw bytes;
    ``Content-Length`` with ``Transfer-Encoding`` is found in both.
    """
    head = raw_head.lower()
    lengths = head.count(b"\ncontent-length:")
    encodings = head.count(b"\ntransfer-encoding:")
    if lengths > 1:
        return "more than one Content-Length header"
    if lengths and encodings:
        return "both Content-Length and Transfer-Encoding"
    if lengths:
        start = head.index(b"\ncontent-length:") + len(b"\ncontent-length:")
        if head.find(b",", start, head.find(b"\n", start)) >= 0:
            return "a Content-Length with more than one value"
    return None


def check(request: h11.Request, raw_head: bytes | None) -> Refusal | Forwarded:
    """Refuse ``request`` (see the module docstring) or say how to forward it.

    ``request`` is what h11 parsed, ``raw_head`` its head as received (:func:`head_of`;
    ``None`` when it is not all there: 431). Header names are found in the raw head, where
    each begins a line (h11 refuses a name with a space before its colon, and a folded line
    is refused here first): one pass in C instead of one over h11's headers in Python.
    """
    verdict = verdict_of(request, raw_head)
    if type(verdict) is bytes:
        return Forwarded(request.target, verdict)
    return verdict  # type: ignore[return-value]


def verdict_of(request: h11.Request, raw_head: bytes | None) -> Refusal | Forwarded | bytes:
    """:func:`check`, without making a :class:`Forwarded` for a request forwarded as it came:
    for that one (an origin-form or ``*`` target), the Host to forward (bytes) is returned.
    Called by :func:`check`, and by a server that forwards such a request unchanged (the
    InProcess request guard): it runs for every request.

    Each test is a call in C, as few as the usual request needs; ``x in bytes`` is avoided
    (CPython tries ``x`` as an integer first, and makes and clears a TypeError each time)."""
    if raw_head is None or len(raw_head) > MAX_HEAD_SIZE:
        return Refusal(431, "the request head is too large")
    version = request.http_version
    if version != b"1.1" and not version.startswith(b"1."):
        return Refusal(505, "HTTP version not supported")
    method = request.method
    if method not in _UPPER_CASE_METHODS:
        if method == b"CONNECT":
            return Refusal(501, "CONNECT is not supported")
        if method.upper() != method:
            return Refusal(400, "a method with a lower-case letter")
    # The head once, lower-case, HTAB as a space and each refused control character as NUL
    # (:data:`_MARKED`), as text: ``in`` on text is one call in C.
    head = raw_head.translate(_MARKED).decode("latin-1")
    if "\n " in head:  # (the head ends with its blank line, after which a fold cannot begin)
        return Refusal(400, "a header line continued on the next (obs-fold)")
    if "\0" in head:
        return Refusal(400, "a control character in a header value")
    if "\ntransfer-encoding:" in head:
        if "\ncontent-length:" in head:
            return Refusal(400, "both Content-Length and Transfer-Encoding")
        if version == b"1.0":
            return Refusal(400, "Transfer-Encoding on an HTTP/1.0 request")
    elif "\ncontent-length:" in head:
        problem = ambiguous_framing(raw_head)
        if problem is not None:
            return Refusal(400, problem)
    host = b""
    if "\nhost:" in head:
        # (h11 has refused a second Host, and a missing one on HTTP/1.1.)
        at = head.find("\nhost:") + 6  # (the same offsets in the raw head)
        host = raw_head[at:head.find("\n", at)].strip(b" \t\r")
        if not (_valid_host(host) or (not host and version == b"1.0")):
            return Refusal(400, "the Host header is not a host[:port]")
    target = request.target
    if 35 in target:  # b"#" (an int: `bytes in bytes` makes and clears a TypeError first)
        return Refusal(400, "a fragment in the request target")
    if target[:1] == b"/":
        return host
    if target == b"*":
        if method == b"OPTIONS":
            return host
        return Refusal(400, "the asterisk target is for OPTIONS only")
    absolute = _ABSOLUTE.fullmatch(target)
    if absolute is None:
        return Refusal(400, "the request target is not origin-form or absolute-form")
    authority, rest = absolute.group(2), absolute.group(3)
    if not authority or 64 in authority or not _valid_host(authority):  # 64: b"@"
        return Refusal(400, "the absolute-form target has no host, or has userinfo")
    return Forwarded(rest if rest[:1] == b"/" else b"/" + rest, authority)


def _valid_host(host: bytes) -> bool:
    """Whether ``host`` is a ``host[:port]`` (:data:`_HOST`); most are a name or an IPv4
    address and a port, matched by the simpler :data:`_PLAIN_HOST` (a subset of it) first."""
    return _PLAIN_HOST.fullmatch(host) is not None or _HOST.fullmatch(host) is not None


class _LimitedChunks:
    """h11's reader of a chunked body, which refuses a chunk size over :data:`MAX_CHUNK_SIZE`
    once it has read the size line (h11 catches the error, and reports it as a
    ``RemoteProtocolError`` with status 400)."""

    __slots__ = ("reader",)

    def __init__(self, reader: ChunkedReader):
        self.reader = reader

    def __call__(self, buffer: object) -> object:
        reader = self.reader
        between_chunks = reader._bytes_in_chunk == 0  # the next size line may be read now
        event = reader(buffer)  # type: ignore[arg-type]
        if between_chunks:
            size = reader._bytes_in_chunk  # what is left of the chunk begun, if any
            if type(event) is h11.Data:
                size += len(event.data)
            if size > MAX_CHUNK_SIZE:
                raise h11.LocalProtocolError("the chunk size is too large",
                                             error_status_hint=400)
        return event

    def read_eof(self) -> object:
        return self.reader.read_eof()


def limit_chunk_sizes(parser: h11.Connection) -> None:
    """Make ``parser`` refuse a chunk size over :data:`MAX_CHUNK_SIZE` in the body of the
    request it has just returned (called right after its ``next_event`` returned the
    ``h11.Request``; nothing is done for a body that is not chunked).

    h11 has no option for this: its reader of the request body (``_reader``, a
    ``ChunkedReader`` keeping the bytes left of the chunk in ``_bytes_in_chunk``; h11 0.14 to
    0.16) is wrapped. tests/test_request_rules.py fails if a new h11 renames them.
    """
    reader = parser._reader
    if type(reader) is ChunkedReader:
        parser._reader = _LimitedChunks(reader)  # type: ignore[assignment]
