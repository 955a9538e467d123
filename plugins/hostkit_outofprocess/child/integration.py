"""The integration layer, outermost in a child's pipeline: the front's contract, applied.

For every HTTP and WebSocket request (SPEC §4):

1. exactly one ``Hostkit-Token`` header equal to the module's token (constant-time compare),
   at most one ``Hostkit-Identity`` whose MAC verifies with that token, and at most one
   ``Hostkit-Client-Cert``, or 400 with an empty body and the app is not called;
2. those headers are removed from what the app sees, and so are ``Hostkit-Client-Port``,
   ``Hostkit-Http-Version`` and ``X-Request-Id``, which only the module sends (it strips a
   client's); more than one ``Hostkit-Http-Version`` is a 400 too;
3. ``X-Forwarded-For`` (last hop) becomes the client address and ``Hostkit-Client-Port`` its
   port (``context.connection.remote_port``; 0 when the module does not know it),
   ``X-Forwarded-Proto`` the scheme, ``Hostkit-Http-Version`` (``2``, ``1.1`` or ``1.0``:
   the client's protocol at the front, which speaks HTTP/1.1 to the child) the
   ``http_version``, and the module's path base the ``root_path``;
4. ``X-Request-Id`` becomes the request's id while the app serves it
   (``context.trace_identifier``, and the ``request_id`` of the child's log lines:
   ``hostkit.plugin.REQUEST_ID``), so the front's access log, the client and the child's
   logs name the same id;
5. the forwarded identity is left for the authentication layer, and the client certificate
   becomes the ASGI ``tls`` extension (``context.connection.client_certificate``) when
   ``integration.forward_client_certificate`` is true.

The child writes no access log line and answers no health path: its front does both (a
``CHILD`` host has no gateway).

The token is never logged: nothing here logs, and the contract's repr hides it.
"""

from __future__ import annotations

import hmac

from hostkit.plugin import (
    CLIENT_CERT_HEADER,
    FORWARDED_RESULT_KEY,
    HTTP_VERSION_HEADER,
    IDENTITY_HEADER,
    REQUEST_ID,
    REQUEST_ID_HEADER,
    TOKEN_HEADER,
    ASGIApp,
    ChildContract,
    Receive,
    Scope,
    Send,
    send_refusal,
    tls_extension_of,
)

from hostkit_outofprocess.forwarded_identity import (
    CLIENT_PORT_HEADER,
    decode_client_certificate,
    decode_client_port,
    decode_identity,
)

_FORWARDED_FOR = b"x-forwarded-for"
_FORWARDED_PROTO = b"x-forwarded-proto"
#: The values of ``Hostkit-Http-Version`` and the ``http_version`` each gives (another value
#: leaves the child's own, ``1.1``).
_HTTP_VERSIONS = {b"2": "2", b"1.1": "1.1", b"1.0": "1.0"}
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
        forwarded_for = forwarded_proto = client_port = request_id = None
        http_versions: list[bytes] = []
        for name, value in scope["headers"]:
            lowered = name.lower()
            if lowered == TOKEN_HEADER:
                token = value
                count += 1
                continue
            if lowered == IDENTITY_HEADER or lowered == CLIENT_CERT_HEADER:
                module_headers.setdefault(lowered, []).append(value)
                continue
            if lowered == REQUEST_ID_HEADER:
                request_id = value
                continue
            if lowered == CLIENT_PORT_HEADER:
                client_port = value
                continue
            if lowered == HTTP_VERSION_HEADER:
                http_versions.append(value)
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
        if len(http_versions) > 1:
            await send_refusal(scope, send, 400)
            return
        scope["headers"] = kept
        if http_versions:
            http_version = _HTTP_VERSIONS.get(http_versions[0].strip())
            if http_version is not None:
                scope["http_version"] = http_version
        if forwarded_for:
            last_hop = forwarded_for.split(b",")[-1].strip().decode("latin-1")
            if last_hop:
                port = decode_client_port(client_port) if client_port is not None else None
                scope["client"] = (last_hop, port or 0)
        if forwarded_proto:
            scheme = _SCHEMES[kind].get(forwarded_proto.strip().lower())
            if scheme is not None:
                scope["scheme"] = scheme
        if self.path_base:
            path: str = scope["path"]
            if path == self.path_base or path.startswith(self.path_base + "/"):
                scope["root_path"] = self.path_base
        if request_id is not None:
            # Not reset when the app returns: the request stage, outside this layer, logs an
            # exception of the app's after it, and that line carries the id too. The server
            # runs each request in a task of its own, which the value goes with.
            REQUEST_ID.set(request_id.decode("latin-1"))
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
