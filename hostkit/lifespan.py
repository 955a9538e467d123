"""Runs the app's ASGI lifespan protocol, the same way under every server plugin.

The host runs the lifespan itself (servers get a pipeline that answers ``lifespan`` trivially),
so a startup failure becomes the "500.30" state instead of a silent exit, whichever server
serves the requests, and a startup that outlasts ``startup_time_limit`` the "500.37" state
(ANCM's "Failed to Start Within Startup Time Limit"). A host that does not serve its start
failure (``capture_startup_errors = false``, an OutOfProcess child) raises
:class:`AppStartError` instead, which :meth:`hostkit.Host.run` turns into exit status 3.
"""

from __future__ import annotations

import logging
import math
import traceback
from typing import Any

import anyio
from anyio.abc import TaskGroup

from hostkit import error_pages
from hostkit.asgi import ASGIApp, Message
from hostkit.backend_hints import BackendHints
from hostkit.errors import HostkitError

logger = logging.getLogger("hostkit.lifespan")

_ENDED = {"type": "hostkit.lifespan.ended"}


#: The exit status of a process that ends on its app's start failure (uvicorn's too).
START_FAILURE_EXIT_STATUS = 3


class AppStartFailure:
    """Why the app failed to start: a one-line ``message``, the full ``detail`` (a
    traceback), and the ``title`` of the page requests get meanwhile: 500.30, or 500.37 for a
    startup over ``startup_time_limit``, whose ``summary`` says so."""

    def __init__(self, message: str, detail: str, *,
                 title: str = error_pages.START_FAILURE_TITLE,
                 summary: str = error_pages.START_FAILURE_SUMMARY):
        self.message = message
        self.detail = detail
        self.title = title
        self.summary = summary

    @classmethod
    def of(cls, error: BaseException) -> AppStartFailure:
        """The failure ``error`` is (an exception raised while the app started)."""
        return cls(f"{type(error).__name__}: {error}", "".join(traceback.format_exception(error)))

    @classmethod
    def time_limit(cls, limit: float) -> AppStartFailure:
        """The app's startup did not finish within ``limit`` seconds (``startup_time_limit``)."""
        text = f"the app did not start within startup_time_limit = {limit:g} s"
        return cls(text, text, title=error_pages.START_TIME_LIMIT_TITLE,
                   summary=f"The application did not start within {limit:g} s "
                           "(startup_time_limit).")


class AppStartError(HostkitError):
    """Raised by :meth:`hostkit.Host.run_async` when the app failed to start and the host does
    not serve the failure page: ``capture_startup_errors = false``, or an OutOfProcess child
    (whose front answers 502.5). :meth:`hostkit.Host.run` ends the process with
    ``exit_status`` (3, as uvicorn) instead; ``failure`` says why."""

    exit_status = START_FAILURE_EXIT_STATUS

    def __init__(self, failure: AppStartFailure):
        super().__init__(f"the app failed to start: {failure.message}")
        self.failure = failure


class Lifespan:
    """One run of the lifespan protocol against ``app``.

    Call :meth:`startup` once, then :meth:`shutdown` once. ``state`` is the lifespan state
    dict; the server stage gives each request a shallow copy of it (``scope["state"]``).
    """

    def __init__(self, app: ASGIApp):
        self.app = app
        self.state: dict[str, Any] = {}
        self.supported = False
        # Cancels the app's lifespan call when its startup outlasts the time limit.
        self._app_scope = anyio.CancelScope()
        self._to_app, self._app_inbox = anyio.create_memory_object_stream[Message](1)
        self._app_outbox, self._from_app = anyio.create_memory_object_stream[Message](1)
        self._received: list[str] = []
        self._error: BaseException | None = None

    async def startup(self, task_group: TaskGroup,
                      time_limit: float | None = None) -> AppStartFailure | None:
        """Start the app's lifespan task in ``task_group`` and wait for its startup, at most
        ``time_limit`` seconds (None: as long as it takes).

        Returns ``None`` when the app started (or does not speak lifespan), else the failure;
        past the time limit the app's lifespan call is cancelled and the failure is
        :meth:`AppStartFailure.time_limit`.
        """
        task_group.start_soon(self._run_app)
        with anyio.move_on_after(time_limit if time_limit is not None else math.inf) as limit:
            await self._to_app.send({"type": "lifespan.startup"})
            message = await self._from_app.receive()
        if limit.cancelled_caught:
            assert time_limit is not None
            self._app_scope.cancel()
            return AppStartFailure.time_limit(time_limit)
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
        hint = BackendHints().first_hint(error)
        if hint is not None:
            logger.warning("%s", hint)
        return AppStartFailure.of(error)

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
            with self._app_scope:
                await self.app(scope, self._receive, self._send)
        except Exception as error:  # the app's own failure: reported, never crashes the host
            self._error = error
        finally:
            with anyio.CancelScope(shield=True):
                try:
                    await self._app_outbox.send(_ENDED)
                except (anyio.BrokenResourceError, anyio.ClosedResourceError):
                    pass
