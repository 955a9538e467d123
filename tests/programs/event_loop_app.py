"""An app that answers every request with the event loop it runs on (tests/test_event_loop.py).

The body is JSON: ``loop`` is ``"trio"``, or the top-level module of the running asyncio loop's
class (``"asyncio"`` for the standard library's, ``"uvloop"``), read from the loop itself, not
from hostkit; ``pid`` is the process that answered.
"""

from __future__ import annotations

import asyncio
import json
import os
import sys

import sniffio

import hostkit


def running_loop() -> str:
    library = sniffio.current_async_library()
    if library != "asyncio":
        return library
    return type(asyncio.get_running_loop()).__module__.partition(".")[0]


async def answer(context: hostkit.HttpContext) -> None:
    context.response.headers["content-type"] = "application/json"
    await context.response.write(json.dumps({"loop": running_loop(), "pid": os.getpid()}))


if __name__ == "__main__":
    hostkit.Host.create_default_builder(sys.argv[1:]).use_app(answer).build().run()
