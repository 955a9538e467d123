"""Runs the app's ASGI lifespan protocol, the same way under every server plugin.

The host runs the lifespan itself (servers get a pipeline that answers ``lifespan`` trivially),
so a startup failure becomes the "500.30" state instead of a silent exit, whichever server
serves the requests.
"""

from __future__ import annotations

import logging
import traceback
from typing import Any

import anyio
from anyio.abc import TaskGroup

from hostkit.asgi import ASGIApp, Message

logger = logging.getLogger("hostkit.lifespan")

_ENDED = {"type": "hostkit.lifespan.ended"}


class AppStartFailure:
    """Why the app failed to start: a one-line ``message`` and the full ``detail``."""

    def __init__(self, message: str, detail: str):
        self.message = message
        self.detail = detail


class Lifespan:
    """One run of the lifespan protocol against ``app``.

    Call :meth:`startup` once, then :meth:`shutdown` once. ``state`` is the lifespan state
    dict; the server stage gives each request a shallow copy of it (``scope["state"]``).
    """

    def __init__(self, app: ASGIApp):
        self.app = app
        self.state: dict[str, Any] = {}
        self.supported = False
        self._to_app, self._app_inbox = anyio.create_memory_object_stream[Message](1)
        self._app_outbox, self._from_app = anyio.create_memory_object_stream[Message](1)
        self._received: list[str] = []
        self._error: BaseException | None = None

    async def startup(self, task_group: TaskGroup) -> AppStartFailure | None:
        """Start the app's lifespan task in ``task_group`` and wait for its startup.

        Returns ``None`` when the app started (or does not speak lifespan), else the failure.
        """
        task_group.start_soon(self._run_app)
        await self._to_app.send({"type": "lifespan.startup"})
        message = await self._from_app.receive()
        kind = message["type"]
        if kind == "lifespan.startup.complete":
            self.supported = True
            return None
        if kind == "lifespan.startup.failed":
            text = message.get("message", "") or "lifespan.startup.failed"
            return AppStartFailure(text, text)
        # The app ended. Before it read the startup message, it does not speak lifespan.
        if not self._received:
            logger.debug("the app does not support the ASGI lifespan protocol")
            return None
        error = self._error
        if error is None:
            return AppStartFailure("the app returned during lifespan startup",
                                  "the app returned during lifespan startup")
        detail = "".join(traceback.format_exception(error))
        return AppStartFailure(f"{type(error).__name__}: {error}", detail)

    async def shutdown(self) -> None:
        """Tell the app to shut down and wait until it says it has (or ends)."""
        if not self.supported:
            return
        try:
            await self._to_app.send({"type": "lifespan.shutdown"})
            message = await self._from_app.receive()
        except (anyio.BrokenResourceError, anyio.ClosedResourceError, anyio.EndOfStream):
            return
        if message["type"] == "lifespan.shutdown.failed":
            logger.error("the app failed to shut down: %s", message.get("message", ""))
        elif message is _ENDED and self._error is not None:
            logger.error("the app failed to shut down", exc_info=self._error)

    async def _receive(self) -> Message:
        message = await self._app_inbox.receive()
        self._received.append(message["type"])
        return message

    async def _send(self, message: Message) -> None:
        await self._app_outbox.send(message)

    async def _run_app(self) -> None:
        scope = {"type": "lifespan", "asgi": {"version": "3.0", "spec_version": "2.0"},
                 "state": self.state}
        try:
            await self.app(scope, self._receive, self._send)
        except Exception as error:  # the app's own failure: reported, never crashes the host
            self._error = error
        finally:
            with anyio.CancelScope(shield=True):
                try:
                    await self._app_outbox.send(_ENDED)
                except (anyio.BrokenResourceError, anyio.ClosedResourceError):
                    pass
