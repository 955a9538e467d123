"""Probing the app in this process: one ``GET [health] app_path`` through the whole request
stage and pipeline, as a client's request would go, without a socket.

A supervisor's InProcess worker probes itself so: before it takes its first request, and
every ``app_interval`` seconds after, reporting each result to its supervisor. A worker whose
event loop is stuck cannot report at all, which its supervisor notices too.
"""

from __future__ import annotations

import math

import anyio

from hostkit.asgi import ASGIApp, Message

#: What a probe's request says it is (``User-Agent``).
PROBE_AGENT = b"hostkit-health"


async def probe(app: ASGIApp, path: str, timeout: float) -> str | None:
    """``GET path`` on ``app``; ``None`` for a 2xx answer within ``timeout`` seconds, else
    why not (for a log line)."""
    target, _, query = path.partition("?")
    scope = {
        "type": "http", "asgi": {"version": "3.0", "spec_version": "2.3"},
        "http_version": "1.1", "method": "GET", "scheme": "http", "path": target,
        "raw_path": target.encode(), "query_string": query.encode(), "root_path": "",
        "headers": [(b"host", b"localhost"), (b"user-agent", PROBE_AGENT)],
        "client": ("127.0.0.1", 0), "server": ("127.0.0.1", 0), "extensions": {},
    }
    status: int | None = None
    complete = anyio.Event()
    requested = False

    async def receive() -> Message:
        nonlocal requested
        if not requested:
            requested = True
            return {"type": "http.request", "body": b"", "more_body": False}
        await complete.wait()
        return {"type": "http.disconnect"}

    async def send(message: Message) -> None:
        nonlocal status
        if message["type"] == "http.response.start":
            status = message["status"]
        elif message["type"] == "http.response.body" and not message.get("more_body"):
            complete.set()

    with anyio.move_on_after(timeout if timeout > 0 else math.inf) as deadline:
        try:
            await app(scope, receive, send)
        except Exception as error:  # the app's failure is the probe's answer
            return f"GET {path} raised {type(error).__name__}: {error}"
        finally:
            complete.set()
    if deadline.cancelled_caught:
        return f"GET {path} got no answer within {timeout:g} s"
    if status is None or not 200 <= status < 300:
        return f"GET {path} answered {status}"
    return None
