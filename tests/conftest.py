"""Shared fixtures: every async test runs on asyncio and trio."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from hostkit.testing import RUNNING


@pytest.fixture(autouse=True, scope="module")
def stop_programs() -> Iterator[None]:
    """Whatever a test module started, it stops: no program outlives its tests.

    Module-scoped so module-scoped servers live as long as the tests that share them; a test
    that starts its own program stops it itself (``with Program(...) as program:``), and this
    is the safety net for a program started outside such a block.
    """
    yield
    for program in list(RUNNING):
        program.stop()


@pytest.fixture(params=["asyncio", "trio"], scope="module")
def anyio_backend(request: pytest.FixtureRequest) -> str:
    return request.param  # type: ignore[no-any-return]
