"""Shared fixtures: every async test runs on asyncio and trio."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
import trustme

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


@pytest.fixture(scope="module")
def authority(tmp_path_factory: pytest.TempPathFactory) -> tuple[trustme.CA, Path]:
    """A CA and a PEM file of the key and certificate it issued for 127.0.0.1 (for the
    https listeners of the TLS tests)."""
    authority = trustme.CA()
    pem = tmp_path_factory.mktemp("tls") / "server.pem"
    authority.issue_cert("127.0.0.1").private_key_and_cert_chain_pem.write_to_path(str(pem))
    return authority, pem
