"""The child side of OutOfProcess: the integration layer, outermost in the child's pipeline.

For every HTTP and WebSocket request (SPEC §4):

1. exactly one ``Hostkit-Token`` header equal to the module's token (constant-time compare),
   or 400 with an empty body and the app is not called;
2. the token header is removed from what the app sees;
3. ``X-Forwarded-For`` (last hop) becomes the client address, ``X-Forwarded-Proto`` the
   scheme, and the module's path base the ``root_path``.

The token is never logged: nothing here logs, and the contract's repr hides it.
"""

from __future__ import annotations

import hmac

from hostkit.asgi import ASGIApp, Receive, Scope, Send
from hostkit.child_contract import TOKEN_HEADER, ChildContract

_FORWARDED_FOR = b"x-forwarded-for"
_FORWARDED_PROTO = b"x-forwarded-proto"
_SCHEMES = {"http": {b"http": "http", b"https": "https"},
            "websocket": {b"http": "ws", b"https": "wss"}}


async def _reject(scope: Scope, send: Send) -> None:
    """400 with an empty body (for a WebSocket, through the HTTP-response extension)."""
    if scope["type"] == "http":
        kind = "http.response"
    elif "websocket.http.response" in scope.get("extensions", {}):
        kind = "websocket.http.response"
    else:
        await send({"type": "websocket.close", "code": 1008})
        return
    await send({"type": f"{kind}.start", "status": 400,
                "headers": [(b"content-length", b"0")]})
    await send({"type": f"{kind}.body", "body": b""})


class IntegrationMiddleware:
    """ASGI middleware applying the module's contract; see the module docstring."""

    def __init__(self, app: ASGIApp, *, contract: ChildContract):
        self.app = app
        self.token = contract.token.encode("ascii")
        base = contract.path_base.rstrip("/")
        self.path_base = base  # "" when the app is at the root

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        kind = scope["type"]
        if kind != "http" and kind != "websocket":
            await self.app(scope, receive, send)
            return
        token: bytes | None = None
        count = 0
        kept = []
        forwarded_for = forwarded_proto = None
        for name, value in scope["headers"]:
            lowered = name.lower()
            if lowered == TOKEN_HEADER:
                token = value
                count += 1
                continue
            if lowered == _FORWARDED_FOR:
                forwarded_for = value
            elif lowered == _FORWARDED_PROTO:
                forwarded_proto = value
            kept.append((name, value))
        # compare_digest runs in time independent of where the values differ.
        if count != 1 or not hmac.compare_digest(token or b"", self.token):
            await _reject(scope, send)
            return
        scope = dict(scope)
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
