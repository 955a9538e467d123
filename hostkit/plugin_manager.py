"""Loading plugins into a host's own plugin manager (there is no global one).

Sources, in order: the ``hostkit`` entry-point group (built-in plugins are entry points of the
``hostkit`` distribution itself and always load; others are skipped when
``HOSTKIT_DISABLE_PLUGIN_AUTOLOAD`` is set), then the modules named by the ``plugins``
setting, then ``HostBuilder.add_plugin``. ``HOSTKIT_TRACE_PLUGINS=1`` prints every hook call.
Both variables are read by :func:`hostkit.environment.flag_is_set`: ``0`` means off.
"""

from __future__ import annotations

import dataclasses
import importlib
import importlib.metadata
import os
import sys
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import pluggy

from hostkit import hookspecs
from hostkit.environment import flag_is_set
from hostkit.errors import ConfigurationError

ENTRY_POINT_GROUP = "hostkit"
DISTRIBUTION = "hostkit"


@dataclasses.dataclass(frozen=True)
class PluginInfo:
    """One registered plugin: its name, the distribution and version it came from, its hooks."""

    name: str
    distribution: str | None
    version: str | None
    hooks: tuple[str, ...]


class Plugins:
    """The plugins of one host: its own pluggy manager and where each plugin came from."""

    def __init__(self, environ: Mapping[str, str] | None = None):
        self.environ = os.environ if environ is None else environ
        self.manager = pluggy.PluginManager(hookspecs.PROJECT_NAME)
        self.manager.add_hookspecs(hookspecs)
        self._origins: dict[str, tuple[str | None, str | None]] = {}
        if flag_is_set(self.environ, "HOSTKIT_TRACE_PLUGINS"):
            _enable_tracing(self.manager)

    @property
    def hook(self) -> Any:
        return self.manager.hook

    def register(self, plugin: object, name: str | None = None,
                 distribution: str | None = None, version: str | None = None) -> str:
        """Register ``plugin`` under ``name``; returns the name used."""
        registered = self.manager.register(plugin, name=name)
        if registered is None:
            raise ValueError(f"plugin {name or plugin!r} is blocked")
        if version is None:
            attribute = getattr(plugin, "__version__", None)
            version = str(attribute) if attribute is not None else None
        self._origins[registered] = (distribution, version)
        return registered

    def load_entry_points(self) -> None:
        """Register every plugin of the ``hostkit`` entry-point group.

        With ``HOSTKIT_DISABLE_PLUGIN_AUTOLOAD`` set, only the built-in ones (entry points of
        the ``hostkit`` distribution) are registered.
        """
        builtin_only = flag_is_set(self.environ, "HOSTKIT_DISABLE_PLUGIN_AUTOLOAD")
        for entry_point in importlib.metadata.entry_points(group=ENTRY_POINT_GROUP):
            dist = entry_point.dist
            if builtin_only and (dist is None or dist.name != DISTRIBUTION):
                continue
            if self.manager.has_plugin(entry_point.name):
                continue
            self.register(entry_point.load(), entry_point.name,
                          dist.name if dist else None, dist.version if dist else None)

    def load_modules(self, names: Iterable[str], where: str) -> None:
        """Import and register the modules of the ``plugins`` setting.

        ``where`` names the setting's source for the error when a module cannot be imported.
        """
        for name in names:
            if self.manager.has_plugin(name):
                continue
            try:
                module = importlib.import_module(name)
            except ImportError as error:
                raise ConfigurationError(
                    f"{where}: plugin module {name!r} in 'plugins' cannot be imported: {error}"
                ) from None
            self.register(module, name)

    def check_pending(self) -> None:
        """Fail loudly on a hook implementation whose name matches no hook spec."""
        try:
            self.manager.check_pending()
        except pluggy.PluginValidationError as error:
            raise ConfigurationError(f"plugin {error.plugin!r}: {error}") from None

    def describe(self) -> list[PluginInfo]:
        """What ``hostkit plugins`` prints: every registered plugin, sorted by name."""
        result = []
        for name, plugin in self.manager.list_name_plugin():
            if plugin is None:
                continue
            distribution, version = self._origins.get(name, (None, None))
            callers = self.manager.get_hookcallers(plugin) or ()
            hooks = tuple(sorted(caller.name for caller in callers))
            result.append(PluginInfo(name, distribution, version, hooks))
        return sorted(result, key=lambda info: info.name)

    def names(self) -> list[str]:
        """Names of the registered plugins, for error messages."""
        return sorted(name for name, plugin in self.manager.list_name_plugin()
                      if plugin is not None)


def _enable_tracing(manager: pluggy.PluginManager) -> None:
    def before(hook_name: str, hook_impls: Sequence[pluggy.HookImpl],
               kwargs: Mapping[str, Any]) -> None:
        names = ", ".join(impl.plugin_name for impl in hook_impls) or "no implementations"
        print(f"hostkit trace: {hook_name}({', '.join(kwargs)}) -> [{names}]", file=sys.stderr)

    def after(outcome: pluggy.Result[Any], hook_name: str,
              hook_impls: Sequence[pluggy.HookImpl], kwargs: Mapping[str, Any]) -> None:
        exception = outcome.exception
        result = f"raised {exception!r}" if exception is not None else repr(outcome.get_result())
        print(f"hostkit trace: {hook_name} result: {result}", file=sys.stderr)

    manager.add_hookcall_monitoring(before, after)
