"""SIGTERM to the front with 64 clients in flight: none fails, the front exits 0, and the
child stops within ``module.shutdown_time_limit`` without being killed."""

from __future__ import annotations

import anyio
import pytest

from tests.hardening import graceful
from tests.hardening.report import measure_twice

pytestmark = pytest.mark.integration


@pytest.mark.parametrize("backend", ["asyncio", "trio"])
def test_sigterm_under_load_drains_every_request_in_flight(backend: str) -> None:
    def measure() -> graceful.Figures:
        with graceful.front_for(backend) as front:
            return anyio.run(graceful.run, front, graceful.QUICK, backend=backend)

    figures = measure_twice(measure, lambda figures: figures.problems())
    assert figures.problems() == [], figures.lines()
    assert figures.in_flight >= graceful.QUICK.clients
