"""Bounded memo tables for values worked out from what clients and apps send (header names,
status lines, Host values): :func:`remember`.

Such a table is keyed by input nobody controls, so it must not grow without bound; it is
emptied when full rather than frozen, so that the entries of a steady load come back at once
after a burst of one-off keys.
"""

from __future__ import annotations

from typing import TypeVar

K = TypeVar("K")
V = TypeVar("V")


def remember(cache: dict[K, V], key: K, value: V, limit: int) -> V:
    """Keep ``value`` for ``key`` in ``cache``, emptying it first when it holds ``limit``
    entries; returns ``value``. Called once a value was worked out, after a ``cache.get``
    missed."""
    if len(cache) >= limit:
        cache.clear()
    cache[key] = value
    return value
