"""Which headers cross the module, in each direction (SPEC §4).

Request (client → child): every header in the reserved ``hostkit-`` namespace, every
forwarding header (``X-Forwarded-*``, ``Forwarded``, ``X-Real-IP``) and every hop-by-hop header
(including those named in ``Connection``) is dropped, and so is the client's ``X-Request-Id``,
matching names case-insensitively and with ``_`` read as ``-``, so no spelling of them reaches
the child. Then the module adds its own ``X-Forwarded-For`` and ``X-Forwarded-Proto`` (the
client's address and scheme after trusted forwarding), ``X-Request-Id`` (the id it chose),
``Hostkit-Client-Port``, ``Hostkit-Http-Version`` (the client's HTTP version) and
``Hostkit-Token``. ``Host`` is the client's (or the absolute-form
target's authority, see :mod:`hostkit.request_rules`, or the Host a known proxy forwarded), written by
the caller first, so naming it in ``Connection`` cannot remove it.

Response (child → client): hop-by-hop headers are dropped, and so is a child's
``X-Request-Id``: the module's id is the one the client gets; the framing is the module's own
(:mod:`~hostkit_outofprocess.front.wire`).

Hop-by-hop are the fields RFC 9110 §7.6.1 names (``Connection`` and what it lists,
``Proxy-Connection``, ``Keep-Alive``, ``TE``, ``Transfer-Encoding``, ``Upgrade``) and
``Trailer`` (trailers are not forwarded). ``Proxy-Authorization`` and ``Proxy-Authenticate``
are not: RFC 9110 no longer counts them as hop-by-hop, they are for a proxy the client chose,
and the module is a gateway that answers as the origin does. They cross it, as through nginx
and HAProxy, so the app sees the same headers in both hosting models (hypercorn InProcess
hides neither); docs/out-of-process.md lists every header the module removes or sets.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

from hostkit.plugin import (
    HTTP_VERSION_HEADER,
    REQUEST_ID_HEADER,
    RESERVED_HEADER_PREFIX,
    TOKEN_HEADER,
    remember,
)

Header = tuple[bytes, bytes]

HOP_BY_HOP = frozenset({
    b"connection", b"keep-alive", b"proxy-connection", b"te", b"trailer",
    b"transfer-encoding", b"upgrade",
})
_FORWARDING = frozenset({b"forwarded", b"x-real-ip"})
_FORWARDING_PREFIX = b"x-forwarded-"
_RESERVED_PREFIX = RESERVED_HEADER_PREFIX.encode("ascii")
# The module answers "Expect: 100-continue" itself, frames the body itself, and writes Host
# and the request id.
_HANDLED_BY_MODULE = frozenset({b"expect", b"content-length", b"host", REQUEST_ID_HEADER})
# What the client never gets of a child's response headers: the module frames the response,
# and its request id is the one the client gets.
_NOT_RELAYED = HOP_BY_HOP | {REQUEST_ID_HEADER}
IDEMPOTENT_METHODS = frozenset({b"GET", b"HEAD", b"OPTIONS", b"TRACE", b"PUT", b"DELETE"})


def canonical(name: bytes) -> bytes:
    """A header name as the module compares it: lower case, ``_`` read as ``-``."""
    return name.lower().replace(b"_", b"-")


def connection_tokens(headers: Iterable[Header]) -> frozenset[bytes]:
    """The header names listed in ``Connection`` (canonical), which are hop-by-hop too.

    ``headers`` have lower-case names, as h11 and the pool's parser give them (no ``_`` can
    spell ``connection``, so the name needs no :func:`canonical`).
    """
    tokens: set[bytes] | None = None
    for name, value in headers:
        if name == b"connection":
            if tokens is None:
                tokens = set()
            tokens.update(canonical(token.strip()) for token in value.split(b",") if token.strip())
    return _NO_TOKENS if tokens is None else frozenset(tokens)


_NO_TOKENS: frozenset[bytes] = frozenset()


def is_websocket_upgrade(headers: Sequence[Header], named: frozenset[bytes]) -> bool:
    """True for a WebSocket handshake; other upgrades (``h2c`` …) are never forwarded.

    ``named`` are the request's :func:`connection_tokens`.
    """
    if b"upgrade" not in named:
        return False
    upgrade = b",".join(value for name, value in headers if name == b"upgrade").lower()
    return b"websocket" in [token.strip() for token in upgrade.split(b",")]


def request_headers(headers: Sequence[Header], named: frozenset[bytes], *, host: bytes,
                    origin: Sequence[Header], token: bytes, framing: Header | None,
                    websocket: bool, request_id: Header, client_port: Header | None = None,
                    identity: Sequence[Header] = (), http_version: bytes | None = None
                    ) -> list[Header]:
    """The headers of the request the module sends to the child, ``Host`` (``host``) first.

    ``named`` are the request's :func:`connection_tokens`; ``framing`` is the body framing
    header to send (Content-Length or Transfer-Encoding), or ``None`` for no body;
    ``websocket`` keeps the handshake's ``Upgrade``/``Connection``;
    ``origin`` are the ``X-Forwarded-For`` (none on a unix socket, where there is no client
    address to forward) and ``X-Forwarded-Proto`` headers (:func:`origin_headers`);
    ``request_id`` is the module's ``X-Request-Id`` header for the request; ``client_port``
    its ``Hostkit-Client-Port`` header (``None``: the port is not known);
    ``identity`` are the module's ``Hostkit-Client-Cert`` / ``Hostkit-Identity`` headers;
    ``http_version`` the client's HTTP version (``2``, ``1.1``, ``1.0``), sent as
    ``Hostkit-Http-Version`` (``None``: not sent).
    """
    result: list[Header] = [(b"host", host)]
    keys = _REQUEST_KEYS
    for header in headers:
        key = keys.get(header[0])
        if key is None:
            key = _request_key(header[0])
        if key and key not in named:
            result.append(header)
    if websocket:
        result.append((b"connection", b"upgrade"))
        result.append((b"upgrade", b"websocket"))
    if framing is not None:
        result.append(framing)
    result += origin
    result.append(request_id)
    if client_port is not None:
        result.append(client_port)
    if identity:
        result += identity
    if http_version is not None:
        version = _VERSION_HEADERS.get(http_version)
        result.append(version if version is not None else (HTTP_VERSION_HEADER, http_version))
    result.append((TOKEN_HEADER, token))
    return result


def origin_headers(client_ip: str | None, scheme: str) -> tuple[Header, ...]:
    """``X-Forwarded-For`` (when ``client_ip`` is known) and ``X-Forwarded-Proto``, as
    :func:`request_headers` sends them for a request from ``client_ip`` over ``scheme``."""
    proto = (b"x-forwarded-proto", scheme.encode("ascii"))
    if client_ip is None:
        return (proto,)
    return (b"x-forwarded-for", client_ip.encode("ascii")), proto


# Request header names as :func:`request_headers` has seen them: the canonical name of one it
# forwards unless ``Connection`` names it, ``b""`` for one it never forwards. Cleared when
# full, so names a client makes up cannot grow it without bound.
_REQUEST_KEYS: dict[bytes, bytes] = {}
_MAX_KNOWN_NAMES = 1024
_VERSION_HEADERS = {version: (HTTP_VERSION_HEADER, version) for version in (b"2", b"1.1", b"1.0")}


def _request_key(name: bytes) -> bytes:
    """What :data:`_REQUEST_KEYS` holds for ``name``, worked out and kept."""
    key = canonical(name)
    if (key in HOP_BY_HOP or key in _FORWARDING or key in _HANDLED_BY_MODULE
            or key.startswith(_RESERVED_PREFIX) or key.startswith(_FORWARDING_PREFIX)):
        key = b""
    return _remember(_REQUEST_KEYS, name, key)


def _remember(known: dict[bytes, bytes], name: bytes, key: bytes) -> bytes:
    """Keep ``key`` as what ``known`` (:data:`_REQUEST_KEYS`, :data:`_RESPONSE_KEYS`) holds
    for ``name`` (``hostkit.plugin.remember``: emptied when full); returns ``key``."""
    return remember(known, name, key, _MAX_KNOWN_NAMES)


def response_headers(headers: Sequence[Header], request_id: Header) -> list[Header]:
    """The child's response headers the client gets: hop-by-hop ones and the child's
    ``X-Request-Id`` removed, the module's (``request_id``, the header) added."""
    result: list[Header] = []
    keys = _RESPONSE_KEYS
    listed = False
    for header in headers:
        key = keys.get(header[0])
        if key is None:
            key = _response_key(header[0])
        if key:
            result.append(header)
        elif header[0] == b"connection":
            listed = True
    if listed:  # what Connection names is hop-by-hop too
        named = connection_tokens(headers)
        result = [header for header in result if canonical(header[0]) not in named]
    result.append(request_id)
    return result


# Response header names as :func:`response_headers` has seen them: the canonical name of one
# it relays unless ``Connection`` names it, ``b""`` for one it never relays (bounded as
# :data:`_REQUEST_KEYS`).
_RESPONSE_KEYS: dict[bytes, bytes] = {}


def _response_key(name: bytes) -> bytes:
    """What :data:`_RESPONSE_KEYS` holds for ``name``, worked out and kept."""
    key = canonical(name)
    return _remember(_RESPONSE_KEYS, name, b"" if key in _NOT_RELAYED else key)
