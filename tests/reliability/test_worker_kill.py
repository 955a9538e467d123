"""A worker SIGKILLed under load: two InProcess workers under the supervisor, 64 keep-alive
clients, on asyncio and trio.

CI kills one a few times in a few seconds; ``python -m tests.hardening --full`` every 2 s for
60 s. Only requests in flight on the killed worker (on a connection it held) may fail;
requests sent after a kill, on a new connection or one the other worker held, do not; every
answer comes from a worker, and every killed worker is replaced.
"""

from __future__ import annotations

import anyio
import pytest

from tests.hardening import worker_kill
from tests.hardening.supervisor_kill import Supervised

pytestmark = pytest.mark.integration


@pytest.mark.parametrize("backend", ["asyncio", "trio"])
def test_only_requests_in_flight_on_the_killed_worker_fail(backend: str) -> None:
    with Supervised(backend) as supervisor:
        figures = anyio.run(worker_kill.run, supervisor, worker_kill.QUICK, backend=backend)
    assert figures.problems() == [], figures.lines()
    assert len(figures.kills) == worker_kill.QUICK.kills
    assert figures.answering_pids > 2  # replacements served too
    # Both cases that must not fail did occur: new connections, and surviving ones.
    assert figures.new_connections > 0
    assert figures.sent_after_kill > figures.sent_after_kill_surviving > 0
