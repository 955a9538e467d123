"""The app of the InProcess HTTP/2 tests (tests/test_http2_inprocess.py,
tests/security/test_h2_floods_inprocess.py) and of bench/http2.py's flood figures.

Routes:

- ``/headers``: JSON of what the app sees: ``http_version``, ``headers``, ``method``,
  ``path``, ``user`` (the principal's name, ``None`` when anonymous);
- ``/upload``: reads the body as it streams in, answers ``{"length": N, "sha256": H,
  "chunks": C}``;
- ``/stream?BYTES``: BYTES bytes in 64 KiB chunks (default 8 MiB), no Content-Length;
- ``/slow?SECONDS``: answers after SECONDS (default 5);
- ``/started``: how many requests the app has been called with so far (this one included);
- anything else: ``ok``.
"""

from __future__ import annotations

import hashlib
import json
import sys
from typing import Any

import anyio

import hostkit

_CHUNK = b"x" * (64 * 1024)
_started = 0


async def _answer(send: Any, body: bytes, content_type: bytes = b"text/plain") -> None:
    await send({"type": "http.response.start", "status": 200,
                "headers": [(b"content-type", content_type),
                            (b"content-length", str(len(body)).encode())]})
    await send({"type": "http.response.body", "body": body})


async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
    global _started
    if scope["type"] != "http":
        return
    _started += 1
    path = scope["path"]
    query = scope["query_string"].decode("latin-1")
    if path == "/headers":
        user = scope.get("user")
        await _answer(send, json.dumps({
            "http_version": scope["http_version"], "method": scope["method"], "path": path,
            "headers": [[n.decode("latin-1"), v.decode("latin-1")] for n, v in scope["headers"]],
            "user": user.identity.name if user is not None else None,
        }).encode(), b"application/json")
    elif path == "/upload":
        digest, length, chunks = hashlib.sha256(), 0, 0
        while True:
            message = await receive()
            chunk = message.get("body", b"")
            if chunk:
                chunks += 1
                digest.update(chunk)
                length += len(chunk)
            if not message.get("more_body"):
                break
        await _answer(send, json.dumps({"length": length, "sha256": digest.hexdigest(),
                                        "chunks": chunks}).encode(), b"application/json")
    elif path == "/stream":
        total = int(query or 8 * 1024 * 1024)
        await send({"type": "http.response.start", "status": 200,
                    "headers": [(b"content-type", b"application/octet-stream")]})
        while total > 0:
            piece = _CHUNK[:total]
            total -= len(piece)
            await send({"type": "http.response.body", "body": piece, "more_body": total > 0})
    elif path == "/slow":
        await anyio.sleep(float(query or 5))
        await _answer(send, b"slow")
    elif path == "/started":
        await _answer(send, str(_started).encode())
    else:
        await _answer(send, b"ok")


def create_host_builder(args: list[str]) -> hostkit.HostBuilder:
    return hostkit.Host.create_default_builder(args).use_app(app)


if __name__ == "__main__":
    create_host_builder(sys.argv[1:]).build().run()
