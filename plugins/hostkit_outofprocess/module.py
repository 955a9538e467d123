"""ModuleServer: the public side of OutOfProcess (the ASP.NET Core Module's role).

It listens on ``urls``, runs the app in child processes through :class:`ProcessManager`, and
hands every accepted connection to a :class:`ClientConnection` that forwards its requests.
It watches the content root: ``app_offline_file`` takes the app offline while it exists, and
a change to ``hostkit.toml`` / ``hostkit.{environment}.toml`` drains the children
(``restart_on_config_change``).

Stopping: stop accepting, close idle connections, let requests in flight finish within
``shutdown_timeout``, then stop the children (SIGTERM, SIGKILL after
``shutdown_time_limit``) and reap them.
"""

from __future__ import annotations

import logging
import socket
import ssl
import time
from pathlib import Path

import anyio
import watchfiles
from anyio.abc import ByteStream, SocketAttribute, TaskStatus

import hostkit
from hostkit.asgi import ASGIApp
from hostkit.configuration import CONFIG_FILE
from hostkit.authentication import Authenticator
from hostkit.listeners import ListenAddress, bind_all, close_all
from hostkit.tls import server_context

from hostkit_outofprocess.connection_identity import ConnectionIdentity
from hostkit_outofprocess.pages import ErrorPages
from hostkit_outofprocess.pool import ConnectionPool
from hostkit_outofprocess.process import Child, ChildSettings, ProcessManager
from hostkit_outofprocess.proxy import HEARTBEAT, ClientConnection
from hostkit_outofprocess.streams import serve_listener, ssl_object

logger = logging.getLogger("hostkit.module")

# The pool keeps an idle connection for at most this share of the child's keep-alive timeout.
_POOL_SHARE = 0.5
_POOL_IDLE_CAP = 2.0


class _Target:
    """A running child as the proxy sees it: its pool and token."""

    __slots__ = ("child", "pool", "token", "_manager")

    def __init__(self, child: Child, pool: ConnectionPool, manager: ProcessManager):
        self.child = child
        self.pool = pool
        self.token = child.contract.token.encode("ascii")
        self._manager = manager

    async def unreachable(self) -> bool:
        return await self._manager.wait_exit(self.child, 1.0)


class ModuleServer:
    """A :class:`hostkit.Server` that fronts child processes instead of running the pipeline."""

    name = "module"
    #: The host does not run the app (nor its lifespan) in this process: the children do.
    runs_pipeline = False

    def __init__(self, configuration: hostkit.Configuration,
                 authenticator: Authenticator | None = None):
        options = configuration.options
        self.configuration = configuration
        self.options = options
        self.authenticator = authenticator
        self.content_root = configuration.content_root
        self.environment_name = configuration.environment_name
        self.request_timeout = options.module.request_timeout
        limits = options.server_options
        self.head_timeout = min(limits.keep_alive_timeout, limits.request_header_timeout)
        self.request_header_timeout = limits.request_header_timeout
        self.pool_idle = min(_POOL_IDLE_CAP, self.head_timeout * _POOL_SHARE)
        self.pages = ErrorPages(
            show_details=self.environment_name.lower() == "development",
            bare=options.module.disable_startup_error_page)
        self.manager = ProcessManager(
            ChildSettings.from_options(options.module, self.content_root),
            options.module.processes_per_application, eager_start=options.module.eager_start)
        self._targets: dict[int, _Target] = {}
        self._connections: set[ClientConnection] = set()

    # -- what the proxy asks for ------------------------------------------------------------

    async def acquire(self) -> _Target:
        child = await self.manager.acquire()
        target = self._targets.get(child.pid)
        if target is None or target.child is not child:
            self._forget_exited()
            target = self._targets[child.pid] = _Target(
                child, ConnectionPool(child.port, self.pool_idle), self.manager)
        return target

    def _forget_exited(self) -> None:
        for pid, target in list(self._targets.items()):
            if not target.child.running:
                target.pool.closed = True
                del self._targets[pid]

    # -- serving ----------------------------------------------------------------------------

    async def serve(self, app: ASGIApp, stopping: anyio.Event, *,
                    task_status: TaskStatus[list[str]] = anyio.TASK_STATUS_IGNORED) -> None:
        bound = bind_all(self.options.urls)
        try:
            await self._serve(bound, stopping, task_status)
        finally:
            close_all(bound)

    async def _serve(self, bound: list[tuple[ListenAddress, socket.socket]],
                     stopping: anyio.Event, task_status: TaskStatus[list[str]]) -> None:
        urls = [address.display(sock) for address, sock in bound]
        tls = server_context(self.configuration) if any(a.is_secure for a, _ in bound) else None
        async with anyio.create_task_group() as services:
            await services.start(self.manager.run)
            await self._check_offline()
            services.start_soon(self._watch_content_root, stopping)
            services.start_soon(self._heartbeat)
            async with anyio.create_task_group() as connections:
                accepting = [anyio.CancelScope() for _ in bound]
                for (address, sock), scope in zip(bound, accepting):
                    scheme = address.scheme if address.scheme != "unix" else "http"
                    connections.start_soon(self._accept, sock, tls if address.is_secure else None,
                                           scheme, connections, scope, stopping)
                task_status.started(urls)
                await stopping.wait()
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
        async def handle(stream: ByteStream) -> None:
            identity = ConnectionIdentity(
                ssl_object=ssl_object(stream), scheme=scheme, client_ip=_client_ip(stream),
                authenticator=self.authenticator,
                forward_identity=self.options.module.forward_identity)
            connection = ClientConnection(stream, self, self.pages, identity=identity,
                                          head_timeout=self.head_timeout, stopping=stopping)
            self._connections.add(connection)
            try:
                await connection.serve()
            except Exception:  # one connection's failure never stops the module
                logger.exception("error while serving a connection")
            finally:
                self._connections.discard(connection)

        with accepting:
            await serve_listener(sock, tls, handle, connections)

    async def _heartbeat(self) -> None:
        """Ends the waits of connections past their deadline, every ``HEARTBEAT`` seconds
        (see :data:`hostkit_outofprocess.proxy.HEARTBEAT` for why not a timer per wait)."""
        while True:
            await anyio.sleep(HEARTBEAT)
            now = time.monotonic()  # the connections' clock
            for connection in list(self._connections):
                connection.check_deadline(now)

    # -- app_offline and configuration changes ---------------------------------------------

    def _offline_path(self) -> Path:
        return self.content_root / self.options.module.app_offline_file

    async def _check_offline(self) -> None:
        path = self._offline_path()
        try:
            content = path.read_bytes()
        except FileNotFoundError:
            content = None
        except OSError as error:
            logger.warning("cannot read %s: %s", path, error)
            content = None
        if content is not None:
            logger.info("%s exists: the app is offline", path.name)
        elif self.manager.offline:
            logger.info("%s removed: the app is online again", path.name)
        await self.manager.set_offline(content)

    def _config_files(self) -> set[str]:
        names = {CONFIG_FILE, f"hostkit.{self.environment_name}.toml"}
        return {name.lower() for name in names}

    async def _watch_content_root(self, stopping: anyio.Event) -> None:
        offline_name = self._offline_path().name.lower()
        config_names = self._config_files()
        watched = config_names | {offline_name}

        def relevant(change: watchfiles.Change, path: str) -> bool:
            return Path(path).name.lower() in watched

        async for changes in watchfiles.awatch(self.content_root, watch_filter=relevant,
                                               recursive=False, stop_event=stopping,
                                               debounce=50, step=20):
            names = {Path(path).name.lower() for _, path in changes}
            if offline_name in names:
                await self._check_offline()
            if names & config_names and self.options.module.restart_on_config_change:
                logger.info("configuration changed: draining the app's processes")
                await self.manager.recycle()


def _client_ip(stream: ByteStream) -> str | None:
    try:
        address = stream.extra(SocketAttribute.remote_address)
    except anyio.TypedAttributeLookupError:
        return None
    if isinstance(address, tuple):
        return str(address[0])
    return None  # a unix socket has no client address
