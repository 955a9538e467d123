"""The supervisor SIGKILLed with two workers running (InProcess, and OutOfProcess with a child
each): no worker or child survives it, none is left a zombie, and the port can be bound again
(the next round binds it). Rounds alternate asyncio and trio; the full run does 20."""

from __future__ import annotations

import pytest

from tests.hardening import supervisor_kill

pytestmark = pytest.mark.integration


def test_killing_the_supervisor_leaves_no_worker_or_child_and_frees_the_port() -> None:
    figures = supervisor_kill.run(["asyncio", "trio"], supervisor_kill.QUICK)
    assert figures.problems() == [], figures.lines()
    assert [(r.model, len(r.workers)) for r in figures.rounds] == [
        ("InProcess", 2), ("InProcess", 2), ("OutOfProcess", 2)]
    assert [len(r.children) for r in figures.rounds] == [0, 0, 2]
    assert max(r.after.gone_after for r in figures.rounds) < 2
