"""The hostkit program the hardening suites run as the front and, by default, as its child.

Routes (all answers are small, so the suites measure the module, not the app):

- ``/``: ``hello``;
- ``/slow?SECONDS``: answers after sleeping;
- ``POST /apply`` with ``x-apply-tag``: appends the id to ``$LEDGER_FILE`` (one line, one
  ``write`` on an ``O_APPEND`` descriptor, so lines never mix) and answers ``applied ID``;
  the crash suite counts how often each POST was applied;
- ``/log?BYTES&SINK``: writes BYTES bytes of output in 16 KB lines to stdout (``SINK`` =
  ``stdout``) or to ``/dev/null`` (``null``), the same work without a reader behind it;
- ``/calls``: how many times the app has been called in this process (this call included);
- ``/whoami``: what the app sees of the request: client address, scheme, host, path base and
  every header, as JSON.

Every call of the app writes nothing unless asked to; it never sees the pairing token.
"""

from __future__ import annotations

import json
import os
import sys

import anyio

import hostkit

_calls = 0
_LINE = b"x" * (16 * 1024 - 1) + b"\n"


def _write_output(total: int, sink: str) -> None:
    target = sys.stdout.buffer if sink == "stdout" else _devnull()
    while total > 0:
        target.write(_LINE[:total])
        total -= len(_LINE)
    target.flush()


_null = None


def _devnull():  # type: ignore[no-untyped-def]
    global _null
    if _null is None:
        _null = open(os.devnull, "wb")  # noqa: SIM115 - kept for the process's life
    return _null


def _apply(request_id: str) -> None:
    descriptor = os.open(os.environ["LEDGER_FILE"], os.O_WRONLY | os.O_APPEND | os.O_CREAT)
    try:
        os.write(descriptor, f"{request_id}\n".encode())
    finally:
        os.close(descriptor)


async def app(context: hostkit.HttpContext) -> None:
    global _calls
    _calls += 1
    request, response = context.request, context.response
    path = request.path
    if path == "/slow":
        await anyio.sleep(float(request.query_string or "1"))
        await response.write("slow done")
    elif path == "/apply":
        await request.body()
        request_id = request.headers.get("x-apply-tag", "")
        _apply(request_id)
        await response.write(f"applied {request_id}")
    elif path == "/log":
        size, _, sink = request.query_string.partition("&")
        _write_output(int(size or "0"), sink or "stdout")
        await response.write("logged")
    elif path == "/calls":
        await response.write(str(_calls))
    elif path == "/whoami":
        await request.body()
        response.headers["content-type"] = "application/json"
        await response.write(json.dumps({
            "remote_ip": context.connection.remote_ip,
            "remote_port": context.connection.remote_port, "scheme": request.scheme,
            "host": request.host, "path_base": request.path_base,
            "headers": request.headers.items_all()}))
    else:
        await response.write("hello")


def create_host_builder(args: list[str]) -> hostkit.HostBuilder:
    return hostkit.Host.create_default_builder(args).use_app(app)


if __name__ == "__main__":
    create_host_builder(sys.argv[1:]).build().run()
