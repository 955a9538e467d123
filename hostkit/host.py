"""Host: runs the server, the app's lifespan and the host lifecycle in one task tree.

``run_async`` is the whole life of a host::

    lifespan startup, within startup_time_limit (a failure switches every request to the
                    500.30 page, a startup over the limit to the 500.37 page; without
                    capture_startup_errors, or in an OutOfProcess child, the host ends
                    instead: AppStartError, exit status 3 from run())
    → server.serve started (every address bound)  → readiness 200, "started" hook
    → wait for SIGINT/SIGTERM or Host.stop()       → readiness 503, "stopping" hook
    → still serving for shutdown_delay (a second signal skips the rest of it)
    → server drains, under a deadline of shutdown_timeout (another signal cuts it short)
    → lifespan shutdown                             → "stopped" hook

An InProcess host that owns its listener (``SERVE``, not a supervisor's worker) starts its
server first, so its health paths answer while the app starts (readiness 503, liveness
200); the other requests wait for the app's start. The gateway
(:mod:`hostkit.gateway_stage`) is in front of the request stage there.
"""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import sys
import threading
from collections.abc import Sequence
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING, Any

import anyio
from anyio.abc import TaskGroup, TaskStatus
from anyio.streams.memory import MemoryObjectReceiveStream, MemoryObjectSendStream

from hostkit.asgi import ASGIApp
from hostkit.configuration import Configuration, load_configuration
from hostkit.configuration.sources import reload_configuration
from hostkit.context import Features
from hostkit.environment import HostEnvironment
from hostkit.errors import HostkitError, InvalidOperationError
from hostkit.event_loop import choose_event_loop, running_event_loop
from hostkit.gateway import DRAINING, READY, START_FAILED, Gateway
from hostkit.gateway_stage import GatewayStage
from hostkit.lifespan import AppStartError, AppStartFailure, Lifespan
from hostkit.logs import configure_logging
from hostkit.plugin_manager import Plugins
from hostkit.server_contract import HostRole, ReloadableServer, Server, StopNowServer
from hostkit import systemd
from hostkit.request_stage import RequestStage
from hostkit.configuration.tables import HostingModel, LoggingOptions
from hostkit.supervisor import worker_stop_limit
from hostkit.processes.recycling import RecyclePolicy
from hostkit.worker import WorkerDuties
from hostkit.worker_contract import current_worker

if TYPE_CHECKING:
    from hostkit.builder import HostBuilder

logger = logging.getLogger("hostkit.host")

# Extra seconds past shutdown_timeout before the host cancels a server that did not return.
_DRAIN_GRACE = 2.0
# Seconds the requests that waited for an app that failed to start have to get its page
# before a host that does not capture start failures ends.
_FAILED_START_DRAIN = 1.0


def _process_name() -> str:
    return Path(sys.executable).name


def configure_default_logging(options: LoggingOptions | None = None) -> None:
    """Apply ``[logging]`` (``options``; None: the defaults, for what is logged before the
    configuration is read) with :func:`hostkit.logs.configure_logging`: hostkit's handler
    on stderr unless the program configured logging itself. Called again with the host's
    own settings before it runs; a second call changes the handler, never adds one.

    A supervisor's workers write to the supervisor's stderr: their lines carry their pid.
    """
    configure_logging(options if options is not None else LoggingOptions(),
                      pid_prefix=current_worker() is not None)


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
                 bare_error_pages: bool = False, gateway: Gateway | None = None):
        self.configuration = configuration
        self.plugins = plugins
        self.server = server
        self.app = app
        #: what this process does for the app (see :class:`hostkit.server_contract.HostRole`).
        self.role = role
        self._bare_error_pages = bare_error_pages
        #: the per-request duties of a process that owns the public listener (forwarded
        #: headers, request ids, health paths, the limit, the access log, metrics); None
        #: when the host was built without one (a test's own Host).
        self.gateway = gateway
        #: the URLs the server listens on, known once the host has started.
        self.urls: list[str] = []
        self._stop_requested: anyio.Event | None = None
        self._stop_pending = False
        self._start_failure: AppStartFailure | None = None
        self._server_scope: anyio.CancelScope | None = None
        # The app's shutdown runs shielded from the drain's deadline; a second signal ends it.
        self._shutdown_scope: anyio.CancelScope | None = None
        # Set while shutdown_delay runs: a second signal (or the server ending) ends it.
        self._delay_over: anyio.Event | None = None
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
        With ``capture_startup_errors = false``, or in an OutOfProcess child, the host logs
        it and ends instead, before it listens (:meth:`run`: exit status 3).
        """
        self._start_failure = AppStartFailure.of(error)

    def stop(self) -> None:
        """Ask the running host to stop gracefully; :meth:`run_async` then drains and returns.

        Call it from the host's event loop (a task or a hook). Before the host runs, the
        request is kept and the host stops as soon as it has started. As after a signal,
        readiness turns 503 at once and ``shutdown_delay`` runs before the drain.
        """
        if self._stop_requested is None:
            self._stop_pending = True
        else:
            self._stop_requested.set()

    def run(self) -> None:
        """Serve until SIGINT/SIGTERM or :meth:`stop`, then drain and return, on the loop
        ``async_backend`` and ``event_loop`` choose (:func:`hostkit.event_loop.choose_event_loop`).

        Raises :class:`hostkit.HostkitError` for a startup error the user must fix (an
        address in use, say); left uncaught in a program made with
        ``create_default_builder``, it prints as one line and the process exits with 1.
        When the app fails to start and the host does not serve the failure
        (``capture_startup_errors = false``, or an OutOfProcess child), the failure is
        logged and this raises ``SystemExit(3)``, as uvicorn exits: the program's entry point
        is where an exit status is chosen (:meth:`run_async` raises
        :class:`~hostkit.lifespan.AppStartError` instead).
        """
        options = self.configuration.options
        configure_default_logging(options.logging)
        loop = choose_event_loop(options.async_backend, options.event_loop)
        try:
            anyio.run(self.run_async, backend=loop.backend, backend_options=loop.backend_options)
        except AppStartError as error:
            raise SystemExit(error.exit_status) from None

    async def run_async(self) -> None:
        """:meth:`run` as a coroutine, on asyncio or trio; errors propagate as raised. It runs
        on the caller's loop: ``event_loop`` is for :meth:`run`."""
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
        await self._serve_metrics(task_group)

        worker = current_worker()
        if worker is None and self.role is not HostRole.CHILD:  # else their parent's to log
            self.configuration.log_warnings()
        # SERVE: every request passes the gateway first. A host that owns its listener
        # listens before its app starts, so its health paths answer meanwhile (the other
        # requests wait for the app); a supervisor's worker, or a child, listens once its
        # app started, so no request waits on its start.
        gate = (GatewayStage(self.gateway)
                if self.role is HostRole.SERVE and self.gateway is not None else None)
        stopping = anyio.Event()
        server_done = anyio.Event()

        async def serve(app: ASGIApp, *, task_status: TaskStatus[list[str]]) -> None:
            try:
                with server_scope:
                    await self.server.serve(app, stopping, task_status=task_status)
            finally:
                server_done.set()
                stop_requested.set()  # a server that returns on its own stops the host
                if self._delay_over is not None:
                    self._delay_over.set()

        # A supervisor's workers load the app themselves, and report a failure themselves.
        failure = self._start_failure if self.role is not HostRole.SUPERVISE else None
        captures = self._captures_start_failure(worker)
        if failure is not None and not captures:
            self._end_on_start_failure(failure, worker)  # before it listens: nobody waits
        listens_first = gate is not None and worker is None
        if listens_first:
            self.urls = list(await task_group.start(serve, gate))
            self._log_urls()

        lifespan = Lifespan(self.app)
        if failure is None and self.role.runs_pipeline:
            failure = await lifespan.startup(task_group, options.startup_time_limit)
        # A worker that runs the app probes it and counts its requests; a FRONT's children
        # are its module's to probe and recycle.
        duties = (WorkerDuties(worker, options.health)
                  if worker is not None and self.role.runs_pipeline else None)
        if failure is not None and captures:
            logger.error("the app failed to start; every request gets %s: %s",
                         failure.title.partition(" ")[0], failure.detail.rstrip())
        stage = self._request_stage(task_group, lifespan.state, failure, duties)
        if failure is not None and not captures:
            if listens_first:
                # The requests that waited for the app get its failure page, then the host
                # stops listening and ends.
                assert gate is not None
                gate.open(stage)
                self._set_readiness(START_FAILED)
                stopping.set()
                server_scope.deadline = anyio.current_time() + _FAILED_START_DRAIN
                await server_done.wait()
            self._end_on_start_failure(failure, worker)
        if duties is not None:
            await duties.wait_healthy(stage)  # no request before the app answers app_path
        if gate is not None:
            gate.open(stage)
        if not listens_first:
            self.urls = list(await task_group.start(serve, gate or stage))
            self._log_urls()
        self._set_readiness(START_FAILED if failure is not None else READY)

        logger.info("Hosting model: %s; server: %s; async backend: %s",
                    options.hosting_model.value, self.server.name, running_event_loop())
        logger.info("Hosting environment: %s", self.configuration.environment_name)
        logger.info("Content root path: %s", self.configuration.content_root)
        logger.info("Application started. Press Ctrl+C to shut down.")
        self.plugins.hook.hostkit_host_started(host=self)
        if worker is not None:
            worker.report_ready()
        systemd.notify("READY=1")  # only the process systemd started has NOTIFY_SOCKET
        if duties is not None:
            task_group.start_soon(duties.report_health, stage)

        await stop_requested.wait()
        logger.info("Application is shutting down...")
        systemd.notify("STOPPING=1")
        self._set_readiness(DRAINING)
        self.plugins.hook.hostkit_host_stopping(host=self)
        stage.close_connections()
        if not server_done.is_set():
            await self._delay_shutdown()
        stopping.set()
        # A supervisor's drain is its workers': each waits its shutdown_delay, drains, then
        # shuts its app down.
        drain_limit = (worker_stop_limit(options.shutdown_timeout, options.shutdown_delay)
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

    def _captures_start_failure(self, worker: object | None) -> bool:
        """Whether this host serves its app's start failure (the 500.30 / 500.37 page) rather
        than ending: with ``capture_startup_errors`` (the default), unless it is a child or a
        supervisor's worker. A child ends so that its front counts a failed start and answers
        502.5; a worker so that its supervisor counts one."""
        return (self.role is not HostRole.CHILD and worker is None
                and self.configuration.options.capture_startup_errors)

    def _end_on_start_failure(self, failure: AppStartFailure, worker: object | None) -> None:
        """Log ``failure`` and raise what ends the host: :class:`AppStartError` (exit status
        3 from :meth:`run`); in a supervisor's worker a :class:`HostkitError` (status 1)."""
        if worker is not None:
            # A worker that serves only 500.30 must not look ready: its supervisor counts the
            # failed start, and its rapid-fail protection answers once starts keep failing.
            logger.error("the app failed to start: %s", failure.detail.rstrip())
            raise HostkitError(f"the app failed to start ({failure.message}); this worker "
                               "exits so that its supervisor counts a failed start")
        why = ("this child exits so that its front counts a failed start (502.5)"
               if self.role is HostRole.CHILD
               else f"exiting with status {AppStartError.exit_status} "
                    "(capture_startup_errors = false)")
        logger.error("the app failed to start; %s: %s", why, failure.detail.rstrip())
        raise AppStartError(failure)

    async def _serve_metrics(self, task_group: TaskGroup) -> None:
        """Start the metrics listener (``[metrics] urls``) in ``task_group`` when this
        process serves its metrics: not a supervisor's worker (its supervisor serves the
        sum) nor a child (its front counts its requests)."""
        metrics = self.gateway.metrics if self.gateway is not None else None
        if metrics is None or not metrics.serves or self.role is HostRole.CHILD:
            return
        from hostkit.metrics_listener import serve_metrics

        urls = await task_group.start(serve_metrics, metrics,
                                      self.configuration.options.metrics.urls)
        for url in urls:
            logger.info("Metrics at: %s/metrics", url.rstrip("/"))

    def _log_urls(self) -> None:
        for url in self.urls:
            logger.info("Now listening on: %s", url)

    def _set_readiness(self, state: str) -> None:
        if self.gateway is not None:
            self.gateway.readiness.set_state(state)

    def _delays_shutdown(self) -> bool:
        return (self.configuration.options.shutdown_delay > 0
                and self.role.owns_public_listener)

    async def _delay_shutdown(self) -> None:
        """``shutdown_delay``: keep serving that long before the drain, readiness already
        503, so a load balancer stops sending requests first (ANCM's ``shutdownDelay``).
        Only where the process owns the public listener: a supervisor's workers wait their
        own. A second signal, or the server ending, cuts it short."""
        if not self._delays_shutdown():
            return
        delay = self.configuration.options.shutdown_delay
        self._delay_over = anyio.Event()
        logger.info("Readiness answers 503; still serving for %g s (shutdown_delay) before "
                    "the drain", delay)
        try:
            with anyio.move_on_after(delay):
                await self._delay_over.wait()
        finally:
            self._delay_over = None

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
                    again = ("skip shutdown_delay" if self._delays_shutdown()
                             else "stop at once")
                    logger.info("%s received: stopping gracefully (again to %s)", name, again)
                    self._stop_requested.set()
                elif self._delay_over is not None:
                    logger.warning("%s received again: the drain begins now, without the rest "
                                   "of shutdown_delay (again to stop at once)", name)
                    self._delay_over.set()
                elif self._server_scope is not None:
                    logger.warning("%s received again: stopping now", name)
                    if isinstance(self.server, StopNowServer):
                        self.server.stop_now()  # a module's children stop at once too
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
