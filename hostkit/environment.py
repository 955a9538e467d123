"""HostEnvironment: which environment the host runs in and where its content lives."""

from __future__ import annotations

import dataclasses
from pathlib import Path

DEVELOPMENT = "Development"
STAGING = "Staging"
PRODUCTION = "Production"


@dataclasses.dataclass(frozen=True)
class HostEnvironment:
    """``name`` comes from ``HOSTKIT_ENVIRONMENT`` (default Production); ``content_root`` is the
    folder that holds ``hostkit.toml`` and is the child's working directory."""

    name: str
    content_root: Path

    def is_environment(self, name: str) -> bool:
        """Case-insensitive comparison with ``name``."""
        return self.name.lower() == name.lower()

    def is_development(self) -> bool:
        return self.is_environment(DEVELOPMENT)

    def is_staging(self) -> bool:
        return self.is_environment(STAGING)

    def is_production(self) -> bool:
        return self.is_environment(PRODUCTION)
