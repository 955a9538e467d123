"""What the module refuses in a client's request head, and how it rewrites the rest.

h11 parses the client's bytes; these rules are what a gateway must add on top, so that the
child (whatever its HTTP parser) reads every forwarded request exactly as the module did
(RFC 9112 §3.2, §6.3; RFC 9110 §5.5, §7.2):

- **size**: a head longer than :data:`MAX_HEAD_SIZE` → 431 (h11 checks its limit only on a
  head that arrives in pieces);
- **framing**: more than one ``Content-Length`` (h11 merges identical ones), a list value,
  or ``Content-Length`` with ``Transfer-Encoding`` → 400, read from the raw head of exactly
  this request;
- **obs-fold** (a header line continued on the next): 400 (RFC 9112 §5.2 allows refusing it,
  and h11's unfolding reads ``Host: a`` + `` Transfer-Encoding: chunked`` as one odd Host);
- **version**: only HTTP/1.0 and HTTP/1.x; any other major version → 505;
- **method**: ``CONNECT`` → 501 (the module is a gateway, not a forward proxy);
- **field values**: control characters other than HTAB (h11 allows them; strict parsers
  such as llhttp refuse them) → 400;
- **target**: origin-form (``/path?query``), ``*`` for OPTIONS, or absolute-form with an
  ``http``/``https`` scheme; absolute-form is rewritten to origin-form and its authority
  becomes the ``Host`` (RFC 9112 §3.2.2); userinfo, other schemes, authority-form and
  anything else → 400;
- **Host**: exactly the one the client sent, or the absolute-form authority; an HTTP/1.0
  request without one gets an empty ``Host``, which every HTTP/1.1 parser accepts.
"""

from __future__ import annotations

import dataclasses
import re

import h11

#: The longest request head the front takes (h11's limit too, for a head in pieces).
MAX_HEAD_SIZE = 16 * 1024

_CONTROL = re.compile(rb"[\x00-\x08\x0a-\x1f\x7f]")
_ABSOLUTE = re.compile(rb"(?i)(https?)://([^/?#]*)([^#]*)")
_HEAD_END = re.compile(rb"\r?\n\r?\n")
_OBS_FOLD = re.compile(rb"\n[ \t]")


@dataclasses.dataclass(frozen=True)
class Refusal:
    """The module answers ``status`` itself and closes the connection."""

    status: int
    reason: str


@dataclasses.dataclass(frozen=True)
class Forwarded:
    """The request line and Host the child gets."""

    target: bytes
    host: bytes


def head_of(raw: bytes) -> bytes | None:
    """The head of the request ``raw`` begins with (leading empty lines skipped), or ``None``
    when ``raw`` does not hold all of it."""
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
        if b"," in head[start:head.find(b"\n", start)]:
            return "a Content-Length with more than one value"
    return None


def check(request: h11.Request, headers: list[tuple[bytes, bytes]], raw_head: bytes | None
          ) -> Refusal | Forwarded:
    """Refuse ``request`` (see the module docstring) or say how to forward it.

    ``headers`` are the request's (``list(request.headers)``), ``raw_head`` its head as
    received (:func:`head_of`).
    """
    if raw_head is None or len(raw_head) > MAX_HEAD_SIZE:
        return Refusal(431, "the request head is too large")
    if not request.http_version.startswith(b"1."):
        return Refusal(505, "HTTP version not supported")
    if request.method == b"CONNECT":
        return Refusal(501, "CONNECT is not supported")
    names = [name for name, _ in headers]
    if b"content-length" in names:
        # (Without one, the raw head has none either: h11 keeps every Content-Length it
        # reads, merging identical ones.)
        if b"transfer-encoding" in names:
            return Refusal(400, "both Content-Length and Transfer-Encoding")
        problem = ambiguous_framing(raw_head)
        if problem is not None:
            return Refusal(400, problem)
    if _OBS_FOLD.search(raw_head.rstrip(b"\r\n")):
        return Refusal(400, "a header line continued on the next (obs-fold)")
    for name, value in headers:
        if _CONTROL.search(value):
            return Refusal(400, f"a control character in the {name.decode()} header")
    host = next((value for name, value in headers if name == b"host"), b"")
    target = request.target
    if target.startswith(b"/"):
        return Forwarded(target, host)
    if target == b"*":
        if request.method == b"OPTIONS":
            return Forwarded(target, host)
        return Refusal(400, "the asterisk target is for OPTIONS only")
    absolute = _ABSOLUTE.fullmatch(target)
    if absolute is None:
        return Refusal(400, "the request target is not origin-form or absolute-form")
    authority, rest = absolute.group(2), absolute.group(3)
    if not authority or b"@" in authority:
        return Refusal(400, "the absolute-form target has no host, or has userinfo")
    return Forwarded(rest if rest.startswith(b"/") else b"/" + rest, authority)
