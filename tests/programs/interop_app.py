"""The app of the client-interoperability tests (issue 19), run by both hosting models.

- ``/headers``: the request header names the app sees, in order (JSON), and a
  ``Proxy-Authenticate`` response header of the app's own;
- ``/stream``: :data:`CHUNKS` chunks of body, :data:`PAUSE` seconds apart, so a client can
  half-close while the response is being produced.
"""

from __future__ import annotations

import json
import sys

import anyio

import hostkit

CHUNKS = 5
PAUSE = 0.1
#: the ``Proxy-Authenticate`` value ``/headers`` answers with.
CHALLENGE = 'Basic realm="interop"'


def streamed_body() -> bytes:
    """The whole body ``/stream`` sends."""
    return b"".join(b"chunk %d;" % index for index in range(CHUNKS))


async def interop(context: hostkit.HttpContext) -> None:
    """Answer one request according to its path (404 for an unknown one)."""
    request, response = context.request, context.response
    if request.path == "/headers":
        response.headers["content-type"] = "application/json"
        response.headers["proxy-authenticate"] = CHALLENGE
        await response.write(json.dumps([name for name, _ in request.headers.items_all()]))
    elif request.path == "/stream":
        for index in range(CHUNKS):
            await response.write(b"chunk %d;" % index)
            await anyio.sleep(PAUSE)
    else:
        response.status_code = 404
        await response.write("not found")


if __name__ == "__main__":
    hostkit.Host.create_default_builder(sys.argv[1:]).use_app(interop).build().run()
