"""The app behind the front in the HTTP/2 tests (tests/test_front_http2.py, the flood and
smuggling suites): a plain ASGI app, run as the module and as its child.

Routes:

- ``/headers``: JSON of what the app sees: ``headers`` (every one, as ``[name, value]``),
  ``http_version`` (``scope["http_version"]``), ``method``, ``path``, ``query``;
- ``/upload``: reads the whole body as it streams in; answers ``{"length": N, "sha256": H}``;
- ``/stream?BYTES``: BYTES bytes (default 10 MB) in 64 KB chunks with a Content-Length
  (``/stream-chunked?BYTES``: the same without one);
- anything else: ``ok``.
"""

from __future__ import annotations

import hashlib
import json
import sys
from typing import Any

import hostkit

_CHUNK = b"x" * (64 * 1024)


async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
    if scope["type"] != "http":
        return
    path = scope["path"]
    body = b"ok"
    headers = [(b"content-type", b"text/plain")]
    if path == "/headers":
        body = json.dumps({
            "headers": [[n.decode("latin-1"), v.decode("latin-1")] for n, v in scope["headers"]],
            "http_version": scope.get("http_version"), "method": scope["method"],
            "path": scope["path"], "query": scope["query_string"].decode("latin-1"),
        }).encode()
        headers = [(b"content-type", b"application/json")]
    elif path == "/upload":
        digest, length = hashlib.sha256(), 0
        while True:
            message = await receive()
            chunk = message.get("body", b"")
            digest.update(chunk)
            length += len(chunk)
            if not message.get("more_body"):
                break
        body = json.dumps({"length": length, "sha256": digest.hexdigest()}).encode()
    elif path in ("/stream", "/stream-chunked"):
        total = int(scope["query_string"] or 10 * 1024 * 1024)
        if path == "/stream":
            headers.append((b"content-length", str(total).encode()))
        await send({"type": "http.response.start", "status": 200, "headers": headers})
        while total > 0:
            piece = _CHUNK[:total]
            total -= len(piece)
            await send({"type": "http.response.body", "body": piece, "more_body": total > 0})
        return
    headers.append((b"content-length", str(len(body)).encode()))
    await send({"type": "http.response.start", "status": 200, "headers": headers})
    await send({"type": "http.response.body", "body": body})


def create_host_builder(args: list[str]) -> hostkit.HostBuilder:
    return hostkit.Host.create_default_builder(args).use_app(app)


if __name__ == "__main__":
    create_host_builder(sys.argv[1:]).build().run()
