"""Who is on a client connection, as the module sees it, and what it forwards about them.

The module owns the public listener, so it reads the forwarded headers of a known proxy
(``[forwarded_headers]``, through the gateway's ``ForwardedHeaders``), runs server
authentication (SPEC §3) on every request before forwarding it, answers 401 itself for wrong
credentials, and tells the child who the client is with ``X-Forwarded-For``/``-Proto``,
``Hostkit-Client-Port``, ``Hostkit-Client-Cert`` and ``Hostkit-Identity``.

A peer that is not a known proxy is the client, on every request of its connection: what it
is told is worked out once, when the connection is accepted (:class:`Origin`); only a known
proxy's requests are read one by one (:meth:`ConnectionIdentity.origin`).
"""

from __future__ import annotations

import ssl
from collections.abc import Sequence
from typing import Any, NoReturn

import h11

from hostkit import HttpContext, InvalidOperationError
from hostkit.plugin import (
    CLIENT_CERT_HEADER,
    IDENTITY_HEADER,
    AuthenticateResult,
    Authenticator,
    ForwardedHeaders,
    ForwardedView,
    tls_extension,
)

from hostkit_outofprocess.forwarded_identity import (
    CLIENT_PORT_HEADER,
    encode_client_certificate,
    encode_identity,
)
from hostkit_outofprocess.front.header_rules import origin_headers

Header = tuple[bytes, bytes]


class Origin:
    """Where one request comes from, as the child and the access log are told: the client's
    address and port, the scheme, and the Host a known proxy forwarded.

    ``view`` is what ``ForwardedHeaders.apply`` made of a known proxy's request (its
    ``from_known_proxy`` decides whether a client ``X-Request-Id`` is kept), ``None`` for a
    peer that is not one: then the peer is the client.
    """

    __slots__ = ("client_ip", "client_port", "scheme", "host", "view", "port_header",
                 "forwarding")

    def __init__(self, client_ip: str | None, client_port: int | None, scheme: str,
                 host: bytes | None = None, view: ForwardedView | None = None):
        self.client_ip = client_ip
        self.client_port = client_port
        self.scheme = scheme
        #: the forwarded Host, ``None``: the request's own.
        self.host = host
        self.view = view
        #: ``Hostkit-Client-Port``, ``None`` when the port is not known.
        self.port_header: Header | None = (
            (CLIENT_PORT_HEADER, b"%d" % client_port) if client_port else None)
        #: ``X-Forwarded-For`` and ``-Proto`` (:func:`.header_rules.origin_headers`).
        self.forwarding = origin_headers(client_ip, scheme)

    @classmethod
    def forwarded(cls, view: ForwardedView) -> Origin:
        return cls(view.client_ip, view.client_port, view.scheme, view.host, view)


class ConnectionIdentity:
    """Made once per accepted connection (after the TLS handshake).

    ``ssl_object`` is the connection's TLS object, ``None`` for plain HTTP; ``client_ip`` and
    ``client_port`` are the peer's (``None`` on a unix socket); ``forwarded`` the gateway's
    trusted proxies; ``authenticator`` is ``None`` when no scheme is configured.
    """

    __slots__ = ("authenticator", "forward_identity", "scheme", "client_ip", "client_port",
                 "tls", "direct", "_forwarded", "_certificate_header")

    def __init__(self, *, ssl_object: ssl.SSLObject | None, scheme: str, client_ip: str | None,
                 client_port: int | None, forwarded: ForwardedHeaders,
                 authenticator: Authenticator | None, forward_identity: bool):
        self.authenticator = authenticator
        self.forward_identity = forward_identity
        self.scheme = scheme
        self.client_ip = client_ip
        self.client_port = client_port
        #: The origin of every request on the connection when the peer is not a known proxy;
        #: ``None`` when it is one (:meth:`origin` reads each request).
        self.direct: Origin | None = (
            None if forwarded.is_known_proxy(client_ip)
            else Origin(client_ip, client_port, scheme))
        self._forwarded = forwarded
        self.tls = tls_extension(ssl_object) if ssl_object is not None else None
        der = ssl_object.getpeercert(binary_form=True) if ssl_object is not None else None
        self._certificate_header: Header | None = (
            (CLIENT_CERT_HEADER, encode_client_certificate(der)) if der else None)

    def origin(self, headers: list[Header]) -> Origin:
        """Where the request with ``headers`` (lower-case names) comes from: the connection's
        :attr:`direct` origin, or what its known proxy forwarded."""
        direct = self.direct
        if direct is not None:
            return direct
        return Origin.forwarded(self._forwarded.apply(self.client_ip, self.client_port,
                                                      self.scheme, headers))

    async def authenticate(self, request: h11.Request,
                           origin: Origin) -> AuthenticateResult | None:
        """Run the configured schemes on ``request``'s head, from ``origin`` (the client's
        address and scheme after forwarding); ``None`` when there are none."""
        if self.authenticator is None:
            return None
        return await self.authenticator.authenticate(self._context(request, origin))

    def challenge_headers(self) -> list[Header]:
        """The ``WWW-Authenticate`` headers of the module's 401."""
        assert self.authenticator is not None
        return [(b"www-authenticate", value.encode("latin-1"))
                for value in self.authenticator.challenges()]

    def forwarded_headers(self, result: AuthenticateResult | None,
                          token: bytes) -> Sequence[Header]:
        """The headers that tell the child (whose token is ``token``) who the client is."""
        if result is None and self._certificate_header is None:
            return ()
        headers = [self._certificate_header] if self._certificate_header else []
        if result is not None and result.succeeded and self.forward_identity:
            headers.append((IDENTITY_HEADER, encode_identity(result, token)))
        return headers

    def _context(self, request: h11.Request, origin: Origin) -> HttpContext:
        path, _, query = request.target.partition(b"?")
        client_ip = origin.client_ip
        scope: dict[str, Any] = {
            "type": "http", "method": request.method.decode("ascii"), "scheme": origin.scheme,
            "path": path.decode("latin-1"), "raw_path": path, "query_string": query,
            "root_path": "", "headers": list(request.headers),
            "client": (client_ip, origin.client_port or 0) if client_ip else None,
            "extensions": {"tls": self.tls} if self.tls is not None else {},
        }
        return HttpContext(scope, _head_only, _head_only)


async def _head_only(*_: Any) -> NoReturn:
    raise InvalidOperationError("an authentication scheme reads the request head only")
