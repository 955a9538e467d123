"""A client that half-closes after its request still gets the whole answer (issue 19, item 1).

``shutdown(SHUT_WR)`` after a complete request (``printf … | nc -N``, health checkers,
scripted clients) means "no more requests", not "gone": the server finishes the responses it
owes, then closes. Both hosting models, both backends, on real sockets. A client that really
leaves still fires the app's ``request_aborted``: tests/test_outofprocess.py and
tests/test_inprocess.py check that.
"""

from __future__ import annotations

from collections.abc import Iterator

import anyio
import h11
import pytest
from anyio.abc import SocketStream

from hostkit.testing import Program, connect
from tests.programs.interop_app import streamed_body
from tests.support.models import MODELS, serve_in
from tests.support.paths import PROGRAMS

pytestmark = [pytest.mark.anyio, pytest.mark.integration]

TIMEOUT = 10


@pytest.fixture(scope="module", params=MODELS)
def server(request: pytest.FixtureRequest, anyio_backend: str,
           tmp_path_factory: pytest.TempPathFactory) -> Iterator[Program]:
    """The interop app in each hosting model, on the test's backend."""
    root = tmp_path_factory.mktemp(f"half-close-{request.param}")
    with serve_in(request.param, PROGRAMS / "interop_app.py", anyio_backend, root) as program:
        yield program


async def _request(url: str, target: bytes) -> SocketStream:
    stream = await connect(url)
    await stream.send(b"GET " + target + b" HTTP/1.1\r\nHost: interop\r\n\r\n")
    return stream  # type: ignore[return-value]


async def _read_response(stream: SocketStream, parser: h11.Connection) -> tuple[int, bytes]:
    """The status and the whole body of one response, then the server's close; fails if the
    connection ends before the response does."""
    status, body = 0, b""
    while True:
        event = parser.next_event()
        if event is h11.NEED_DATA:
            try:
                parser.receive_data(await stream.receive())
            except anyio.EndOfStream:
                parser.receive_data(b"")
        elif isinstance(event, h11.Response):
            status = event.status_code
        elif isinstance(event, h11.Data):
            body += event.data
        elif isinstance(event, h11.EndOfMessage):
            break
        else:
            raise AssertionError(f"the connection ended before the response did: {body!r}")
    with pytest.raises(anyio.EndOfStream):  # then the server closes
        await stream.receive()
    return status, body


def _client_parser() -> h11.Connection:
    parser = h11.Connection(h11.CLIENT)
    parser.send(h11.Request(method="GET", target="/", headers=[("host", "interop")]))
    parser.send(h11.EndOfMessage())
    return parser


async def test_a_request_then_a_half_close_gets_its_answer(server: Program) -> None:
    with anyio.fail_after(TIMEOUT):
        async with await _request(server.urls[0], b"/headers") as stream:
            await stream.send_eof()
            status, body = await _read_response(stream, _client_parser())
    assert status == 200 and body.startswith(b"[")


async def test_a_half_close_right_after_the_request_gets_the_whole_stream(
        server: Program) -> None:
    with anyio.fail_after(TIMEOUT):
        async with await _request(server.urls[0], b"/stream") as stream:
            await stream.send_eof()
            status, body = await _read_response(stream, _client_parser())
    assert (status, body) == (200, streamed_body())


async def test_a_half_close_while_the_answer_streams_gets_all_of_it(server: Program) -> None:
    """The half-close arrives once the head (and the first chunk) has."""
    parser = _client_parser()
    with anyio.fail_after(TIMEOUT):
        async with await _request(server.urls[0], b"/stream") as stream:
            first = await stream.receive()
            assert first.startswith(b"HTTP/1.1 200")
            await stream.send_eof()
            parser.receive_data(first)
            status, body = await _read_response(stream, parser)
    assert (status, body) == (200, streamed_body())
