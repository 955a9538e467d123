"""The trivial ASGI app every benchmark serves: 200, ``Hello, world!``, text/plain.

Both the bare server and hostkit import this one object, so the app's own cost is identical
and what a benchmark measures is the serving stack around it.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]

BODY = b"Hello, world!"
HEADERS = ((b"content-type", b"text/plain"), (b"content-length", str(len(BODY)).encode()))


async def _lifespan(receive: Receive, send: Send) -> None:
    """Complete startup and shutdown at once, so every server sees a well-behaved app."""
    while True:
        message = await receive()
        if message["type"] == "lifespan.startup":
            await send({"type": "lifespan.startup.complete"})
        elif message["type"] == "lifespan.shutdown":
            await send({"type": "lifespan.shutdown.complete"})
            return


async def app(scope: MutableMapping[str, Any], receive: Receive, send: Send) -> None:
    """Answer every HTTP request with 200 ``Hello, world!``; ignore the request body."""
    if scope["type"] == "lifespan":
        await _lifespan(receive, send)
        return
    if scope["type"] != "http":
        return  # websockets: closing without accepting makes the server refuse the handshake
    await send({"type": "http.response.start", "status": 200, "headers": list(HEADERS)})
    await send({"type": "http.response.body", "body": BODY, "more_body": False})
