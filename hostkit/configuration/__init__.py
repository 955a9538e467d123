"""hostkit's configuration: the schema of every setting, and the one place that reads them.

- :mod:`hostkit.configuration.tables`: hostkit's settings tables (each key, its kind, default
  and documentation) and the :class:`SettingsTable` type plugins declare their own tables with;
- :mod:`hostkit.configuration.schema`: the tables a configuration is validated against,
  hostkit's own and those the plugins contribute;
- :mod:`hostkit.configuration.sources`: reading ``hostkit.toml``, the environment file,
  ``HOSTKIT_*`` variables and command-line arguments, and merging them into a validated
  :class:`Configuration`;
- :mod:`hostkit.configuration.reference`: ``hostkit.toml.example``, rendered from the schema.
"""

from __future__ import annotations

from hostkit.configuration.sources import (
    CONFIG_FILE,
    DEFAULT_ENVIRONMENT,
    ENVIRONMENT_PREFIX,
    Configuration,
    Entry,
    Source,
    load_configuration,
    resolve_path,
)
from hostkit.errors import ConfigurationError

__all__ = [
    "CONFIG_FILE", "DEFAULT_ENVIRONMENT", "ENVIRONMENT_PREFIX", "Configuration",
    "ConfigurationError", "Entry", "Source", "load_configuration", "resolve_path",
]
