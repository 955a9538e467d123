"""HostEnvironment: which environment the host runs in and where its content lives.

Also the one reading of the host's on/off variables (:func:`flag_is_set`), so that every
place that asks whether ``HOSTKIT_DISABLE_PLUGIN_AUTOLOAD`` is set gets the same answer.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from pathlib import Path

DEVELOPMENT = "Development"
STAGING = "Staging"
PRODUCTION = "Production"

_OFF_WORDS = frozenset({"", "0", "false", "no", "off"})


def is_environment(name: str, wanted: str) -> bool:
    """True when the environment ``name`` is ``wanted``; environment names ignore case."""
    return name.lower() == wanted.lower()


def is_development(name: str) -> bool:
    """True when the environment ``name`` is Development, where error pages show details."""
    return is_environment(name, DEVELOPMENT)


def flag_is_set(environ: Mapping[str, str], name: str) -> bool:
    """True when the on/off variable ``name`` is set in ``environ`` to anything but off.

    Unset, empty, ``0``, ``false``, ``no`` and ``off`` (any case, surrounding spaces ignored)
    mean off: ``HOSTKIT_DISABLE_PLUGIN_AUTOLOAD=0`` does not disable autoloading.
    """
    return environ.get(name, "").strip().lower() not in _OFF_WORDS


@dataclasses.dataclass(frozen=True)
class HostEnvironment:
    """``name`` comes from ``HOSTKIT_ENVIRONMENT`` (default Production); ``content_root`` is the
    folder that holds ``hostkit.toml`` and is the child's working directory."""

    name: str
    content_root: Path

    def is_environment(self, name: str) -> bool:
        """Case-insensitive comparison with ``name``."""
        return is_environment(self.name, name)

    def is_development(self) -> bool:
        return is_development(self.name)

    def is_staging(self) -> bool:
        return self.is_environment(STAGING)

    def is_production(self) -> bool:
        return self.is_environment(PRODUCTION)
