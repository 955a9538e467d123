"""An app whose routes use asyncio-only code, for the trio hint (``async_backend = "trio"``):

- ``/sleep``: ``await asyncio.sleep(0)`` (``RuntimeError: no running event loop`` on trio);
- ``/sync_to_async``: asgiref's ``sync_to_async`` (the same error, from asgiref);
- ``/future``: awaits a pending asyncio future (``TypeError: trio.run received unrecognized
  yield message``; on asyncio too it fails: the future is of another loop);
- ``/fine``: 200, no asyncio.

On asyncio ``/sleep``, ``/sync_to_async`` and ``/fine`` answer 200.
"""

from __future__ import annotations

import asyncio
import sys

from asgiref.sync import sync_to_async

import hostkit


def _add(a: int, b: int) -> int:
    return a + b


async def app(context: hostkit.HttpContext) -> None:
    path = context.request.path
    if path == "/sleep":
        await asyncio.sleep(0)
    elif path == "/sync_to_async":
        await sync_to_async(_add)(1, 2)
    elif path == "/future":
        loop = asyncio.new_event_loop()
        try:
            await loop.create_future()  # never done: what an asyncio library awaits
        finally:
            loop.close()
    await context.response.write("fine")


if __name__ == "__main__":
    hostkit.Host.create_default_builder(sys.argv[1:]).use_app(app).build().run()
