"""Reloads and recycles under load (issue 14): SIGHUP, a configuration change and
``max_requests`` recycling, each a rolling replacement, fail no request.

CI runs each scenario at its quick size on a cross-section of models and backends (each
model and each backend appears): ``python -m tests.hardening --only reload config-change
recycle`` runs every combination, and with ``--full`` at full size. A timing target missed
once is measured again (:func:`~tests.hardening.report.measure_twice`).

OutOfProcess, the latency targets are the issue's in ``python -m tests.hardening``; here they
are looser (:data:`OUT_OF_PROCESS_RATIO`, and for a configuration change: no request as slow
as a cold start), because on a runner with few cores the new child's start takes CPU from the
front (and the child it replaces) while it imports, and that alone approaches the issue's
ratio. A request that waited for the new child would take its whole start.
"""

from __future__ import annotations

import pytest

from tests.hardening import reload
from tests.hardening.report import measure_twice

pytestmark = pytest.mark.integration

OUT_OF_PROCESS_RATIO = 3.0


@pytest.mark.parametrize(("backend", "model"), [("asyncio", "InProcess"),
                                                ("trio", "OutOfProcess")])
def test_sighup_under_load_fails_no_request_and_keeps_p99(backend: str, model: str) -> None:
    ratio = reload.TARGET_RATIO if model == "InProcess" else OUT_OF_PROCESS_RATIO
    figures = measure_twice(
        lambda: reload.measure_sighups(backend, model, reload.RELOADS_QUICK),
        lambda figures: figures.problems(ratio))
    assert figures.problems(ratio) == [], figures.lines()
    assert len(figures.replacements) == reload.RELOADS_QUICK.reloads
    # Every replaced process's successor answered requests.
    assert len(figures.load.new_pids) >= sum(len(r.old) for r in figures.replacements)


def test_a_configuration_change_under_load_waits_for_no_cold_start() -> None:
    figures = measure_twice(lambda: reload.measure_changes("trio", reload.CHANGES_QUICK),
                            lambda figures: figures.problems(float("inf")))
    assert figures.problems(float("inf")) == [], figures.lines()
    assert len(figures.replacements) == reload.CHANGES_QUICK.reloads
    assert len(figures.load.new_pids) == reload.CHANGES_QUICK.reloads
    assert figures.cold_start is not None  # and no request as slow (a problem otherwise)


@pytest.mark.parametrize(("backend", "model"), [("trio", "InProcess"),
                                                ("asyncio", "OutOfProcess")])
def test_max_requests_recycles_under_load_fail_no_request(backend: str, model: str) -> None:
    figures = reload.measure_recycles(backend, model, reload.RECYCLES_QUICK)
    assert figures.problems() == [], figures.lines()
    assert len(figures.recycles) >= 2
    assert figures.load.new_pids
