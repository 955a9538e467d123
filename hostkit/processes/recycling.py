"""When a process that runs the app is recycled: ``[workers] max_requests`` (with its jitter),
``max_lifetime`` and ``max_memory`` (SPEC §8), for a supervisor's InProcess workers and an
OutOfProcess module's children alike.

Recycling is always a rolling replacement, done by the owner of the process (the supervisor,
the module); this module only says when, and why, for the log line.
"""

from __future__ import annotations

import dataclasses
import random
from pathlib import Path

from hostkit.configuration.tables import WorkersOptions

#: Seconds between two reads of a process's resident memory.
MEMORY_CHECK_INTERVAL = 2.0
_MIB = 1024 * 1024


@dataclasses.dataclass(frozen=True)
class RecyclePolicy:
    """The recycle limits of one kind of process; 0 means no limit."""

    max_requests: int = 0
    max_requests_jitter: int = 0
    max_lifetime: float = 0
    max_memory_mib: float = 0

    @classmethod
    def from_options(cls, options: WorkersOptions) -> RecyclePolicy:
        return cls(options.max_requests, options.max_requests_jitter, options.max_lifetime,
                   options.max_memory)

    def request_limit(self) -> int | None:
        """The number of requests after which one new process is recycled: ``max_requests``
        plus a random 0..``max_requests_jitter``, drawn once per process; ``None``: never."""
        if not self.max_requests:
            return None
        return self.max_requests + random.randint(0, self.max_requests_jitter)

    def over_memory(self, pid: int) -> str | None:
        """Why ``pid`` must be recycled for its memory (a log line's reason), or ``None``:
        under ``max_memory``, no limit, or a process that is gone."""
        if not self.max_memory_mib:
            return None
        resident = resident_memory(pid)
        if resident is None or resident <= self.max_memory_mib * _MIB:
            return None
        return (f"its resident memory {resident / _MIB:.0f} MiB is above workers.max_memory = "
                f"{self.max_memory_mib:g} MiB")

    def requests_reason(self, served: int) -> str:
        return f"it served {served} requests (workers.max_requests = {self.max_requests})"

    def lifetime_reason(self) -> str:
        return f"it ran for workers.max_lifetime = {self.max_lifetime:g} s"


def resident_memory(pid: int) -> int | None:
    """The resident set size of ``pid`` in bytes (``VmRSS`` in ``/proc/PID/status``), or
    ``None`` when the process is gone or the platform has no ``/proc``."""
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return None
    for line in status.splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    return None
