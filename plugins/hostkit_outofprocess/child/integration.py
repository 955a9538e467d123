"""The integration layer, outermost in a child's pipeline: the front's contract, applied.

For every HTTP and WebSocket request (SPEC §4):

1. exactly one ``Hostkit-Token`` header equal to the module's token (constant-time compare),
   at most one ``Hostkit-Identity`` whose MAC verifies with that token, and at most one
   ``Hostkit-Client-Cert``, or 400 with an empty body and the app is not called;
2. those headers are removed from what the app sees;
3. ``X-Forwarded-For`` (last hop) becomes the client address, ``X-Forwarded-Proto`` the
   scheme, and the module's path base the ``root_path``;
4. the forwarded identity is left for the authentication layer, and the client certificate
   becomes the ASGI ``tls`` extension (``context.connection.client_certificate``) when
   ``integration.forward_client_certificate`` is true.

The token is never logged: nothing here logs, and the contract's repr hides it.
"""

from __future__ import annotations

import hmac

from hostkit.plugin import (
    CLIENT_CERT_HEADER,
    FORWARDED_RESULT_KEY,
    IDENTITY_HEADER,
    TOKEN_HEADER,
    ASGIApp,
    ChildContract,
    Receive,
    Scope,
    Send,
    send_refusal,
    tls_extension_of,
)

from hostkit_outofprocess.forwarded_identity import decode_client_certificate, decode_identity

_FORWARDED_FOR = b"x-forwarded-for"
_FORWARDED_PROTO = b"x-forwarded-proto"
_SCHEMES = {"http": {b"http": "http", b"https": "https"},
            "websocket": {b"http": "ws", b"https": "wss"}}


class IntegrationMiddleware:
    """ASGI middleware applying the module's contract; see the module docstring."""

    def __init__(self, app: ASGIApp, *, contract: ChildContract,
                 forward_client_certificate: bool = True):
        self.app = app
        self.token = contract.token.encode("ascii")
        base = contract.path_base.rstrip("/")
        self.path_base = base  # "" when the app is at the root
        self.forward_client_certificate = forward_client_certificate

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        kind = scope["type"]
        if kind != "http" and kind != "websocket":
            await self.app(scope, receive, send)
            return
        token: bytes | None = None
        count = 0
        module_headers: dict[bytes, list[bytes]] = {}
        kept = []
        forwarded_for = forwarded_proto = None
        for name, value in scope["headers"]:
            lowered = name.lower()
            if lowered == TOKEN_HEADER:
                token = value
                count += 1
                continue
            if lowered == IDENTITY_HEADER or lowered == CLIENT_CERT_HEADER:
                module_headers.setdefault(lowered, []).append(value)
                continue
            if lowered == _FORWARDED_FOR:
                forwarded_for = value
            elif lowered == _FORWARDED_PROTO:
                forwarded_proto = value
            kept.append((name, value))
        # compare_digest runs in time independent of where the values differ.
        if count != 1 or not hmac.compare_digest(token or b"", self.token):
            await send_refusal(scope, send, 400)
            return
        scope = dict(scope)
        if module_headers and not self._apply_identity(scope, module_headers):
            await send_refusal(scope, send, 400)
            return
        scope["headers"] = kept
        if forwarded_for:
            last_hop = forwarded_for.split(b",")[-1].strip().decode("latin-1")
            if last_hop:
                scope["client"] = (last_hop, 0)
        if forwarded_proto:
            scheme = _SCHEMES[kind].get(forwarded_proto.strip().lower())
            if scheme is not None:
                scope["scheme"] = scheme
        if self.path_base:
            path: str = scope["path"]
            if path == self.path_base or path.startswith(self.path_base + "/"):
                scope["root_path"] = self.path_base
        await self.app(scope, receive, send)

    def _apply_identity(self, scope: Scope, headers: dict[bytes, list[bytes]]) -> bool:
        """Put the module's identity and client certificate into ``scope``. Returns false
        when either is duplicated or invalid (never sent so by a real module)."""
        identities = headers.get(IDENTITY_HEADER, [])
        certificates = headers.get(CLIENT_CERT_HEADER, [])
        if len(identities) > 1 or len(certificates) > 1:
            return False
        if identities:
            result = decode_identity(identities[0], self.token)
            if result is None:
                return False
            scope[FORWARDED_RESULT_KEY] = result
        if certificates:
            der = decode_client_certificate(certificates[0])
            if der is None:
                return False
            if self.forward_client_certificate:
                scope["extensions"] = {**scope.get("extensions", {}),
                                       "tls": tls_extension_of(der)}
        return True
