"""Who is on a client connection, as the module sees it, and what it forwards about them.

The module owns the public listener, so it runs server authentication (SPEC §3) on every
request before forwarding it, answers 401 itself for wrong credentials, and tells the child
who the client is with ``Hostkit-Client-Cert`` and ``Hostkit-Identity``.
"""

from __future__ import annotations

import ssl
from typing import Any, NoReturn

import h11

from hostkit import HttpContext, InvalidOperationError
from hostkit.plugin import (
    CLIENT_CERT_HEADER,
    IDENTITY_HEADER,
    AuthenticateResult,
    Authenticator,
    tls_extension,
)

from hostkit_outofprocess.forwarded_identity import encode_client_certificate, encode_identity

Header = tuple[bytes, bytes]


class ConnectionIdentity:
    """Made once per accepted connection (after the TLS handshake).

    ``ssl_object`` is the connection's TLS object, ``None`` for plain HTTP;
    ``authenticator`` is ``None`` when no scheme is configured.
    """

    __slots__ = ("authenticator", "forward_identity", "scheme", "client_ip", "tls",
                 "_certificate_header")

    def __init__(self, *, ssl_object: ssl.SSLObject | None, scheme: str, client_ip: str | None,
                 authenticator: Authenticator | None, forward_identity: bool):
        self.authenticator = authenticator
        self.forward_identity = forward_identity
        self.scheme = scheme
        self.client_ip = client_ip
        self.tls = tls_extension(ssl_object) if ssl_object is not None else None
        der = ssl_object.getpeercert(binary_form=True) if ssl_object is not None else None
        self._certificate_header: Header | None = (
            (CLIENT_CERT_HEADER, encode_client_certificate(der)) if der else None)

    async def authenticate(self, request: h11.Request) -> AuthenticateResult | None:
        """Run the configured schemes on ``request``'s head; ``None`` when there are none."""
        if self.authenticator is None:
            return None
        return await self.authenticator.authenticate(self._context(request))

    def challenge_headers(self) -> list[Header]:
        """The ``WWW-Authenticate`` headers of the module's 401."""
        assert self.authenticator is not None
        return [(b"www-authenticate", value.encode("latin-1"))
                for value in self.authenticator.challenges()]

    def forwarded_headers(self, result: AuthenticateResult | None, token: bytes) -> list[Header]:
        """The headers that tell the child (whose token is ``token``) who the client is."""
        headers = [self._certificate_header] if self._certificate_header else []
        if result is not None and result.succeeded and self.forward_identity:
            headers.append((IDENTITY_HEADER, encode_identity(result, token)))
        return headers

    def _context(self, request: h11.Request) -> HttpContext:
        path, _, query = request.target.partition(b"?")
        scope: dict[str, Any] = {
            "type": "http", "method": request.method.decode("ascii"), "scheme": self.scheme,
            "path": path.decode("latin-1"), "raw_path": path, "query_string": query,
            "root_path": "", "headers": list(request.headers),
            "client": (self.client_ip, 0) if self.client_ip else None,
            "extensions": {"tls": self.tls} if self.tls is not None else {},
        }
        return HttpContext(scope, _head_only, _head_only)


async def _head_only(*_: Any) -> NoReturn:
    raise InvalidOperationError("an authentication scheme reads the request head only")
