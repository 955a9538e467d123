"""A hostkit program whose app records every request it receives (the InProcess smuggling
suite's "child": ``tests/hardening/smuggling.py``).

The app is plain ASGI behind hostkit's whole pipeline. For each request whose body it read
to the end, it appends one JSON line to ``$RECORDER_LOG`` (method, target as
``raw_path[?query_string]``, every header of the scope, the body in base64, a serial number
counting over the whole process) with one ``write`` before it answers, and answers ``200``
with ``x-recorder-serial``. ``GET /__recorder_fence__`` is not recorded: it answers the number
of lines written so far (the suite's fence: what reached the app before it is logged).
"""

from __future__ import annotations

import base64
import itertools
import json
import os
import sys
from typing import Any

import hostkit

FENCE_PATH = "/__recorder_fence__"
_serials = itertools.count(1)
_log = open(os.environ["RECORDER_LOG"], "a", encoding="ascii")  # noqa: SIM115 - process-long
_lines = 0


async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
    global _lines
    if scope["type"] != "http":
        if scope["type"] == "lifespan":
            while (message := await receive())["type"] != "lifespan.shutdown":
                await send({"type": "lifespan.startup.complete"})
            await send({"type": "lifespan.shutdown.complete"})
        return
    if scope["path"] == FENCE_PATH:
        body = str(_lines).encode("ascii")
        await send({"type": "http.response.start", "status": 200,
                    "headers": [(b"content-length", str(len(body)).encode("ascii"))]})
        await send({"type": "http.response.body", "body": body})
        return
    chunks = []
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":  # not whole: not recorded
            await send({"type": "http.response.start", "status": 400, "headers": []})
            await send({"type": "http.response.body", "body": b""})
            return
        chunks.append(message.get("body", b""))
        if not message.get("more_body", False):
            break
    serial = next(_serials)
    target = scope["raw_path"] + (b"?" + scope["query_string"] if scope["query_string"] else b"")
    record = json.dumps({
        "serial": serial, "method": scope["method"], "target": target.decode("latin-1"),
        "headers": [[name.decode("latin-1"), value.decode("latin-1")]
                    for name, value in scope["headers"]],
        "body": base64.b64encode(b"".join(chunks)).decode("ascii")})
    _log.write(record + "\n")
    _log.flush()
    _lines += 1
    await send({"type": "http.response.start", "status": 200,
                "headers": [(b"content-length", b"2"),
                            (b"x-recorder-serial", str(serial).encode("ascii"))]})
    await send({"type": "http.response.body", "body": b"ok"})


if __name__ == "__main__":
    hostkit.Host.create_default_builder(sys.argv[1:]).use_app(app).build().run()
