"""Request smuggling: the hand-written corpus and generated mutations against both models.

OutOfProcess, the front runs on asyncio and on trio with a recording child
(``tests.hardening``): for every vector, what the child received is read with h11 and llhttp
and compared with what the module parsed. InProcess, hostkit serves a recording app on asyncio
and on trio, and what the app received is compared with the client's bytes read by h11 and by
llhttp (see ``tests/hardening/smuggling.py`` for the definition of a divergence). The full run
(``python -m tests.hardening --full``) sends more generated vectors.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator

import anyio
import pytest

from tests.hardening import corpus, smuggling
from tests.hardening.corpus import SMUGGLED, Vector, head
from tests.hardening.wire import read_h11
from tests.support.http import HttpConnection, Response

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module", params=["asyncio", "trio"])
def front(request: pytest.FixtureRequest) -> Iterator[smuggling.RecordingFront]:
    with smuggling.RecordingFront(request.param) as recording:
        yield recording


@pytest.fixture(scope="module", params=["asyncio", "trio"])
def in_process(request: pytest.FixtureRequest) -> Iterator[smuggling.RecordingServer]:
    with smuggling.RecordingServer(request.param) as recording:
        yield recording


def test_the_corpus_has_at_least_300_hand_written_vectors() -> None:
    vectors = corpus.vectors()
    assert len(vectors) >= 300
    assert len({v.name for v in vectors}) == len(vectors)


def _corpus_has_no_divergence(recording: smuggling.Recording) -> None:
    figures = smuggling.run_corpus(recording, corpus.vectors())
    assert figures.problems() == []
    outcomes = figures.outcomes
    # Both kinds occur: the check is not vacuous.
    assert sum(o.accepted for o in outcomes) > 100
    assert sum(o.refused for o in outcomes) > 100


def test_hand_written_corpus_has_no_divergence(front: smuggling.RecordingFront) -> None:
    _corpus_has_no_divergence(front)


def test_hand_written_corpus_has_no_divergence_in_process(
        in_process: smuggling.RecordingServer) -> None:
    _corpus_has_no_divergence(in_process)


def _mutations_have_no_divergence(recording: smuggling.Recording) -> None:
    figures = smuggling.run_mutations(recording, smuggling.QUICK_MUTATIONS)
    assert figures.problems() == []
    assert len(figures.outcomes) >= smuggling.QUICK_MUTATIONS


def test_generated_mutations_have_no_divergence(front: smuggling.RecordingFront) -> None:
    _mutations_have_no_divergence(front)


def test_generated_mutations_have_no_divergence_in_process(
        in_process: smuggling.RecordingServer) -> None:
    _mutations_have_no_divergence(in_process)


def _only_request(outcome: smuggling.Outcome) -> smuggling.Message:
    (message,) = read_h11(outcome.child_data).messages
    return message


def _header(outcome: smuggling.Outcome, name: bytes) -> list[bytes]:
    return [v for n, v in _only_request(outcome).headers if n.lower() == name]


_BIG_BODY = b"x" * 20000
# Each case is a fix: the vector, the statuses the client gets, the requests the child
# completes, and what else must hold.
REGRESSIONS: list[tuple[str, bytes, list[int], int, Callable[[smuggling.Outcome], bool]]] = [
    ("a pipelined request is judged by its own head, not by the bytes after it",
     b"GET /echo HTTP/1.1\r\nHost: a\r\n\r\n" + head(b"Transfer-Encoding: chunked")
     + b"0\r\n\r\n" + head(b"Content-Length: 5") + b"hello",
     [200, 200, 200], 3, lambda o: True),
    ("repeated Content-Length is refused after a body longer than a head",
     head(b"Content-Length: 20000") + _BIG_BODY
     + head(b"Content-Length: 5", b"Content-Length: 5") + b"hello",
     [200, 400], 1, lambda o: True),
    ("a body that begins malformed never reaches the child",
     head(b"Transfer-Encoding: chunked") + b"5\r\nhelloXX0\r\n\r\n",
     [400], 0, lambda o: o.child_bytes == 0),
    ("an absolute-form target is forwarded in origin-form with its authority as Host",
     b"GET http://evil:8080/echo?q=1 HTTP/1.1\r\nHost: a\r\n\r\n", [200], 1,
     lambda o: _only_request(o).target == b"/echo?q=1" and _header(o, b"host") == [b"evil:8080"]),
    ("userinfo in an absolute-form target is refused",
     b"GET http://u@evil/echo HTTP/1.1\r\nHost: a\r\n\r\n", [400], 0, lambda o: o.child_bytes == 0),
    ("a target that is neither origin- nor absolute-form is refused",
     b"GET evil:80 HTTP/1.1\r\nHost: a\r\n\r\n", [400], 0, lambda o: o.child_bytes == 0),
    ("CONNECT is refused", b"CONNECT evil:443 HTTP/1.1\r\nHost: evil:443\r\n\r\n", [501], 0,
     lambda o: o.child_bytes == 0),
    ("an HTTP/2.0 request line on an HTTP/1.1 connection is refused",
     b"GET /echo HTTP/2.0\r\nHost: a\r\n\r\n", [505], 0, lambda o: o.child_bytes == 0),
    ("a control character in a header value is refused",
     b"GET /echo HTTP/1.1\r\nHost: a\r\nX: a\x01b\r\n\r\n", [400], 0, lambda o: o.child_bytes == 0),
    ("obs-fold is refused", b"GET /echo HTTP/1.1\r\nHost: a\r\n Transfer-Encoding: chunked\r\n\r\n",
     [400], 0, lambda o: o.child_bytes == 0),
    ("HTTP/1.0 without Host reaches the child with an empty Host",
     b"GET /echo HTTP/1.0\r\n\r\n", [200], 1, lambda o: _header(o, b"host") == [b""]),
    ("Connection cannot remove Host", b"GET /echo HTTP/1.1\r\nHost: a\r\nConnection: Host\r\n\r\n",
     [200], 1, lambda o: _header(o, b"host") == [b"a"]),
    ("a head over 16 KB is refused even when it arrives at once",
     b"GET /" + b"a" * 20000 + b" HTTP/1.1\r\nHost: a\r\n\r\n", [431], 0,
     lambda o: o.child_bytes == 0),
    ("Content-Length reaches the child without leading zeros",
     head(b"Content-Length: 005") + b"hello", [200], 1,
     lambda o: _header(o, b"content-length") == [b"5"]),
    ("a body that is all here is forwarded with Content-Length",
     head(b"Transfer-Encoding: chunked") + b"5\r\nhello\r\n0\r\n\r\n", [200], 1,
     lambda o: _header(o, b"content-length") == [b"5"]),
    ("a refused WebSocket handshake's child connection carries nothing more",
     b"GET /echo HTTP/1.1\r\nHost: a\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n"
     b"Sec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n"
     + SMUGGLED, [200, 200], 2, lambda o: True),
]


@pytest.mark.parametrize("name, data, statuses, forwarded, holds", REGRESSIONS,
                         ids=[case[0] for case in REGRESSIONS])
def test_fixed_cases(front: smuggling.RecordingFront, name: str, data: bytes,
                     statuses: list[int], forwarded: int,
                     holds: Callable[[smuggling.Outcome], bool]) -> None:
    outcome = front.check(Vector("regression", name, data))
    assert outcome.divergences == []
    assert (outcome.statuses, outcome.forwarded) == (statuses, forwarded)
    assert holds(outcome), outcome.child_data[:300]


def test_requests_sent_one_after_another_on_a_kept_alive_connection(
        front: smuggling.RecordingFront) -> None:
    """Each head is read whole, also when it arrives while the front was already reading (on
    trio, a read begun during the previous exchange): no request is mistaken for a cut-off
    head."""
    requests = [b"GET /a HTTP/1.1\r\nHost: a\r\n\r\n",
                head(b"Transfer-Encoding: chunked") + b"3\r\nabc\r\n0\r\n\r\n",
                b"GET /b HTTP/1.1\r\nHost: a\r\n\r\n"]

    async def one_after_another() -> list[Response]:
        async with HttpConnection(front.port) as connection:
            return [await connection.request(data, 5) for data in requests]

    answers = anyio.run(one_after_another, backend=front.backend)
    for answer in answers:
        assert (answer.version, answer.status, answer.complete) == ("1.1", 200, True), answer
        assert answer.body.endswith(b"}"), answer


# Each case: the vector, the statuses the client gets, the requests the app completes InProcess.
IN_PROCESS_REGRESSIONS: list[tuple[str, bytes, list[int], int]] = [
    ("CL with TE is refused and the connection closed",
     head(b"Content-Length: 5", b"Transfer-Encoding: chunked") + b"0\r\n\r\n" + SMUGGLED,
     [400], 0),
    ("a repeated Content-Length is refused", head(b"Content-Length: 5", b"Content-Length: 5")
     + b"hello", [400], 0),
    ("obs-fold is refused", b"GET /echo HTTP/1.1\r\nHost: a\r\nX: a\r\n b\r\n\r\n", [400], 0),
    ("a Host with a space is refused", b"GET /echo HTTP/1.1\r\nHost: a b\r\n\r\n", [400], 0),
    ("a fragment is refused", b"GET /echo#x HTTP/1.1\r\nHost: a\r\n\r\n", [400], 0),
    ("TE on HTTP/1.0 is refused", b"POST /echo HTTP/1.0\r\nHost: a\r\n"
     b"Transfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n", [400], 0),
    ("an overflowing chunk size is refused at once",
     head(b"Transfer-Encoding: chunked") + b"10000000000000005\r\nhello\r\n", [400], 0),
    ("a lower-case method is refused, not upper-cased",
     b"get /echo HTTP/1.1\r\nHost: a\r\n\r\n", [400], 0),
    ("the request before a close is answered, what follows it ignored",
     b"GET /echo HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n" + SMUGGLED, [200], 1),
    ("an absolute-form target reaches the app in origin-form with its authority as Host",
     b"GET http://evil:8080/echo?q=1 HTTP/1.1\r\nHost: a\r\n\r\n", [200], 1),
]


@pytest.mark.parametrize("name, data, statuses, received", IN_PROCESS_REGRESSIONS,
                         ids=[case[0] for case in IN_PROCESS_REGRESSIONS])
def test_fixed_cases_in_process(in_process: smuggling.RecordingServer, name: str, data: bytes,
                                statuses: list[int], received: int) -> None:
    outcome = in_process.check(Vector("regression", name, data))
    assert outcome.divergences == []
    assert (outcome.statuses, outcome.forwarded) == (statuses, received)
