"""What a host does as one of a supervisor's workers, beyond serving: the worker's side of
SPEC §8, over the channel of :mod:`hostkit.worker_contract`.

- before it takes a request, with ``[health] app_path``: probe the app until it answers 2xx
  (the supervisor kills a worker that is not ready within ``startup_time_limit``);
- once its host started: report ready;
- then, with ``app_path``: probe every ``app_interval`` seconds and report each result;
- InProcess, after ``[workers] max_requests`` (+ jitter) requests: ask to be recycled, and
  keep serving until the supervisor, its replacement ready, asks it to stop.
"""

from __future__ import annotations

import logging

import anyio

from hostkit.asgi import ASGIApp
from hostkit.configuration.tables import HealthOptions
from hostkit.health import probe
from hostkit.worker_contract import HEALTH_FAILED, HEALTH_OK, RECYCLE, WorkerContract

logger = logging.getLogger("hostkit.worker")


class WorkerDuties:
    """The duties of the worker whose channel is ``contract``; made by the host."""

    def __init__(self, contract: WorkerContract, health: HealthOptions):
        self.contract = contract
        self.health = health

    async def wait_healthy(self, app: ASGIApp) -> None:
        """Return once ``app`` answers ``app_path`` with 2xx (at once without one); probes
        ``app_interval`` seconds apart, each bounded by ``app_interval``."""
        if not self.health.app_path:
            return
        while (failure := await probe(app, self.health.app_path,
                                      self.health.app_interval)) is not None:
            logger.warning("not ready yet: %s", failure)
            await anyio.sleep(self.health.app_interval)

    async def report_health(self, app: ASGIApp) -> None:
        """Probe ``app_path`` every ``app_interval`` seconds and tell the supervisor each
        result; runs until cancelled (nothing to do without ``app_path``)."""
        if not self.health.app_path:
            return
        while True:
            await anyio.sleep(self.health.app_interval)
            failure = await probe(app, self.health.app_path, self.health.app_interval)
            self.contract.send(HEALTH_OK if failure is None else f"{HEALTH_FAILED} {failure}")

    def ask_recycle(self, reason: str) -> None:
        """Ask the supervisor to replace this worker; called by the request stage at
        ``max_requests``, and again after as many more if the worker is still serving then
        (its replacement failed to start)."""
        logger.info("asking to be recycled: %s", reason)
        self.contract.send(f"{RECYCLE} {reason}")
