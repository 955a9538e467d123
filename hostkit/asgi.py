"""ASGI 3 type aliases used across hostkit."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]


async def send_refusal(scope: Scope, send: Send, status: int,
                       headers: list[tuple[bytes, bytes]] | None = None) -> None:
    """Answer an HTTP or WebSocket request with ``status`` and an empty body, before the app.

    A WebSocket handshake gets the status through the ``websocket.http.response`` extension
    when the server has it, else a policy-violation close (the server answers 403).
    """
    if scope["type"] == "http":
        kind = "http.response"
    elif "websocket.http.response" in scope.get("extensions", {}):
        kind = "websocket.http.response"
    else:
        await send({"type": "websocket.close", "code": 1008})
        return
    await send({"type": f"{kind}.start", "status": status,
                "headers": [(b"content-length", b"0"), *(headers or ())]})
    await send({"type": f"{kind}.body", "body": b""})
