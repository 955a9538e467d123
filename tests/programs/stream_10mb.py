"""An app that streams a 10 MB response, for measuring what slow readers cost.

Routes:

- ``/stream``: 10 MB (10 * 2**20 bytes, with a ``Content-Length``) in chunks of 64 KiB, each a
  new bytes object, as an app reading a file sends them; ``/stream?chunk=BYTES`` sends chunks
  of ``BYTES`` bytes instead, ``/stream?chunked`` leaves out the ``Content-Length`` (so the
  server frames the body in chunked transfer coding), ``/stream?shared`` sends the same
  chunk objects to every client (made once per size), so the app itself holds nothing per
  connection and what memory grows by is the server's;
- ``/rss``: this process's resident memory in kB (``VmRSS``), as text; ``/rss?trim`` first
  has glibc's ``malloc_trim(0)`` give free heap memory back to the system (what is left is
  memory in use, not free memory the allocator kept);
- any other path: ``ok``, the probe a test's normal client asks for.

Run as ``python stream_10mb.py --urls=... --async_backend=...`` (a hostkit program), or with
``--bare-hypercorn HOST:PORT`` / ``--uvicorn HOST:PORT`` to serve the same app with those
servers alone (asyncio), for comparison.
"""

from __future__ import annotations

import ctypes
import functools
import sys
from pathlib import Path
from urllib.parse import parse_qs

import hostkit

TOTAL = 10 * 2**20
DEFAULT_CHUNK = 64 * 1024
_SOURCE = bytes(range(256)) * (TOTAL // 256)


def _rss_kb() -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return 0


@functools.cache
def _shared_chunks(size: int) -> list[bytes]:
    return [_SOURCE[start:start + size] for start in range(0, TOTAL, size)]


async def _stream(query: dict[str, list[str]], send):  # type: ignore[no-untyped-def]
    chunk = int(query.get("chunk", [DEFAULT_CHUNK])[0])
    shared = _shared_chunks(chunk) if "shared" in query else None
    headers = [(b"content-type", b"application/octet-stream")]
    if "chunked" not in query:
        headers.append((b"content-length", str(TOTAL).encode()))
    await send({"type": "http.response.start", "status": 200, "headers": headers})
    for number, start in enumerate(range(0, TOTAL, chunk)):
        # A slice of bytes is a copy: a new object per chunk, as a file's read() returns.
        body = shared[number] if shared is not None else _SOURCE[start:start + chunk]
        await send({"type": "http.response.body", "body": body, "more_body": True})
    await send({"type": "http.response.body", "body": b""})


async def app(scope, receive, send):  # type: ignore[no-untyped-def]
    if scope["type"] == "lifespan":
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                await send({"type": "lifespan.shutdown.complete"})
                return
    if scope["type"] != "http":
        return
    path = scope["path"]
    if path == "/stream":
        await _stream(parse_qs(scope["query_string"].decode(), keep_blank_values=True), send)
        return
    if path == "/rss" and b"trim" in scope["query_string"]:
        ctypes.CDLL(None).malloc_trim(0)
    body = str(_rss_kb()).encode() if path == "/rss" else b"ok"
    await send({"type": "http.response.start", "status": 200,
                "headers": [(b"content-type", b"text/plain"),
                            (b"content-length", str(len(body)).encode())]})
    await send({"type": "http.response.body", "body": body})


def _serve_alone(server: str, address: str) -> None:
    """Serve ``app`` with ``server`` (``--bare-hypercorn`` or ``--uvicorn``) on asyncio."""
    host, _, port = address.rpartition(":")
    print(f"Now listening on: http://{host}:{port}", flush=True)
    if server == "--uvicorn":
        import uvicorn

        uvicorn.run(app, host=host, port=int(port), log_level="warning", lifespan="on")
        return
    import asyncio

    from hypercorn.asyncio import serve
    from hypercorn.config import Config

    config = Config()
    config.bind = [address]
    config.accesslog = None
    asyncio.run(serve(app, config))  # type: ignore[arg-type]


if __name__ == "__main__":
    if len(sys.argv) == 3 and sys.argv[1] in ("--bare-hypercorn", "--uvicorn"):
        _serve_alone(sys.argv[1], sys.argv[2])
    else:
        hostkit.Host.create_default_builder(sys.argv[1:]).use_app(app).build().run()
