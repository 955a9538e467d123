"""How the front starts its children, read once from ``[module]``: :class:`ChildSettings`."""

from __future__ import annotations

import dataclasses
import os
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path

import hostkit
from hostkit.plugin import RecyclePolicy, resolve_path, this_program

from hostkit_outofprocess.children.health import HealthCheck
from hostkit_outofprocess.options import ModuleOptions, module_options


@dataclasses.dataclass(frozen=True)
class ChildSettings:
    """How to start a child, and when to replace it: everything a slot needs.

    ``environment`` is the whole environment a child starts with, before its contract
    (``HOSTKIT_PORT`` …); ``log_prefix`` is where ``stdout_log_enabled`` writes its output
    (``None``: read through a pipe, its tail kept in memory); ``relay_output`` copies what is
    read through the pipe to the front's stderr too (``relay_child_output``; never with a log
    file, which the child writes itself); ``recycle`` is ``[workers]``' recycle limits and
    ``health`` the ``[health]`` probe (``None``: no probe).
    """

    command: Sequence[str]
    cwd: Path
    environment: Mapping[str, str]
    path_base: str
    startup_time_limit: float
    shutdown_time_limit: float
    rapid_fails_per_minute: int
    log_prefix: Path | None
    recycle: RecyclePolicy = RecyclePolicy()
    health: HealthCheck | None = None
    relay_output: bool = False

    @classmethod
    def from_configuration(cls, configuration: hostkit.Configuration) -> ChildSettings:
        """From ``[module]``, ``[workers]``' recycle keys and ``[health]``: what the front's
        children start with, when it starts and after a reload. Raises
        :class:`hostkit.ConfigurationError` for a bad ``[module]`` value."""
        settings = cls.from_options(module_options(configuration), configuration.content_root)
        return dataclasses.replace(
            settings, recycle=RecyclePolicy.from_options(configuration.options.workers),
            health=HealthCheck.from_configuration(configuration))

    @classmethod
    def from_options(cls, options: ModuleOptions, content_root: Path,
                     environ: Mapping[str, str] | None = None) -> ChildSettings:
        """From the ``[module]`` table; the inherited environment is ``environ`` (default:
        this process's).

        A relayed child gets ``PYTHONUNBUFFERED=1`` unless its environment sets that variable
        (non-empty): its stdout is a pipe, where Python would hold a ``print`` back until 8 KB
        gathered.
        """
        command = ([options.process_path or sys.executable, *options.arguments]
                   if options.process_path or options.arguments else this_program())
        inherited = os.environ if environ is None else environ
        log_prefix = (resolve_path(content_root, options.stdout_log_file)
                      if options.stdout_log_enabled else None)
        relay = options.relay_child_output and log_prefix is None
        environment = {**inherited, **options.environment_variables}
        if relay and not environment.get("PYTHONUNBUFFERED"):  # empty is unset for Python
            environment["PYTHONUNBUFFERED"] = "1"
        return cls(command, content_root, environment, options.path_base,
                   options.startup_time_limit, options.shutdown_time_limit,
                   options.rapid_fails_per_minute, log_prefix, relay_output=relay)


def child_configuration(configuration: hostkit.Configuration,
                        options: ModuleOptions) -> hostkit.Configuration | None:
    """The configuration a child will load, as far as its front can tell: the front's own,
    with the child's ``environment_variables`` and the ``--key=value`` items of its
    ``arguments`` on top (without ``arguments`` the child runs the front's own command line).
    ``None`` when they do not load: the child will report that itself."""
    arguments = list(options.arguments)
    first = next((i for i, item in enumerate(arguments) if item.startswith("--")),
                 len(arguments))
    try:
        return configuration.with_sources(arguments[first:], options.environment_variables)
    except hostkit.ConfigurationError:
        return None
