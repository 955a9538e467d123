"""The supervisor (SPEC §8, the Windows Process Activation Service's role): worker processes
for either hosting model, crash restart, rapid-fail protection, the content-root rules for
InProcess.

- :mod:`~hostkit.supervisor.server`: :class:`Supervisor`, the server of a ``SUPERVISE`` host:
  binds the ``urls``, runs the pool, answers while no worker is up, stops the workers;
- :mod:`~hostkit.supervisor.pool`: :class:`WorkerPool`, the workers in their slots: start,
  ready, replacement, the rapid-fail budget, offline, drain;
- :mod:`~hostkit.supervisor.answers`: the 503 the supervisor answers itself.

The worker's side of the contract is :mod:`hostkit.worker_contract`; the processes are
:mod:`hostkit.processes`' (the same as an OutOfProcess front's children).
"""

from __future__ import annotations

from hostkit.supervisor.server import Supervisor, worker_stop_limit

__all__ = ["Supervisor", "worker_stop_limit"]
