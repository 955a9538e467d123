"""The app of tests/test_front_operations.py: what it was told about the client and the
request, as JSON (with an ``X-Request-Id`` of its own, which its front replaces), and one log
line per request ("operations: served PATH"), which the child's log records carry the request
id of. ``/slow?SECONDS`` answers after that long."""

from __future__ import annotations

import json
import logging
import sys

import anyio

import hostkit

log = logging.getLogger("operations")


async def app(context: hostkit.HttpContext) -> None:
    request, response = context.request, context.response
    if request.path == "/slow":
        await anyio.sleep(float(request.query_string or "1"))
    log.warning("operations: served %s", request.path)
    response.headers["content-type"] = "application/json"
    response.headers["x-request-id"] = "set-by-the-app"  # the front's id wins
    await response.write(json.dumps({
        "path": request.path,
        "remote_ip": context.connection.remote_ip,
        "remote_port": context.connection.remote_port,
        "scheme": request.scheme,
        "host": request.host,
        "trace_identifier": context.trace_identifier,
        "headers": request.headers.items_all(),
    }))


if __name__ == "__main__":
    hostkit.Host.create_default_builder(sys.argv[1:]).use_app(app).build().run()
