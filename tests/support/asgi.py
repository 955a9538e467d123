"""Driving an ASGI app, or hostkit's request stage around one, with in-memory calls.

:func:`call` runs an app for one scope (:func:`http_scope`) with an :class:`Exchange` that
feeds it body chunks and records what it sends; :func:`stage` wraps an app or handler in the
:class:`~hostkit.request_stage.RequestStage` a server would call.
"""

from __future__ import annotations

import os
from typing import Any

import anyio

from hostkit.asgi import ASGIApp, Message
from hostkit.context import Features
from hostkit.pipeline import as_terminal_app
from hostkit.request_stage import RequestStage

FEATURES = Features("InProcess", os.getpid(), "python", "test")


def http_scope(path: str = "/", method: str = "GET",
               headers: list[tuple[bytes, bytes]] | None = None) -> dict[str, Any]:
    return {"type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1", "method": method,
            "scheme": "http", "path": path, "raw_path": path.encode(), "root_path": "",
            "query_string": b"q=1", "headers": headers or [(b"host", b"example.test")],
            "client": ("10.0.0.7", 5555), "server": ("127.0.0.1", 8000)}


class Exchange:
    """Feeds body chunks to an app and records what it sends."""

    def __init__(self, chunks: list[bytes] | None = None, disconnect_after: bool = False):
        self.inbox: list[Message] = [
            {"type": "http.request", "body": c, "more_body": i < len(chunks or []) - 1}
            for i, c in enumerate(chunks or [b""])]
        self.disconnect = anyio.Event()
        if disconnect_after:
            self.disconnect.set()
        self.sent: list[Message] = []

    async def receive(self) -> Message:
        if self.inbox:
            return self.inbox.pop(0)
        await self.disconnect.wait()
        return {"type": "http.disconnect"}

    async def send(self, message: Message) -> None:
        self.sent.append(message)

    @property
    def status(self) -> int:
        return next(m["status"] for m in self.sent if m["type"] == "http.response.start")

    @property
    def headers(self) -> dict[bytes, bytes]:
        start = next(m for m in self.sent if m["type"] == "http.response.start")
        return dict(start["headers"])

    @property
    def body(self) -> bytes:
        return b"".join(m.get("body", b"") for m in self.sent if m["type"] == "http.response.body")


class ServerCycle(Exchange):
    """What a real server keeps per request (uvicorn's RequestResponseCycle): the scope."""

    def __init__(self, scope: dict[str, Any], chunks: list[bytes] | None = None):
        super().__init__(chunks)
        self.scope = scope


async def call(app: ASGIApp, scope: dict[str, Any] | None = None,
               exchange: Exchange | None = None) -> Exchange:
    exchange = exchange or Exchange()
    with anyio.fail_after(5):
        await app(scope or http_scope(), exchange.receive, exchange.send)
    return exchange


def stage(app: Any, **overrides: Any) -> RequestStage:
    options = {"max_request_body_size": 100, "allow_synchronous_io": False,
               "show_details": False, "bare_error_pages": False, **overrides}
    return RequestStage(as_terminal_app(app), FEATURES, **options)
