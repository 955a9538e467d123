"""The probe: a hostkit program with one path per behaviour a test checks.

The conformance kit runs it with ``server = NAME`` (``python -m hostkit.testing.probe
[HOSTKIT ARGUMENTS...]``), and hostkit's own integration tests run it too. It logs
"probe: …" lines that tests wait for instead of sleeping, and has an ASGI lifespan
(:class:`LifespanProbe`) that logs its startup and shutdown and leaves a mark in the
lifespan state every request sees.
"""

from __future__ import annotations

import json
import logging
import os
import sys

import anyio
import anyio.to_thread
import sniffio

import hostkit
from hostkit.asgi import ASGIApp, Receive, Scope, Send

log = logging.getLogger("probe")

#: What :class:`LifespanProbe` puts in the lifespan state at startup.
LIFESPAN_MARK = {"probe": "started"}


class LifespanProbe:
    """ASGI layer answering the lifespan protocol: logs "probe: lifespan startup" and
    "probe: lifespan shutdown" and puts :data:`LIFESPAN_MARK` in the lifespan state."""

    def __init__(self, app: ASGIApp):
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "lifespan":
            await self.app(scope, receive, send)
            return
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                scope.setdefault("state", {}).update(LIFESPAN_MARK)
                log.warning("probe: lifespan startup")
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                log.warning("probe: lifespan shutdown")
                await send({"type": "lifespan.shutdown.complete"})
                return


async def probe(context: hostkit.HttpContext) -> None:
    """Answer one request according to its path (404 for an unknown one)."""
    request, response = context.request, context.response
    path = request.path
    if path == "/features":
        features = context.features
        response.headers["content-type"] = "application/json"
        await response.write(json.dumps({
            "hosting_model": features.hosting_model,
            "process_id": features.process_id,
            "process_name": features.process_name,
            "server": features.server,
            "async_library": sniffio.current_async_library(),
            "lifespan_state": dict(context.scope.get("state") or {}),
            "method": request.method,
            "scheme": request.scheme,
            "host": request.host,
            "path": request.path,
            "path_base": request.path_base,
            "query_string": request.query_string,
            "remote_ip": context.connection.remote_ip,
            "local_port": context.connection.local_port,
            "authenticated": context.user.identity.is_authenticated,
            "headers": request.headers.items_all(),
        }))
    elif path == "/headers":
        response.status_code = int(request.query_string or "200")
        for value in request.headers.get_all("x-echo"):
            response.headers.add("x-reply", value)
        await response.write("headers echoed")
    elif path == "/echo":
        async for chunk in request.stream():
            await response.write(chunk)
    elif path == "/length":
        total = 0
        async for chunk in request.stream():
            total += len(chunk)
        await response.write(str(total))
    elif path == "/slow":
        log.warning("probe: slow request started")
        await anyio.sleep(float(request.query_string or "1"))
        await response.write("slow done")
    elif path == "/wait-abort":
        log.warning("probe: waiting for abort")
        with anyio.move_on_after(20):
            await context.request_aborted.wait()
        log.warning("probe: request aborted=%s", context.request_aborted.is_set())
    elif path == "/download":
        remaining = int(request.query_string or "0")
        chunk = b"d" * 65536
        response.headers["content-length"] = str(remaining)
        while remaining > 0:
            await response.write(chunk[:remaining])
            remaining -= len(chunk)
    elif path == "/half":
        await response.write("first part of the body;")
        log.warning("probe: half sent")
        await anyio.sleep(30)
        await response.write("never sent")
    elif path == "/env":
        response.headers["content-type"] = "application/json"
        await response.write(json.dumps({
            "token_in_environ": "HOSTKIT_TOKEN" in os.environ,
            "port": os.environ.get("HOSTKIT_PORT"),
            "greeting": os.environ.get("GREETING"),
            "cwd": os.getcwd(),
        }))
    elif path == "/spam":
        line = "x" * 1023 + "\n"
        for _ in range(int(request.query_string or "0") // 1024):
            sys.stdout.write(line)
        sys.stdout.flush()
        await response.write("spammed")
    elif path == "/boom":
        raise RuntimeError("boom on purpose")
    elif path == "/sync":
        await anyio.to_thread.run_sync(response.write_sync, "sync write ok")
    else:
        response.status_code = 404
        await response.write("not found")


def create_host_builder(args: list[str]) -> hostkit.HostBuilder:
    """The probe's builder: the default one for ``args``, the lifespan layer, the probe."""
    return (hostkit.Host.create_default_builder(args)
            .use_asgi_middleware(LifespanProbe).use_app(probe))


if __name__ == "__main__":
    create_host_builder(sys.argv[1:]).build().run()
