"""HypercornServer: hypercorn embedded behind hostkit's request stage.

hostkit binds the sockets itself (so an address in use is one clear error, and the server is
listening before it reports started), builds the TLS context with the rest of hostkit
(``hostkit.plugin``), and hands each accepted connection to hypercorn (``connections.py``).
"""

from __future__ import annotations

import functools
import logging

import anyio
import sniffio
from anyio.abc import TaskStatus
from hypercorn.config import Config

import hostkit
from hostkit.plugin import ASGIApp, HostRole, bind_all, close_all, server_context

from hostkit_inprocess.connections import serve_asyncio, serve_trio
from hostkit_inprocess.http2 import FloodGuard, flood_limits
from hostkit_inprocess.hypercorn_internals import asgi_app_wrapper, guard_http2, guard_http11
from hostkit_inprocess.request_guard import gateway_rules, http11_only


class HypercornServer:
    """A :class:`hostkit.Server` running hypercorn on the configured ``urls``."""

    name = "hypercorn"

    def __init__(self, configuration: hostkit.Configuration, role: HostRole = HostRole.SERVE):
        self.configuration = configuration
        self.options = configuration.options
        #: ``SERVE`` (the public listener) or ``CHILD`` (a front's child, on its token port).
        self.role = role

    def hypercorn_config(self) -> Config:
        """hypercorn's Config from hostkit's settings (timeouts, logging, HTTP/2), with the request
        rules of the role (``request_guard.py``): the gateway's on a public listener; HTTP/1.1
        only in a child, whose only client is the module (SPEC §10)."""
        options = self.options
        config = Config()
        limits = options.server_options
        # hypercorn has one idle timer, from accept (or a response's end) to a whole request
        # head, that data does not reset: the host's rule for that wait.
        config.keep_alive_timeout = limits.next_request_head_timeout
        # A TLS handshake is part of the wait for the first head: it may take all of it, and
        # what it takes counts against it (connections.py).
        config.ssl_handshake_timeout = limits.next_request_head_timeout
        config.graceful_timeout = options.shutdown_timeout
        config.accesslog = None
        config.errorlog = logging.getLogger("hypercorn.error")
        config.include_server_header = False
        # HTTP/2 (docs/protocols.md): the limits hypercorn's h2 connections advertise and
        # enforce, and the flood guard in front of each (http2.py).
        config.h2_max_concurrent_streams = limits.http2_max_concurrent_streams
        config.h2_max_header_list_size = limits.http2_max_header_list_size
        guard_http2(config, functools.partial(FloodGuard, flood_limits(config)))
        if self.role is HostRole.CHILD:
            config.alpn_protocols = ["http/1.1"]
            guard_http11(config, http11_only, http2=False)
        else:
            guard_http11(config, gateway_rules, http2=True)
        return config

    async def serve(self, app: ASGIApp, stopping: anyio.Event, *,
                    task_status: TaskStatus[list[str]] = anyio.TASK_STATUS_IGNORED) -> None:
        config = self.hypercorn_config()
        bound = bind_all(self.options.urls, source=self.configuration.source_of("urls"))
        secure = [sock for address, sock in bound if address.is_secure]
        insecure = [sock for address, sock in bound if not address.is_secure]
        tls = server_context(self.configuration, config.alpn_protocols) if secure else None
        urls = [address.display(sock) for address, sock in bound]
        wrapped = asgi_app_wrapper(app, config)
        serve = serve_trio if sniffio.current_async_library() == "trio" else serve_asyncio
        try:
            async with anyio.create_task_group() as task_group:
                await task_group.start(serve, wrapped, config, secure, insecure, tls, stopping)
                task_status.started(urls)
        finally:
            close_all(bound)
