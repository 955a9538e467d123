"""An app whose lifespan shutdown takes a minute: it prints "slow_shutdown: shutting down"
when it begins, so a test can cut it short with a second signal."""

from __future__ import annotations

import sys

import anyio

import hostkit


async def app(scope, receive, send):  # type: ignore[no-untyped-def]
    if scope["type"] == "lifespan":
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                print("slow_shutdown: shutting down", flush=True)
                await anyio.sleep(60)
                await send({"type": "lifespan.shutdown.complete"})
                return
    await send({"type": "http.response.start", "status": 204, "headers": []})
    await send({"type": "http.response.body", "body": b""})


if __name__ == "__main__":
    hostkit.Host.create_default_builder(sys.argv[1:]).use_app(app).build().run()
