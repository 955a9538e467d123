"""Requests straight to a child's port, with every wrong token: all refused, none logged.

The child is started by hand with the module's contract and a known token; CI sends a few
hundred requests per backend (``python -m tests.hardening --full`` sends 10,000).
"""

from __future__ import annotations

from collections.abc import Iterator

import anyio
import pytest

from tests.hardening import direct

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module", params=["asyncio", "trio"])
def child(request: pytest.FixtureRequest) -> Iterator[direct.HandStartedChild]:
    with direct.HandStartedChild(request.param) as started:
        yield started


def test_every_wrong_token_gets_400_and_never_reaches_the_app(
        child: direct.HandStartedChild) -> None:
    assert direct.QUICK >= 10 * len(direct.variants(child.token))  # each variant, often
    figures = anyio.run(direct.run, child, direct.QUICK, backend=child.backend)
    assert figures.problems() == []
    assert figures.failures == {}
    assert figures.statuses == {400: direct.QUICK}
    assert figures.nonempty_400s == 0
    assert figures.handler_calls == 0
    assert figures.output_lines > 0 and figures.token_lines == 0
