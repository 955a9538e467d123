"""The spoof matrix: reserved and forwarding headers in every spelling, through a real front.

Every name in ``tests.hardening.spoof.RESERVED`` × every variant (case, ``_`` for ``-``,
duplicated, named in ``Connection``, as a trailer, …) with a unique marker value. None may be
accepted: the child (its exact bytes, and a hostkit app behind the integration layer) sees
only the module's own values. With ``[forwarded_headers]`` believing proxies that are not the
client, none is accepted either, in both models; from a known proxy (the controls) forwarded
values are.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.hardening import spoof
from tests.hardening.fronts import Front
from tests.hardening.smuggling import RecordingFront

pytestmark = pytest.mark.integration

CASES = list(spoof.cases())


@pytest.fixture(scope="module", params=["asyncio", "trio"])
def backend(request: pytest.FixtureRequest) -> str:
    return request.param  # type: ignore[no-any-return]


@pytest.fixture(scope="module")
def recording(backend: str) -> Iterator[RecordingFront]:
    with RecordingFront(backend) as front:
        yield front


@pytest.fixture(scope="module")
def app_front(backend: str) -> Iterator[Front]:
    with Front(backend) as front:
        yield front


def test_the_matrix_covers_every_name_and_variant() -> None:
    assert len(CASES) == len(spoof.RESERVED) * len(spoof.VARIANTS)
    names = {name.lower() for name in spoof.RESERVED}
    assert {b"hostkit-token", b"hostkit-identity", b"hostkit-client-cert", b"x-forwarded-for",
            b"x-forwarded-proto", b"x-forwarded-host", b"x-forwarded-port",
            b"x-forwarded-prefix", b"forwarded", b"x-real-ip"} <= names


def test_the_child_receives_only_the_modules_values(recording: RecordingFront) -> None:
    figures = spoof.run_recorded(recording)
    assert figures.problems() == []
    assert all(r.status == 200 for r in figures.results)  # stripped, not refused: checked


def test_the_app_sees_only_the_modules_values(app_front: Front) -> None:
    figures = spoof.run_app(app_front.backend, app_front.url)
    assert figures.problems() == []
    assert all(r.status == 200 for r in figures.results)


#: The model and backend of each server with [forwarded_headers]: one backend per model here
#: (the rules are the same on both); the full run has all four (``spoof.run_forwarding``).
FORWARDING_SERVERS = [("InProcess", "asyncio"), ("OutOfProcess", "trio")]


@pytest.fixture(scope="module", params=FORWARDING_SERVERS, ids="-".join)
def forwarding(request: pytest.FixtureRequest) -> Iterator[tuple[str, str, str]]:
    """``(model, backend, url)``: a server with
    :data:`tests.hardening.spoof.FORWARDED_HEADERS`."""
    model, backend = request.param
    with spoof.serving(model, backend) as url:
        yield model, backend, url


def test_known_proxies_that_are_not_the_client_change_nothing(
        forwarding: tuple[str, str, str]) -> None:
    figures = spoof.run_app_forwarding(*forwarding)
    assert figures.problems() == []
    assert all(r.status == 200 for r in figures.results)


def test_a_known_proxys_forwarded_values_are_believed(
        forwarding: tuple[str, str, str]) -> None:
    assert spoof.run_controls(*forwarding).problems() == []
