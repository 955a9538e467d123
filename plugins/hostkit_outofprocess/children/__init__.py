"""The front's children: the child manager, its settings, and why a child can be unavailable.

- :mod:`~hostkit_outofprocess.children.manager`: :class:`ChildManager` (slots, acquire,
  crash replacement, rapid-fail budget, app_offline, rolling replacement and recycling,
  stop);
- :mod:`~hostkit_outofprocess.children.child`: :class:`Child`, one started child;
- :mod:`~hostkit_outofprocess.children.settings`: :class:`ChildSettings` from ``[module]``,
  ``[workers]``' recycle keys and ``[health]``, and :func:`child_configuration`, what a
  child will load;
- :mod:`~hostkit_outofprocess.children.health`: :class:`HealthCheck` and the probe of a
  child's ``app_path``;
- :mod:`~hostkit_outofprocess.children.errors`: :class:`ChildUnavailable` and its kinds,
  each with the status the front answers;
- :mod:`~hostkit_outofprocess.children.stdout_log`: ``stdout_log_enabled``'s files.

Process management itself (spawn, parent-death, reap, stop) is hostkit's
(:class:`hostkit.plugin.ManagedProcess`), shared with the supervisor.
"""

from __future__ import annotations

from hostkit_outofprocess.children.child import Child
from hostkit_outofprocess.children.errors import (
    AppOffline,
    ChildStartupFailure,
    ChildUnavailable,
    RapidFailLimit,
)
from hostkit_outofprocess.children.health import HealthCheck
from hostkit_outofprocess.children.manager import ChildManager
from hostkit_outofprocess.children.settings import ChildSettings, child_configuration

__all__ = [
    "AppOffline", "Child", "ChildManager", "ChildSettings", "ChildStartupFailure",
    "ChildUnavailable", "HealthCheck", "RapidFailLimit", "child_configuration",
]
