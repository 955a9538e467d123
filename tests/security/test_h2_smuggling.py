"""Downgrade smuggling (``tests/hardening/h2_smuggling.py``): HTTP/2 vectors against a front
on asyncio and trio whose child records the bytes it gets; 0 divergences."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.hardening import h2_smuggling, smuggling

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module", params=["asyncio", "trio"])
def front(request: pytest.FixtureRequest) -> Iterator[smuggling.RecordingFront]:
    with smuggling.RecordingFront(request.param) as recording:
        yield recording


def test_the_corpus_covers_every_kind_of_vector() -> None:
    names = " ".join(v.name for v in h2_smuggling.vectors())
    for kind in ("CR LF", "content-length", "transfer-encoding", ":path with a space",
                 ":path without /", "host disagrees", "duplicated :path", "trailers"):
        assert kind in names


def test_the_http2_corpus_has_no_divergence(front: smuggling.RecordingFront) -> None:
    figures = h2_smuggling.Figures(front.backend, [h2_smuggling.check(front, vector)
                                                   for vector in h2_smuggling.vectors()])
    assert figures.problems() == []
    outcomes = figures.outcomes
    # Both kinds occur: the check is not vacuous.
    assert sum(o.accepted for o in outcomes) >= 13
    assert sum(o.refused for o in outcomes) >= 50


def test_a_request_in_a_body_stays_a_body(front: smuggling.RecordingFront) -> None:
    vector = next(v for v in h2_smuggling.vectors()
                  if v.name == "POST without length, a request in its body")
    outcome = h2_smuggling.check(front, vector)
    assert (outcome.divergences, outcome.forwarded) == ([], 1)


@pytest.mark.parametrize("name", ["content-length and no DATA", "content-length larger than "
                                  "the DATA", "host disagrees with :authority",
                                  "CR LF in a value"])
def test_refused_vectors_reach_the_child_not_at_all(front: smuggling.RecordingFront,
                                                    name: str) -> None:
    vector = next(v for v in h2_smuggling.vectors() if v.name == name)
    outcome = h2_smuggling.check(front, vector)
    assert outcome.divergences == [] and outcome.refused
    assert outcome.child_bytes == 0
