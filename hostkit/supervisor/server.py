"""Supervisor: the server of a ``SUPERVISE`` host, which serves through worker processes.

It binds every ``urls`` entry once, runs ``[workers] processes`` workers of this same
program (:class:`~hostkit.supervisor.pool.WorkerPool`), each handed the listening sockets
(:mod:`hostkit.worker_contract`), and lets the kernel spread connections across them. While
no worker is up it answers 503 itself (:mod:`hostkit.supervisor.answers`). For InProcess
workers it applies the content-root rules as the module does for its children: the offline
file stops the workers, a configuration change replaces them.

Stopping: stop answering, SIGTERM every worker (each drains under ``shutdown_timeout``) and
wait for them; cancelled (the host's deadline, or a second signal), the workers left get a
second signal and are killed after a short grace.
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import logging
import os
import signal
import socket
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import anyio
from anyio.abc import TaskStatus

from hostkit.asgi import ASGIApp
from hostkit.configuration import Configuration
from hostkit.configuration.sources import reload_configuration
from hostkit.content_root import ContentRootRules, ContentRootWatch
from hostkit.gateway import Gateway
from hostkit.listeners import ListenAddress, bind_all, close_all
from hostkit.processes import this_program
from hostkit.server_contract import HostRole
from hostkit.supervisor.answers import answer_while_unavailable, unavailable_reason
from hostkit.supervisor.pool import STOP_NOW_GRACE, WorkerPool
from hostkit.tls import server_context

if TYPE_CHECKING:
    from hostkit.metrics import Metrics

logger = logging.getLogger("hostkit.supervisor")

#: Extra seconds past its drain and its app's shutdown a worker has to exit.
_EXIT_GRACE = 2.0


def worker_stop_limit(shutdown_timeout: float, shutdown_delay: float = 0) -> float:
    """Seconds a worker asked to stop may take before it is killed: its ``shutdown_delay``
    (it still serves, readiness 503), then its drain and its app's shutdown, each under
    ``shutdown_timeout``."""
    return shutdown_delay + 2 * shutdown_timeout + _EXIT_GRACE


class Supervisor:
    """A :class:`hostkit.Server` that runs worker processes instead of serving requests."""

    name = "supervisor"

    def __init__(self, configuration: Configuration, *, worker_role: HostRole,
                 rules: ContentRootRules, command: Sequence[str] | None = None,
                 rapid_fail_window: float | None = None, metrics: Metrics | None = None,
                 gateway: Gateway | None = None):
        """``worker_role`` is what each worker will be (``SERVE`` or ``FRONT``); the content
        root ``rules`` apply when it runs the pipeline (a ``FRONT`` applies them itself).
        ``command`` is what a worker runs (default: this program again); tests shorten the
        rapid-fail budget's minute with ``rapid_fail_window``. ``metrics`` (None: none) counts
        the workers and, while it runs, sums their values (:meth:`Metrics.collecting_workers`).
        ``gateway`` (the host's): its health paths and request ids for the supervisor's own
        answers, and its readiness, not ready while no worker is up."""
        self.metrics = metrics
        self.gateway = gateway
        self.configuration = configuration
        self.options = configuration.options
        self.worker_role = worker_role
        # A FRONT applies the offline file and configuration changes to its children itself.
        self.rules = dataclasses.replace(
            rules if worker_role.runs_pipeline else ContentRootRules(),
            reload=self.options.workers.reload)
        self.command = list(command) if command is not None else this_program()
        self.rapid_fail_window = rapid_fail_window
        self.pool: WorkerPool | None = None

    async def serve(self, app: ASGIApp, stopping: anyio.Event, *,
                    task_status: TaskStatus[list[str]] = anyio.TASK_STATUS_IGNORED) -> None:
        bound = bind_all(self.options.urls)
        try:
            collecting: contextlib.AbstractContextManager[dict[str, str]] = (
                contextlib.nullcontext({}) if self.metrics is None
                else self.metrics.collecting_workers())
            with collecting as metrics_variables:
                await self._serve(bound, stopping, task_status, metrics_variables)
        finally:
            close_all(bound)

    async def _serve(self, bound: list[tuple[ListenAddress, socket.socket]],
                     stopping: anyio.Event, task_status: TaskStatus[list[str]],
                     metrics_variables: dict[str, str]) -> None:
        options = self.options
        urls = [address.display(sock) for address, sock in bound]
        tls = server_context(self.configuration) if any(a.is_secure for a, _ in bound) else None
        window = {} if self.rapid_fail_window is None else {
            "rapid_fail_window": self.rapid_fail_window}
        pool = self.pool = WorkerPool(
            command=self.command, cwd=Path.cwd(),
            environment={**os.environ, **metrics_variables}, metrics=self.metrics,
            listeners=[(sock, url) for (_, sock), url in zip(bound, urls)],
            options=options.workers, health=options.health,
            stop_limit=worker_stop_limit(options.shutdown_timeout, options.shutdown_delay),
            **window)
        watch = ContentRootWatch(self.configuration.content_root,
                                 self.configuration.environment_name, self.rules)
        head_timeout = options.server_options.next_request_head_timeout
        if self.gateway is not None:
            self.gateway.readiness.add_check(functools.partial(unavailable_reason, pool))
        async with anyio.create_task_group() as services:
            if self.rules != ContentRootRules():
                await services.start(functools.partial(
                    watch.run, stopping, on_offline=pool.set_offline,
                    on_config_change=self._reload_from_files,
                    on_code_change=functools.partial(self._replace_app_processes,
                                                     "a *.py file changed")))
            await services.start(pool.run)
            logger.info("Supervising %d worker processes (%s, server %s)",
                        options.workers.processes, options.hosting_model.value,
                        options.server.lower())
            async with anyio.create_task_group() as answering:
                answering.start_soon(answer_while_unavailable, pool, [
                    (sock, tls if address.is_secure else None) for address, sock in bound],
                    answering, head_timeout, self.gateway)
                task_status.started(urls)
                await stopping.wait()
                answering.cancel_scope.cancel()
            await pool.drain()
            services.cancel_scope.cancel()

    async def reload(self, configuration: Configuration) -> None:
        """SIGHUP: take ``configuration`` (the files read again) and replace every worker,
        one at a time; each new worker reads the files itself. ``urls`` and the number of
        workers stay as they were until the supervisor is started again."""
        for key, old, new in (("urls", self.options.urls, configuration.options.urls),
                              ("workers.processes", self.options.workers.processes,
                               configuration.options.workers.processes)):
            if old != new:
                logger.warning("%s changed from %s to %s: it takes effect when the supervisor "
                               "is started again", key, old, new)
        self.configuration = configuration
        if self.pool is not None:
            self.pool.configure(configuration.options.workers, configuration.options.health)
        await self._replace_app_processes("the configuration was reloaded")

    async def _replace_app_processes(self, reason: str) -> None:
        """Replace the processes that run the app: InProcess, the workers (one at a time);
        OutOfProcess, each worker's children, which the worker replaces itself on SIGHUP (so
        no request waits for a new module's first child to start)."""
        if self.pool is None:
            return
        if self.worker_role.runs_pipeline:
            await self.pool.replace_all(reason)
        else:
            logger.info("%s: each worker replaces its children", reason)
            self.pool.signal_workers(signal.SIGHUP)

    async def _reload_from_files(self) -> None:
        configuration = reload_configuration(self.configuration)
        if configuration is not None:
            await self.reload(configuration)


__all__ = ["STOP_NOW_GRACE", "Supervisor", "worker_stop_limit"]
