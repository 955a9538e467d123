"""ModuleServer: the public side of OutOfProcess (the ASP.NET Core Module's role).

It listens on ``urls``, runs the app in child processes through a
:class:`~hostkit_outofprocess.children.ChildManager`, and hands every accepted connection to a
:class:`~hostkit_outofprocess.front.connection.ClientConnection` that forwards its requests,
or, when TLS chose ``h2`` by ALPN, to an
:class:`~hostkit_outofprocess.front.http2.Http2Connection` (a cleartext connection that
begins with the HTTP/2 preface is handed over to one by its ``ClientConnection``). TLS offers
``h2`` and ``http/1.1``.
It watches the content root: ``app_offline_file`` takes the app offline while it exists, and
a change to ``hostkit.toml`` / ``hostkit.{environment}.toml`` (``restart_on_config_change``)
reloads, as SIGHUP does (:meth:`ModuleServer.reload`): the configuration is read again and
every child is replaced by rolling replacement, so no request waits for a cold start.

The front owns the public listener, so it does the gateway's duties for every request
(``ServerRequest.gateway``, :class:`hostkit.plugin.Gateway`: forwarded headers, request ids,
health paths, the limit, the access log, metrics; see
:mod:`~hostkit_outofprocess.front.exchange`). Its readiness adds the children's reasons not to
be ready (:meth:`~hostkit_outofprocess.children.ChildManager.unready_reason`: offline,
rapid-failed, the last start failed); before the first child starts, the front is ready, as
ANCM is: the child starts on the first request.

Stopping: stop accepting, close idle connections, let requests in flight finish within
``shutdown_timeout``, then stop the children (SIGTERM, SIGKILL after
``shutdown_time_limit``) and reap them.
"""

from __future__ import annotations

import functools
import logging
import socket
import ssl
import time

import anyio
from anyio.abc import TaskStatus

import hostkit
from hostkit.plugin import (
    ASGIApp,
    Authenticator,
    ConnectionMemory,
    ContentRootWatch,
    FloodLimits,
    Gateway,
    ListenAddress,
    bind_all,
    close_all,
    reload_configuration,
    server_context,
)

from hostkit_outofprocess.children import Child, ChildManager, ChildSettings, ChildUnavailable
from hostkit_outofprocess.front.connection import ClientConnection
from hostkit_outofprocess.front.deadlines import HEARTBEAT
from hostkit_outofprocess.front.http2 import Http2Connection
from hostkit_outofprocess.front.identity import ConnectionIdentity
from hostkit_outofprocess.front.pages import ErrorPages
from hostkit_outofprocess.front.streams import Stream, serve_listener
from hostkit_outofprocess.front.upstream import ConnectionPool
from hostkit_outofprocess.options import ModuleOptions, content_root_rules, module_options

logger = logging.getLogger("hostkit.module")

# The pool keeps an idle connection for at most this share of the child's keep-alive timeout.
_POOL_SHARE = 0.5
_POOL_IDLE_CAP = 2.0
# How long a child whose port refused a connection is given to be seen exiting.
_EXIT_WAIT = 1.0


class _Target:
    """A running child as an exchange sees it (:class:`~.upstream.Target`): its pool, token."""

    __slots__ = ("child", "pool", "token")

    def __init__(self, child: Child, pool: ConnectionPool):
        self.child = child
        self.pool = pool
        self.token = child.contract.token.encode("ascii")

    async def unreachable(self) -> bool:
        return await self.child.process.wait_exit(_EXIT_WAIT)


class ModuleServer:
    """A :class:`hostkit.Server` that fronts child processes instead of running the pipeline;
    a :class:`hostkit.plugin.ReloadableServer`: :meth:`reload` replaces its children without
    a gap.

    ``gateway`` is the host's (``ServerRequest.gateway``); :meth:`serve` needs it (``None``
    only for a server made to be inspected, not served).
    """

    name = "module"

    def __init__(self, configuration: hostkit.Configuration,
                 authenticator: Authenticator | None = None, gateway: Gateway | None = None):
        options = configuration.options
        module = module_options(configuration)
        self.configuration = configuration
        self.options = options
        self.module = module
        self.authenticator = authenticator
        self.gateway = gateway
        self.content_root = configuration.content_root
        self.environment_name = configuration.environment_name
        self.request_timeout = module.request_timeout
        limits = options.server_options
        self.head_timeout = limits.next_request_head_timeout
        self.request_header_timeout = limits.request_header_timeout
        self.max_request_body_size = limits.max_request_body_size
        self.pool_idle = min(_POOL_IDLE_CAP, self.head_timeout * _POOL_SHARE)
        self.pages = self._pages(module)
        self.manager = ChildManager(
            ChildSettings.from_configuration(configuration),
            module.processes_per_application, eager_start=module.eager_start,
            drain=self._drain, metrics=gateway.metrics if gateway is not None else None)
        if gateway is not None:
            gateway.readiness.add_check(self.manager.unready_reason)
        #: a child could not be had since the readiness was last refreshed.
        self._unavailable_seen = False
        self._targets: dict[Child, _Target] = {}
        self._connections: set[ClientConnection | Http2Connection] = set()
        #: The client connections open, to give memory back after a burst of them.
        self._memory = ConnectionMemory()
        #: the HTTP/2 settings of every connection that speaks it.
        self.http2_limits = FloodLimits.of(limits)

    def _pages(self, module: ModuleOptions) -> ErrorPages:
        return ErrorPages(
            show_details=hostkit.HostEnvironment(self.environment_name,
                                                 self.content_root).is_development(),
            bare=module.disable_startup_error_page)

    # -- a second signal (StopNowServer) -------------------------------------------------------

    def stop_now(self) -> None:
        """The host's second SIGINT/SIGTERM: the children stop at once too
        (:meth:`ChildManager.stop_now`), instead of draining for ``shutdown_time_limit``."""
        self.manager.stop_now()

    # -- reloading (ReloadableServer) -------------------------------------------------------

    async def reload(self, configuration: hostkit.Configuration,
                     reason: str = "reload: the configuration was read again") -> None:
        """Start new children with ``configuration``'s ``[module]``, ``[workers]`` recycle
        and ``[health]`` settings and replace every running child by rolling replacement,
        one slot at a time; returns once done (SIGHUP, a configuration change).

        A ``[module]`` value that does not load refuses the reload (logged); a new child that
        fails to start leaves its old one serving. The front's own settings (``urls``, TLS,
        limits, ``processes_per_application``) take effect when it restarts.
        """
        try:
            module = module_options(configuration)
            settings = ChildSettings.from_configuration(configuration)
        except hostkit.ConfigurationError as error:
            logger.error("reload refused, the children keep serving: %s", error)
            return
        if module.processes_per_application != self.module.processes_per_application:
            logger.warning("module.processes_per_application changed to %d: the front keeps "
                           "%d until it restarts", module.processes_per_application,
                           self.module.processes_per_application)
        self.configuration = configuration
        self.module = module
        self.request_timeout = module.request_timeout
        self.pages = self._pages(module)
        self.manager.reconfigure(settings)
        await self.manager.replace_all(reason)

    async def _configuration_changed(self) -> None:
        """``restart_on_config_change``: what SIGHUP does, after a configuration file changed
        (a configuration that no longer loads is logged and the children keep serving)."""
        configuration = reload_configuration(self.configuration)
        if configuration is not None:
            await self.reload(configuration, "the configuration files changed")

    async def _drain(self, child: Child) -> None:
        """``child`` gets no new request: close its idle connections and return once the
        exchanges it has are done (the manager bounds the wait)."""
        target = self._targets.pop(child, None)
        if target is not None:
            await target.pool.close()
            await target.pool.wait_unused()

    # -- what an exchange asks for (Upstream) -----------------------------------------------

    def acquire_nowait(self) -> _Target | None:
        """The target for the next request when a running child can take it at once (the
        common case, :meth:`ChildManager.acquire_nowait`); None when :meth:`acquire` must
        be awaited: a child to start or wait for, an answer to give instead (offline,
        rapid-failed), or the readiness to refresh after a child could not be had."""
        if self._unavailable_seen:
            return None
        child = self.manager.acquire_nowait()
        if child is None:
            return None
        target = self._targets.get(child)
        return target if target is not None else self._new_target(child)

    async def acquire(self) -> _Target:
        """The target for the next request, once a child can take it (started if need be);
        raises ``ChildUnavailable`` with the answer to give."""
        try:
            child = await self.manager.acquire()
        except ChildUnavailable:
            self._unavailable_seen = True
            self._refresh_readiness()
            raise
        if self._unavailable_seen:  # perhaps ready again
            self._unavailable_seen = False
            self._refresh_readiness()
        target = self._targets.get(child)
        return target if target is not None else self._new_target(child)

    def _new_target(self, child: Child) -> _Target:
        """The first request for ``child``: its target, with a new pool (the targets of
        children that exited are forgotten)."""
        self._forget_exited()
        target = self._targets[child] = _Target(child, ConnectionPool(child.port, self.pool_idle))
        return target

    def _refresh_readiness(self) -> None:
        """One of the manager's reasons not to be ready may have changed: tell the gateway's
        readiness (its ``ready`` metric)."""
        if self.gateway is not None:
            self.gateway.readiness.refresh()

    async def _set_offline(self, content: bytes | None) -> None:
        await self.manager.set_offline(content)
        self._refresh_readiness()

    def _forget_exited(self) -> None:
        for child, target in list(self._targets.items()):
            if not child.running:
                target.pool.closed = True
                del self._targets[child]

    # -- serving ----------------------------------------------------------------------------

    async def serve(self, app: ASGIApp, stopping: anyio.Event, *,
                    task_status: TaskStatus[list[str]] = anyio.TASK_STATUS_IGNORED) -> None:
        if self.gateway is None:
            raise hostkit.InvalidOperationError(
                "the module serves only with the host's gateway (ServerRequest.gateway)")
        bound = bind_all(self.options.urls)
        try:
            await self._serve(bound, stopping, task_status)
        finally:
            close_all(bound)

    async def _serve(self, bound: list[tuple[ListenAddress, socket.socket]],
                     stopping: anyio.Event, task_status: TaskStatus[list[str]]) -> None:
        urls = [address.display(sock) for address, sock in bound]
        tls = (server_context(self.configuration, ("h2", "http/1.1"))
               if any(a.is_secure for a, _ in bound) else None)
        async with anyio.create_task_group() as services:
            await services.start(self.manager.run)
            self._refresh_readiness()  # after an eager start
            watch = ContentRootWatch(self.content_root, self.environment_name,
                                     content_root_rules(self.module))
            await services.start(functools.partial(
                watch.run, stopping, on_offline=self._set_offline,
                on_config_change=self._configuration_changed))
            services.start_soon(self._heartbeat)
            async with anyio.create_task_group() as connections:
                accepting = [anyio.CancelScope() for _ in bound]
                for (address, sock), scope in zip(bound, accepting):
                    scheme = address.scheme if address.scheme != "unix" else "http"
                    connections.start_soon(self._accept, sock, tls if address.is_secure else None,
                                           scheme, connections, scope, stopping)
                task_status.started(urls)
                await stopping.wait()
                self.manager.begin_shutdown()
                for scope in accepting:
                    scope.cancel()
                for connection in list(self._connections):
                    connection.close_if_idle()
                connections.cancel_scope.deadline = (anyio.current_time()
                                                     + self.options.shutdown_timeout)
            services.cancel_scope.cancel()  # stops the children (shielded, bounded)

    async def _accept(self, sock: socket.socket, tls: ssl.SSLContext | None, scheme: str,
                      connections: anyio.abc.TaskGroup, accepting: anyio.CancelScope,
                      stopping: anyio.Event) -> None:
        gateway = self.gateway
        assert gateway is not None  # serve() checked

        async def handle(stream: Stream) -> None:
            ssl_object = stream.ssl_object()
            identity = ConnectionIdentity(
                ssl_object=ssl_object, scheme=scheme, client_ip=stream.client_ip(),
                client_port=stream.client_port(), forwarded=gateway.forwarded,
                authenticator=self.authenticator,
                forward_identity=self.module.forward_identity)
            connection: ClientConnection | Http2Connection
            if ssl_object is not None and ssl_object.selected_alpn_protocol() == "h2":
                connection = Http2Connection(
                    stream, self, self.pages, identity=identity, gateway=gateway,
                    head_timeout=self.head_timeout, stopping=stopping, limits=self.http2_limits)
            else:
                connection = ClientConnection(stream, self, self.pages, identity=identity,
                                              gateway=gateway, head_timeout=self.head_timeout,
                                              stopping=stopping, http2=self.http2_limits)
            self._connections.add(connection)
            try:
                await connection.serve()
            except Exception:  # one connection's failure never stops the module
                logger.exception("error while serving a connection")
            finally:
                self._connections.discard(connection)

        with accepting:
            # A TLS handshake may take the whole wait for the first head, and counts against
            # it (the connection's first deadline is from accept: stream.opened_at).
            await serve_listener(sock, tls, handle, connections,
                                 handshake_timeout=self.head_timeout, memory=self._memory)

    async def _heartbeat(self) -> None:
        """Ends the waits of connections past their deadline, every ``HEARTBEAT`` seconds
        (:mod:`~hostkit_outofprocess.front.deadlines` says why not a timer per wait)."""
        while True:
            await anyio.sleep(HEARTBEAT)
            now = time.monotonic()  # the connections' clock
            for connection in list(self._connections):
                connection.check_deadline(now)

