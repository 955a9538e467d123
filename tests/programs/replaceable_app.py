"""A hostkit app whose processes can be made to fail, hang, grow or block on demand, for the
tests of rolling replacement (``tests/test_worker_replacement.py``).

Marker files in the content root switch behaviours on while they exist:

- ``fail_start``: a supervisor's worker prints a line and exits with status 3 before it
  builds its host (the supervisor itself, and a host without one, start normally);
- ``hang_health``: ``GET /health`` never answers (as an app stuck on its database would).

Paths: ``/pid`` answers the pid of the process that ran the request (``text/plain``);
``/work`` reads the request body and answers ``PID LENGTH``; ``/health`` answers ``healthy``;
``/allocate?MIB`` keeps ``MIB`` MiB (written, so resident) for the life of the process;
``/block?SECONDS`` blocks the event loop (``time.sleep``); ``/text`` answers ``TEXT`` from
the module ``handler`` in the content root (``handler.py``, which a test edits), 404 without
one. It logs "replaceable: …" lines a test can wait for.
"""

from __future__ import annotations

import importlib
import logging
import os
import sys
import time
from collections.abc import Awaitable, Callable
from types import ModuleType

import anyio

import hostkit
from hostkit.worker_contract import current_worker

log = logging.getLogger("replaceable")
_MIB = 1024 * 1024
#: What ``/allocate`` keeps alive.
_held: list[bytes] = []


def _handler(content_root: str) -> ModuleType | None:
    """The content root's ``handler`` module, imported once per process; None without one."""
    if not os.path.exists(os.path.join(content_root, "handler.py")):
        return None
    if content_root not in sys.path:
        sys.path.insert(0, content_root)
    return importlib.import_module("handler")


def create_app(content_root: str) -> Callable[[hostkit.HttpContext], Awaitable[None]]:
    handler = _handler(content_root)

    async def app(context: hostkit.HttpContext) -> None:
        request, response = context.request, context.response
        response.headers["content-type"] = "text/plain"
        path = request.path
        if path == "/pid":
            await response.write(str(os.getpid()))
        elif path == "/work":
            body = await request.body()
            await response.write(f"{os.getpid()} {len(body)}")
        elif path == "/health":
            if os.path.exists(os.path.join(content_root, "hang_health")):
                log.warning("replaceable: health check hangs")
                await anyio.sleep_forever()
            await response.write("healthy")
        elif path == "/allocate":
            mib = int(request.query_string or "1")
            _held.append(b"\x01" * (mib * _MIB))
            log.warning("replaceable: holding %d MiB", mib * len(_held))
            await response.write(f"{os.getpid()} holds {mib * len(_held)} MiB")
        elif path == "/block":
            log.warning("replaceable: blocking the event loop")
            time.sleep(float(request.query_string or "1"))
            await response.write("unblocked")
        elif path == "/text" and handler is not None:
            await response.write(f"{os.getpid()} {handler.TEXT}")
        else:
            response.status_code = 404
            await response.write("not found")

    return app


def main() -> None:
    builder = hostkit.Host.create_default_builder(sys.argv[1:])
    content_root = str(builder.configuration.content_root)
    if current_worker() is not None and os.path.exists(os.path.join(content_root, "fail_start")):
        print("replaceable: fail_start exists, this worker exits (on purpose)", flush=True)
        sys.exit(3)
    builder.use_app(create_app(content_root)).build().run()


if __name__ == "__main__":
    main()
