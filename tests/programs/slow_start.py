"""A program whose app's lifespan startup waits for SIGUSR1: what a host answers while its
app starts (health paths, waiting requests). It logs "slow start: waiting for SIGUSR1" once
the signal can be sent, and answers every request with 200 "started"."""

from __future__ import annotations

import logging
import signal
import sys

import anyio

import hostkit

log = logging.getLogger("slow_start")


async def app(scope, receive, send):  # type: ignore[no-untyped-def]
    if scope["type"] == "lifespan":
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                with anyio.open_signal_receiver(signal.SIGUSR1) as signals:
                    log.warning("slow start: waiting for SIGUSR1")
                    async for _ in signals:
                        break
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                await send({"type": "lifespan.shutdown.complete"})
                return
    await send({"type": "http.response.start", "status": 200,
                "headers": [(b"content-length", b"7")]})
    await send({"type": "http.response.body", "body": b"started"})


if __name__ == "__main__":
    hostkit.Host.create_default_builder(sys.argv[1:]).use_app(app).build().run()
