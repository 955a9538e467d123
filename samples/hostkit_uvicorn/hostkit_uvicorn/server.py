"""UvicornServer: uvicorn serving hostkit's server stage on sockets hostkit bound.

hostkit binds the sockets (``hostkit.listeners.bind_all``: one clear ``AddressInUseError``,
``TCP_NODELAY``, listening before the host reports started) and uvicorn serves them with its
httptools protocol. The host owns the signals, the ASGI lifespan and the drain deadline:
uvicorn is told to stop when ``stopping`` is set, drains within ``shutdown_timeout``, and is
cancelled by the host past it.
"""

from __future__ import annotations

import contextlib
import socket
from collections.abc import Callable, Iterator
from typing import Any

import anyio
import sniffio
import uvicorn
from anyio.abc import TaskStatus

import hostkit
from hostkit.plugin import BACKLOG, ASGIApp, bind_all, close_all


class _HostedUvicorn(uvicorn.Server):
    """uvicorn's server with the signals left to the host and a readiness callback."""

    def __init__(self, config: uvicorn.Config, on_started: Callable[[], None]):
        super().__init__(config)
        self._on_started = on_started

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        """The host handles SIGINT/SIGTERM and sets ``stopping``; uvicorn must not."""
        yield

    async def startup(self, sockets: list[socket.socket] | None = None) -> None:
        """uvicorn's startup, then the readiness callback: its servers accept from here on."""
        await super().startup(sockets=sockets)
        self._on_started()


class UvicornServer:
    """A :class:`hostkit.Server` running uvicorn (httptools) on the configured ``urls``."""

    name = "uvicorn"

    def __init__(self, configuration: hostkit.Configuration):
        self.configuration = configuration
        self.options = configuration.options

    def uvicorn_config(self, app: ASGIApp) -> uvicorn.Config:
        """uvicorn's Config from hostkit's settings.

        The host runs the ASGI lifespan and hostkit's integration applies forwarded headers,
        so uvicorn's own are off; logging stays the program's (no ``log_config``), with no
        access log and no ``server`` header, like the built-in hypercorn server.
        """
        # uvicorn types these as int and uses them as seconds (call_later, wait_for): a float
        # setting such as 2.5 keeps its meaning.
        keep_alive: Any = self.options.server_options.keep_alive_timeout
        graceful: Any = self.options.shutdown_timeout
        return uvicorn.Config(
            app, http="httptools", interface="asgi3", lifespan="off", log_config=None,
            access_log=False, server_header=False, proxy_headers=False, backlog=BACKLOG,
            timeout_keep_alive=keep_alive, timeout_graceful_shutdown=graceful)

    async def serve(self, app: ASGIApp, stopping: anyio.Event, *,
                    task_status: TaskStatus[list[str]] = anyio.TASK_STATUS_IGNORED) -> None:
        """Called once by the host: bind, serve until ``stopping``, drain, close.

        Raises :class:`hostkit.ServerSelectionError` when the host runs on another event loop
        than asyncio (an embedding program calling ``Host.run_async`` under trio).
        """
        library = sniffio.current_async_library()
        if library != "asyncio":
            raise hostkit.ServerSelectionError(
                f"server {self.name!r} runs on asyncio only, and this host runs on "
                f"{library!r}: run it on asyncio (async_backend = \"asyncio\") or choose "
                "another server")
        bound = bind_all(self.options.urls, source=self.configuration.source_of("urls"))
        sockets = [sock for _, sock in bound]
        try:
            started = anyio.Event()
            server = _HostedUvicorn(self.uvicorn_config(app), started.set)
            async with anyio.create_task_group() as task_group:
                task_group.start_soon(server.serve, sockets)
                await started.wait()
                task_status.started([address.display(sock) for address, sock in bound])
                await stopping.wait()
                server.should_exit = True  # uvicorn's loop sees it within 0.1 s and drains
        finally:
            close_all(bound)
