"""Host: runs the server, the app's lifespan and the host lifecycle in one task tree.

``run_async`` is the whole life of a host::

    lifespan startup (a failure switches every request to the 500.30 page)
    → server.serve started (every address bound)  → "started" hook
    → wait for SIGINT/SIGTERM or Host.stop()       → "stopping" hook
    → server drains, under a deadline of shutdown_timeout (a second signal cuts it short)
    → lifespan shutdown                             → "stopped" hook
"""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import sys
import threading
import traceback
from collections.abc import Sequence
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING, Any

import anyio
import sniffio
from anyio.abc import TaskGroup, TaskStatus
from anyio.streams.memory import MemoryObjectReceiveStream, MemoryObjectSendStream

from hostkit.asgi import ASGIApp
from hostkit.configuration import Configuration, load_configuration
from hostkit.configuration.sources import reload_configuration
from hostkit.context import Features
from hostkit.environment import HostEnvironment
from hostkit.errors import HostkitError, InvalidOperationError
from hostkit.lifespan import Lifespan, AppStartFailure
from hostkit.plugin_manager import Plugins
from hostkit.server_contract import HostRole, ReloadableServer, Server
from hostkit.request_stage import RequestStage
from hostkit.configuration.tables import HostingModel
from hostkit.supervisor import worker_stop_limit
from hostkit.processes.recycling import RecyclePolicy
from hostkit.worker import WorkerDuties
from hostkit.worker_contract import current_worker

if TYPE_CHECKING:
    from hostkit.builder import HostBuilder

logger = logging.getLogger("hostkit.host")

# Extra seconds past shutdown_timeout before the host cancels a server that did not return.
_DRAIN_GRACE = 2.0


def _process_name() -> str:
    return Path(sys.executable).name


def configure_default_logging() -> None:
    """Log INFO and above to stderr unless the program configured logging itself.

    A supervisor's workers write to the supervisor's stderr: their lines carry their pid.
    """
    root = logging.getLogger()
    if root.handlers:
        return
    pid = "[%(process)d] " if current_worker() is not None else ""
    logging.basicConfig(level=logging.INFO, stream=sys.stderr,
                        format=f"%(levelname)s: {pid}%(name)s: %(message)s")
    # hypercorn repeats "Running on …" after hostkit's "Now listening on: …".
    logging.getLogger("hypercorn.error").setLevel(logging.WARNING)
    # hostkit says which file changed and what it does about it.
    logging.getLogger("watchfiles.main").setLevel(logging.WARNING)


def install_error_hook() -> None:
    """Print an uncaught :class:`HostkitError` as one line instead of a traceback.

    Errors a user must fix (a bad setting, an address in use, no server for the model) say
    all there is to say in their message; any other exception keeps its traceback. The exit
    status stays 1, as for every uncaught exception. Installed once, chaining to the hook
    that was there before.
    """
    previous = sys.excepthook
    if getattr(previous, "hostkit_error_hook", False):
        return

    def hook(kind: type[BaseException], error: BaseException, tb: TracebackType | None) -> None:
        if isinstance(error, HostkitError):
            print(f"hostkit: error: {error}", file=sys.stderr)
        else:
            previous(kind, error, tb)

    hook.hostkit_error_hook = True  # type: ignore[attr-defined]
    sys.excepthook = hook


def _single_error(error: BaseException) -> BaseException:
    """The one exception inside nested single-member exception groups, else ``error``."""
    while isinstance(error, BaseExceptionGroup) and len(error.exceptions) == 1:
        error = error.exceptions[0]
    return error


class Host:
    """A built host. Call :meth:`run` (blocking) or ``await`` :meth:`run_async`."""

    def __init__(self, configuration: Configuration, plugins: Plugins, server: Server,
                 app: ASGIApp, *, role: HostRole = HostRole.SERVE,
                 bare_error_pages: bool = False):
        self.configuration = configuration
        self.plugins = plugins
        self.server = server
        self.app = app
        #: what this process does for the app (see :class:`hostkit.server_contract.HostRole`).
        self.role = role
        self._bare_error_pages = bare_error_pages
        #: the URLs the server listens on, known once the host has started.
        self.urls: list[str] = []
        self._stop_requested: anyio.Event | None = None
        self._stop_pending = False
        self._start_failure: AppStartFailure | None = None
        self._server_scope: anyio.CancelScope | None = None
        # The app's shutdown runs shielded from the drain's deadline; a second signal ends it.
        self._shutdown_scope: anyio.CancelScope | None = None
        self._running = False

    @staticmethod
    def create_default_builder(args: Sequence[str] | None = None) -> HostBuilder:
        """A :class:`HostBuilder` with hostkit's defaults, applied in this order:

        1. configuration from ``hostkit.toml``, ``hostkit.{environment}.toml``, ``HOSTKIT_*``
           environment variables and ``args`` (default ``sys.argv[1:]``), later ones winning;
        2. plugins from the ``hostkit`` entry points (built-ins always;
           others unless ``HOSTKIT_DISABLE_PLUGIN_AUTOLOAD``), then the ``plugins`` setting;
        3. at ``build()``: plugin settings tables, ``hostkit_configure_builder`` (e.g. the
           out-of-process child role), pipeline layers, and the server chosen by
           ``hostkit_create_server``;
        4. an uncaught :class:`hostkit.HostkitError` prints as one line, not a traceback
           (:func:`install_error_hook`).
        """
        from hostkit.builder import HostBuilder

        install_error_hook()
        configuration = load_configuration(sys.argv[1:] if args is None else args)
        plugins = Plugins()
        plugins.load_entry_points()
        plugins.load_modules(configuration.options.plugins,
                             str(configuration.source_of("plugins") or "plugins"))
        return HostBuilder(configuration, plugins)

    @property
    def hosting_model(self) -> HostingModel:
        return self.configuration.options.hosting_model

    @property
    def environment(self) -> HostEnvironment:
        return HostEnvironment(self.configuration.environment_name,
                               self.configuration.content_root)

    def fail_startup(self, error: BaseException) -> None:
        """Serve "500.30 In-Process Start Failure" to every request instead of the app.

        For a program whose own setup failed after ``build()``: the error is logged and the
        host still runs, so the failure is visible to clients instead of a silent exit.
        """
        detail = "".join(traceback.format_exception(error))
        self._start_failure = AppStartFailure(f"{type(error).__name__}: {error}", detail)

    def stop(self) -> None:
        """Ask the running host to stop gracefully; :meth:`run_async` then drains and returns.

        Call it from the host's event loop (a task or a hook). Before the host runs, the
        request is kept and the host stops as soon as it has started.
        """
        if self._stop_requested is None:
            self._stop_pending = True
        else:
            self._stop_requested.set()

    def run(self) -> None:
        """Serve until SIGINT/SIGTERM or :meth:`stop`, then drain and return.

        Raises :class:`hostkit.HostkitError` for a startup error the user must fix (an
        address in use, say); left uncaught in a program made with
        ``create_default_builder``, it prints as one line and the process exits with 1.
        """
        configure_default_logging()
        anyio.run(self.run_async, backend=self.configuration.options.async_backend)

    async def run_async(self) -> None:
        """:meth:`run` as a coroutine, on asyncio or trio; errors propagate as raised."""
        if self._running:
            raise InvalidOperationError("this host is already running")
        self._running = True
        self._stop_requested = anyio.Event()
        self._server_scope = anyio.CancelScope()
        self._shutdown_scope = anyio.CancelScope(shield=True)
        if self._stop_pending:
            self._stop_requested.set()
        try:
            async with anyio.create_task_group() as task_group:
                await self._serve(task_group)
        except BaseExceptionGroup as group:
            error = _single_error(group)
            if error is group:
                raise
            raise error from None

    async def _serve(self, task_group: TaskGroup) -> None:
        assert self._stop_requested is not None and self._server_scope is not None
        stop_requested = self._stop_requested
        server_scope = self._server_scope
        options = self.configuration.options
        task_group.start_soon(self._watch_signals)

        lifespan = Lifespan(self.app)
        # A supervisor's workers load the app themselves, and report a failure themselves.
        failure = self._start_failure if self.role is not HostRole.SUPERVISE else None
        if failure is None and self.role.runs_pipeline:
            failure = await lifespan.startup(task_group)
        worker = current_worker()
        # A worker that runs the app probes it and counts its requests; a FRONT's children
        # are its module's to probe and recycle.
        duties = (WorkerDuties(worker, options.health)
                  if worker is not None and self.role.runs_pipeline else None)
        if failure is not None and worker is not None:
            # A worker that serves only 500.30 must not look ready: its supervisor counts the
            # failed start, and its rapid-fail protection answers once starts keep failing.
            logger.error("the app failed to start: %s", failure.detail.rstrip())
            raise HostkitError(f"the app failed to start ({failure.message}); this worker "
                               "exits so that its supervisor counts a failed start")
        if failure is not None:
            logger.error("the app failed to start; every request gets 500.30: %s",
                         failure.detail.rstrip())
        stage = self._request_stage(task_group, lifespan.state, failure, duties)
        if duties is not None:
            await duties.wait_healthy(stage)  # no request before the app answers app_path

        stopping = anyio.Event()
        server_done = anyio.Event()

        async def serve(*, task_status: TaskStatus[list[str]]) -> None:
            try:
                with server_scope:
                    await self.server.serve(stage, stopping, task_status=task_status)
            finally:
                server_done.set()
                stop_requested.set()  # a server that returns on its own stops the host

        self.urls = list(await task_group.start(serve))
        for url in self.urls:
            logger.info("Now listening on: %s", url)
        logger.info("Hosting model: %s; server: %s; async backend: %s",
                    options.hosting_model.value, self.server.name,
                    sniffio.current_async_library())
        logger.info("Hosting environment: %s", self.configuration.environment_name)
        logger.info("Content root path: %s", self.configuration.content_root)
        logger.info("Application started. Press Ctrl+C to shut down.")
        self.plugins.hook.hostkit_host_started(host=self)
        if worker is not None:
            worker.report_ready()
        if duties is not None:
            task_group.start_soon(duties.report_health, stage)

        await stop_requested.wait()
        logger.info("Application is shutting down...")
        self.plugins.hook.hostkit_host_stopping(host=self)
        stage.close_connections()
        stopping.set()
        # A supervisor's drain is its workers': each drains, then shuts its app down.
        drain_limit = (worker_stop_limit(options.shutdown_timeout)
                       if self.role is HostRole.SUPERVISE
                       else options.shutdown_timeout + _DRAIN_GRACE)
        server_scope.deadline = anyio.current_time() + drain_limit
        await server_done.wait()
        assert self._shutdown_scope is not None
        with self._shutdown_scope, anyio.move_on_after(options.shutdown_timeout):
            await lifespan.shutdown()
        logger.info("Application stopped.")
        self.plugins.hook.hostkit_host_stopped(host=self)
        task_group.cancel_scope.cancel()

    def _request_stage(self, task_group: TaskGroup, lifespan_state: dict[str, Any],
                       start_failure: AppStartFailure | None,
                       duties: WorkerDuties | None) -> RequestStage:
        """What the server serves, built once the app's lifespan has started (or failed to):
        the pipeline behind the request stage, whose disconnect watchers ``task_group``
        owns; in a worker, counting requests towards ``max_requests``."""
        options = self.configuration.options
        policy = RecyclePolicy.from_options(options.workers)
        limit = policy.request_limit() if duties is not None else None

        def recycle() -> None:
            assert duties is not None and limit is not None
            duties.ask_recycle(policy.requests_reason(limit))

        return RequestStage(
            self.app,
            Features(options.hosting_model.value, os.getpid(), _process_name(),
                     self.server.name),
            max_request_body_size=options.server_options.max_request_body_size,
            allow_synchronous_io=options.server_options.allow_synchronous_io,
            show_details=self.environment.is_development(),
            bare_error_pages=self._bare_error_pages,
            task_group=task_group,
            lifespan_state=lifespan_state,
            start_failure=start_failure,
            request_limit=limit,
            on_request_limit=recycle if limit is not None else None,
        )

    async def _watch_signals(self) -> None:
        if threading.current_thread() is not threading.main_thread():
            return  # signals reach only the main thread; the embedding program handles them
        # One reload runs at a time; SIGHUPs meanwhile make one more, not one each.
        send, receive = anyio.create_memory_object_stream[None](1)
        async with anyio.create_task_group() as task_group, send, receive:
            task_group.start_soon(self._reload_each, receive)
            await self._receive_signals(send)

    async def _receive_signals(self, reloads: MemoryObjectSendStream[None]) -> None:
        with anyio.open_signal_receiver(signal.SIGINT, signal.SIGTERM, signal.SIGHUP) as signals:
            async for signum in signals:
                name = signal.Signals(signum).name
                if signum == signal.SIGHUP:
                    with contextlib.suppress(anyio.WouldBlock):
                        reloads.send_nowait(None)
                elif self._stop_requested is not None and not self._stop_requested.is_set():
                    logger.info("%s received: stopping gracefully (again to stop at once)", name)
                    self._stop_requested.set()
                elif self._server_scope is not None:
                    logger.warning("%s received again: stopping now", name)
                    self._server_scope.cancel()
                    if self._shutdown_scope is not None:
                        self._shutdown_scope.cancel()

    async def _reload_each(self, reloads: MemoryObjectReceiveStream[None]) -> None:
        async for _ in reloads:
            await self.reload()

    async def reload(self) -> None:
        """Read the configuration files again and replace every process that runs the app
        by rolling replacement (what SIGHUP does); returns once done.

        A configuration that no longer loads is logged and the reload refused. A host whose
        server cannot replace the app's processes (a single InProcess host) logs that it
        needs ``[workers] supervise = true`` and keeps serving.
        """
        if not isinstance(self.server, ReloadableServer):
            if current_worker() is not None:
                logger.warning("SIGHUP received by a worker: send it to its supervisor (pid "
                               "%d), which replaces its workers one at a time", os.getppid())
            else:
                logger.warning("SIGHUP received: a single InProcess host cannot replace "
                               "itself; set [workers] supervise = true for reloads without "
                               "downtime. Still serving.")
            return
        configuration = reload_configuration(self.configuration)
        if configuration is None:
            return
        logger.info("SIGHUP received: configuration read again; replacing the app's processes")
        await self.server.reload(configuration)
