"""The ``hostkit.toml`` of an OutOfProcess front under test, and what its children logged.

Every front the tests start has the same defaults: a short stop (``shutdown_timeout`` 5 s,
``module.shutdown_time_limit`` 3 s), a 15 s ``module.startup_time_limit``, and the children's
output in ``logs/child_*.log`` (``module.stdout_log_enabled``), where tests read their lines.
"""

from __future__ import annotations

import sys
from collections.abc import Mapping
from pathlib import Path


def child_program(path: Path, *arguments: str) -> dict[str, object]:
    """``[module]`` settings that run ``path`` with this interpreter as the child."""
    return {"process_path": sys.executable, "arguments": [str(path), *arguments]}


def front_settings(*, module: Mapping[str, object] | None = None,
                   server: Mapping[str, object] | None = None,
                   **top: object) -> dict[str, object]:
    """The settings of an OutOfProcess front: the defaults above, then ``top`` (top-level
    keys), ``server`` and ``module`` on top; for :func:`hostkit.testing.write_settings`."""
    settings: dict[str, object] = {"hosting_model": "OutOfProcess", "shutdown_timeout": 5,
                                   **top}
    if server:
        settings["server"] = dict(server)
    settings["module"] = {"stdout_log_enabled": True, "stdout_log_file": "logs/child",
                          "shutdown_time_limit": 3, "startup_time_limit": 15, **(module or {})}
    return settings


def child_log(root: Path) -> str:
    """Everything the children of the front in ``root`` wrote to their stdout log files."""
    return "\n".join(path.read_text(errors="replace")
                     for path in sorted((root / "logs").glob("child_*.log")))
