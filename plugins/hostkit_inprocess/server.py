"""HypercornServer: hypercorn embedded behind hostkit's server stage.

hostkit binds the sockets itself (so an address in use is one clear error, and the server is
listening before it reports started) and hands them to hypercorn's worker for the running
async backend.
"""

from __future__ import annotations

import functools
import logging
import os
import socket
import ssl
from typing import Any, cast

import anyio
import sniffio
from anyio.abc import TaskStatus
from hypercorn.config import Config, Sockets
from hypercorn.utils import wrap_app

import hostkit
from hostkit.asgi import ASGIApp
from hostkit.server import ListenAddress, bind_all

_VERIFY_MODES = {"none": ssl.CERT_NONE, "optional": ssl.CERT_OPTIONAL,
                 "required": ssl.CERT_REQUIRED}


class HypercornServer:
    """A :class:`hostkit.Server` running hypercorn on the configured ``urls``."""

    name = "hypercorn"

    def __init__(self, configuration: hostkit.Configuration):
        self.options = configuration.options

    def hypercorn_config(self) -> Config:
        """hypercorn's Config from hostkit's settings (timeouts, TLS, logging)."""
        options = self.options
        config = Config()
        limits = options.server_options
        # hypercorn has one idle timer: it runs from the moment a connection is accepted (or a
        # response ends) until a whole request head has arrived, and data does not reset it.
        # It is both the keep-alive timeout and the request-head deadline, so it takes the
        # smaller of the two settings.
        config.keep_alive_timeout = min(limits.keep_alive_timeout, limits.request_header_timeout)
        config.graceful_timeout = options.shutdown_timeout
        config.accesslog = None
        config.errorlog = logging.getLogger("hypercorn.error")
        config.include_server_header = False
        tls = options.tls
        if tls.certificate and tls.private_key:
            config.certfile = tls.certificate
            config.keyfile = tls.private_key
            if tls.client_ca:
                config.ca_certs = tls.client_ca
            config.verify_mode = _VERIFY_MODES[tls.client_certificate_mode]
        return config

    async def serve(self, app: ASGIApp, stopping: anyio.Event, *,
                    task_status: TaskStatus[list[str]] = anyio.TASK_STATUS_IGNORED) -> None:
        config = self.hypercorn_config()
        bound = bind_all(self.options.urls)
        sockets = Sockets(
            secure_sockets=[sock for address, sock in bound if address.is_secure],
            insecure_sockets=[sock for address, sock in bound if not address.is_secure],
            quic_sockets=[],
        )
        urls = [address.display(sock) for address, sock in bound]
        wrapped = wrap_app(cast(Any, app), config.wsgi_max_body_size, "asgi")
        try:
            if sniffio.current_async_library() == "trio":
                from hypercorn.trio.run import worker_serve as trio_serve

                async with anyio.create_task_group() as task_group:
                    await task_group.start(functools.partial(
                        trio_serve, wrapped, config, sockets=sockets,
                        shutdown_trigger=stopping.wait))
                    task_status.started(urls)
            else:
                from hypercorn.asyncio.run import worker_serve as asyncio_serve

                # hypercorn's asyncio worker has no readiness callback; the sockets are bound
                # and listening already, so connections made from here on are served.
                task_status.started(urls)
                await asyncio_serve(wrapped, config, sockets=sockets,
                                    shutdown_trigger=stopping.wait)
        finally:
            _close_all([sock for _, sock in bound], [address for address, _ in bound])


def _close_all(sockets: list[socket.socket], addresses: list[ListenAddress]) -> None:
    for sock in sockets:
        sock.close()
    for address in addresses:
        if address.scheme == "unix":
            try:
                os.unlink(address.path)
            except OSError:
                pass
