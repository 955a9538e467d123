"""The rapid-fail budget: how many failures a rolling window allows before starts stop."""

from __future__ import annotations

import collections
import dataclasses
import math
import time

#: The rolling window of a ``rapid_fails_per_minute`` setting.
MINUTE = 60.0


@dataclasses.dataclass(frozen=True)
class Exhausted:
    """The budget is spent: ``failures`` in the window, and no start for ``retry_after``
    seconds (at least 1, rounded up: what a ``Retry-After`` header says)."""

    failures: int
    retry_after: int


class RapidFailBudget:
    """Failures within the last ``window`` seconds; more than ``allowed`` of them stop starts
    until the oldest leaves the window (IIS's rapid-fail protection).

    The owner calls :meth:`record` for each failure and asks :meth:`exhausted` before each
    start. Time is ``time.monotonic``.
    """

    def __init__(self, allowed: int, window: float = MINUTE):
        self.allowed = allowed
        self.window = window
        self._failures: collections.deque[float] = collections.deque()

    def record(self) -> None:
        """One failure, now."""
        self._failures.append(time.monotonic())

    def exhausted(self) -> Exhausted | None:
        """``None`` while a start is allowed, else how many failures and how long to wait."""
        now = time.monotonic()
        failures = self._failures
        while failures and failures[0] <= now - self.window:
            failures.popleft()
        if len(failures) <= self.allowed:
            return None
        return Exhausted(len(failures), max(1, math.ceil(failures[0] + self.window - now)))
