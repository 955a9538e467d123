"""A hostkit program that streams a large response, for the slow-reader memory tests.

- ``/big?BYTES``: ``BYTES`` bytes (default 10 MB) written in 64 KB pieces, no
  ``Content-Length`` (chunked to an HTTP/1.1 client);
- anything else: ``hello``, the probe clients' request.
"""

from __future__ import annotations

import sys

import hostkit

_PIECE = b"x" * 65536


async def app(context: hostkit.HttpContext) -> None:
    request, response = context.request, context.response
    if request.path != "/big":
        await response.write("hello")
        return
    left = int(request.query_string or 10_000_000)
    while left > 0:
        piece = _PIECE[:left]
        left -= len(piece)
        await response.write(piece)


def create_host_builder(args: list[str]) -> hostkit.HostBuilder:
    return hostkit.Host.create_default_builder(args).use_app(app)


if __name__ == "__main__":
    create_host_builder(sys.argv[1:]).build().run()
