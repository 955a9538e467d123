"""The front SIGKILLed with two children running: no child survives it, none is left a
zombie, and the public port can be bound again (the next round binds it). Rounds alternate
asyncio and trio; the full run does 20."""

from __future__ import annotations

import pytest

from tests.hardening import front_kill

pytestmark = pytest.mark.integration


def test_killing_the_front_leaves_no_child_and_frees_the_port() -> None:
    figures = front_kill.run(["asyncio", "trio"], front_kill.QUICK)
    assert figures.problems() == [], figures.lines()
    assert all(len(r.children) == 2 for r in figures.rounds)
    assert max(r.gone_after for r in figures.rounds) < 2
