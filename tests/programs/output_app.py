"""An app that writes to its output, run as an OutOfProcess front and as its child
(``tests/test_child_output.py``): what the front relays of its children's output.

- ``/print?TEXT``: ``print("the view says", TEXT)`` (Python's own buffering) and answers the
  child's pid;
- ``/raise``: raises ``RuntimeError("boom in the view")``, which the child logs with its
  traceback (and answers 500);
- ``/flood?BYTES``: writes BYTES bytes of 100-byte lines to stdout as fast as it can, in
  1 MB writes, and answers ``flooded``;
- anything else: ``hello``.
"""

from __future__ import annotations

import os
import sys

import hostkit

_LINES = (b"f" * 99 + b"\n") * (2**20 // 100)


async def app(context: hostkit.HttpContext) -> None:
    request, response = context.request, context.response
    if request.path == "/print":
        print("the view says", request.query_string)
        await response.write(str(os.getpid()))
    elif request.path == "/raise":
        raise RuntimeError("boom in the view")
    elif request.path == "/flood":
        left = int(request.query_string)
        while left > 0:
            left -= sys.stdout.buffer.write(_LINES[:left])
        sys.stdout.buffer.flush()
        await response.write("flooded")
    else:
        await response.write("hello")


if __name__ == "__main__":
    hostkit.Host.create_default_builder(sys.argv[1:]).use_app(app).build().run()
