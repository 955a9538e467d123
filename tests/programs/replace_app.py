"""The app of the rolling-replacement tests (tests/test_child_replacement.py), run as an
OutOfProcess child and steered by files in its working directory (the content root):

- ``fail_start`` exists: the process exits with status 1 before it listens (a new child
  that fails to start);
- ``hang`` exists: the first ``/health`` request to see it takes it (renames it to
  ``hang.PID``) and blocks the event loop for good: the process still accepts connections
  (the kernel does) but never answers again.

Its lifespan startup takes ``[app] startup_delay`` seconds (default 0), so a cold start is
long enough to tell from a request that did not wait for one. Paths:

- ``/pid``: this process's pid, then ``[app] greeting`` (``pid greeting``);
- ``/health``: 200 ``ok``;
- ``/wait?NAME``: answers ``waited`` once a file NAME exists (prints "replace_app: pid PID
  waits for NAME"; 30 s at most);
- ``/grow?MIB``: allocates that much memory (touched, so it is resident) and keeps it.
"""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path

import anyio

import hostkit

_kept: list[bytearray] = []


def make_app(greeting: str, startup_delay: float):  # type: ignore[no-untyped-def]
    async def app(scope, receive, send):  # type: ignore[no-untyped-def]
        if scope["type"] == "lifespan":
            while True:
                message = await receive()
                if message["type"] == "lifespan.startup":
                    await anyio.sleep(startup_delay)
                    await send({"type": "lifespan.startup.complete"})
                elif message["type"] == "lifespan.shutdown":
                    await send({"type": "lifespan.shutdown.complete"})
                    return
        path, query = scope["path"], scope["query_string"].decode()
        status, body = 200, b""
        if path == "/pid":
            body = f"{os.getpid()} {greeting}".encode()
        elif path == "/health":
            try:
                os.rename("hang", f"hang.{os.getpid()}")
            except OSError:
                body = b"ok"
            else:
                print(f"replace_app: pid {os.getpid()} hangs now", flush=True)
                time.sleep(3600)
        elif path == "/wait":
            print(f"replace_app: pid {os.getpid()} waits for {query}", flush=True)
            with anyio.move_on_after(30):
                while not Path(query).exists():
                    await anyio.sleep(0.02)
            body = b"waited"
        elif path == "/grow":
            _kept.append(bytearray(b"x") * (int(query) * 1024 * 1024))
            body = b"grown"
        else:
            status, body = 404, b"not found"
        await send({"type": "http.response.start", "status": status,
                    "headers": [(b"content-type", b"text/plain")]})
        await send({"type": "http.response.body", "body": body})

    return app


if __name__ == "__main__":
    if Path("fail_start").exists():
        print("replace_app: fail_start exists, exiting", flush=True)
        sys.exit(1)
    builder = hostkit.Host.create_default_builder(sys.argv[1:])
    configuration = builder.configuration
    builder.use_app(make_app(str(configuration.get("app.greeting", "")),
                             float(configuration.get("app.startup_delay", 0))))
    builder.build().run()
