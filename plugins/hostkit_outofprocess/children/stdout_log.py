"""A child's stdout log (``stdout_log_enabled``): ``{stdout_log_file}_{yyyymmddHHMMSS}_{pid}.log``.

The child writes to the file directly, so the front copies nothing and a chatty child never
waits on it. The file is opened before the child exists and named after its pid once it runs.
"""

from __future__ import annotations

import os
from datetime import datetime
from pathlib import Path
from typing import IO


class StdoutLog:
    """One child's log file, open for the child to inherit, until :meth:`name_for`."""

    def __init__(self, path: Path, file: IO[bytes]):
        self.path = path
        self.file = file

    @classmethod
    def open(cls, prefix: Path) -> StdoutLog:
        """Create ``{prefix}_{yyyymmddHHMMSS}_starting.log`` (and its folder)."""
        prefix.parent.mkdir(parents=True, exist_ok=True)
        stamp = datetime.now().strftime("%Y%m%d%H%M%S")
        path = prefix.with_name(f"{prefix.name}_{stamp}_starting.log")
        return cls(path, open(path, "ab", buffering=0))  # noqa: SIM115 - handed to the child

    def name_for(self, pid: int) -> Path:
        """Rename the file to ``{prefix}_{yyyymmddHHMMSS}_{pid}.log``; returns where it is
        now (still the ``_starting`` name if it cannot be renamed: the child writes on)."""
        final = self.path.with_name(self.path.name.replace("_starting.log", f"_{pid}.log"))
        try:
            os.replace(self.path, final)
        except OSError:
            return self.path
        return final


def read_tail(path: Path, size: int) -> str:
    """The last ``size`` bytes of the file at ``path``, decoded (``""`` when unreadable)."""
    try:
        with open(path, "rb") as log:
            log.seek(max(0, log.seek(0, os.SEEK_END) - size))
            return log.read().decode("utf-8", "replace")
    except OSError:
        return ""
