"""What every suite's figures offer, and how CI reads a timing on a shared machine.

Each suite returns figures with ``lines()`` (what to print) and ``problems()`` (the targets
not met, empty when all are). Problems that are about time alone (a p99, how long an answer
took) start with :data:`TIMING`: one measurement on a loaded machine can miss such a target by
itself, so CI measures once more before it fails (:func:`measure_twice`); a real regression
misses it twice. The full run (``python -m tests.hardening``) reports every measurement raw.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Protocol, TypeVar

TIMING = "timing: "


class Reported(Protocol):
    def lines(self) -> list[str]: ...

    def problems(self) -> list[str]: ...


R = TypeVar("R")


def timing(message: str) -> str:
    """A problem about time alone."""
    return TIMING + message


def only_timing(problems: list[str]) -> bool:
    return bool(problems) and all(problem.startswith(TIMING) for problem in problems)


def measure_twice(measure: Callable[[], R], problems: Callable[[R], list[str]]) -> R:
    """``measure()``, and once more when every problem of the first is a timing one."""
    figures = measure()
    if only_timing(problems(figures)):
        figures = measure()
    return figures
