"""``server.max_request_body_size`` in both hosting models, on both backends (issue 17.4).

A body over the limit gets 413 with ``Connection: close`` whoever reads it: a hostkit handler,
a Starlette or a FastAPI route reading ``request.stream()`` or ``await request.body()``
(``tests/programs/body_limit_app.py``); a body exactly at the limit is read whole.

OutOfProcess the front answers the 413 itself: at once for a declared ``Content-Length`` over
the limit (the child never sees the request), and once a chunked body passes it (the child's
connection is dropped). Before the fix a ``Content-Length`` 10 MB over got 502 there: the
child's bounded drain closed the connection under the rest of the body. And a Starlette
raw-stream route got 500 in both models: Starlette answered the limit's error with its own
500 before the request stage could answer 413.
"""

from __future__ import annotations

import select
import socket
import time
from collections.abc import Iterator
from pathlib import Path

import httptools
import pytest

from hostkit.testing import Program, python, write_settings
from tests.support.fronts import child_log, child_program, front_settings
from tests.support.models import MODELS
from tests.support.paths import PROGRAMS
from tests.support.processes import LOOPBACK

pytestmark = pytest.mark.integration

APP = PROGRAMS / "body_limit_app.py"
LIMIT = 1_000_000
OVER = 10_000_000  # how far past the limit the big bodies go
TIMEOUT = 30
ROUTES = ("/context", "/starlette/stream", "/starlette/body", "/fastapi/stream",
          "/fastapi/body")
_PIECE = b"x" * 65536


class Answer:
    """The status, headers and body of one response, parsed by httptools."""

    def __init__(self) -> None:
        self.status = 0
        self.headers: dict[bytes, bytes] = {}
        self.body = b""
        self.complete = False
        self.parser = httptools.HttpResponseParser(self)

    def on_header(self, name: bytes, value: bytes) -> None:
        self.headers[name.lower()] = value

    def on_headers_complete(self) -> None:
        self.status = self.parser.get_status_code()

    def on_body(self, body: bytes) -> None:
        self.body += body

    def on_message_complete(self) -> None:
        self.complete = True


def upload(port: int, path: str, size: int, *, chunked: bool) -> Answer:
    """POST ``size`` bytes to ``path``, as a ``Content-Length`` or a chunked body, reading
    the answer while the body is sent, as curl does: a server may answer before it has read
    the body, and close; the client then stops sending and reads the answer. Returns it,
    once complete."""
    framing = b"transfer-encoding: chunked" if chunked else b"content-length: %d" % size
    out = bytearray(b"POST %s HTTP/1.1\r\nhost: test\r\n%s\r\n\r\n" % (path.encode(), framing))
    left = size
    answer = Answer()
    deadline = time.monotonic() + TIMEOUT
    with socket.create_connection((LOOPBACK, port), timeout=TIMEOUT) as sock:
        sock.setblocking(False)
        sending = True
        while not answer.complete and time.monotonic() < deadline:
            if sending and len(out) < len(_PIECE) and left:
                piece = _PIECE[:left]
                left -= len(piece)
                out += b"%x\r\n%s\r\n" % (len(piece), piece) if chunked else piece
                if chunked and not left:
                    out += b"0\r\n\r\n"
            sending = sending and bool(out) and not answer.status
            readable, writable, _ = select.select([sock], [sock] if sending else [], [], 1)
            if writable:
                try:
                    del out[:sock.send(out)]
                except OSError:
                    sending = False  # the server closed after its answer: read it
            if readable:
                try:
                    data = sock.recv(65536)
                except OSError:
                    break
                if not data:
                    break
                answer.parser.feed_data(data)
    assert answer.complete, f"no complete answer to {path} (status {answer.status})"
    return answer


@pytest.fixture(scope="module", params=MODELS)
def served(request: pytest.FixtureRequest, anyio_backend: str,
           tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, Program, Path]]:
    """``body_limit_app.py`` in one model with a 1 MB limit: the model, the program, its
    content root."""
    model = request.param
    root = tmp_path_factory.mktemp(f"body-limit-{model}-{anyio_backend}")
    server = {"max_request_body_size": LIMIT}
    if model == "InProcess":
        write_settings(root, {"hosting_model": "InProcess", "shutdown_timeout": 5,
                              "server": server})
    else:
        write_settings(root, front_settings(server=server, module=child_program(APP)))
    with Program(python(str(APP), "--urls=http://127.0.0.1:0",
                        f"--async_backend={anyio_backend}"), cwd=root) as program:
        program.wait_started()
        yield model, program, root


def port_of(program: Program) -> int:
    url = next(line for line in program.lines if "Now listening on:" in line)
    return int(url.rpartition(":")[2].split()[0])


@pytest.mark.parametrize("path", ROUTES)
@pytest.mark.parametrize("chunked", [False, True], ids=["content-length", "chunked"])
def test_a_body_over_the_limit_gets_413(served: tuple[str, Program, Path], path: str,
                                              chunked: bool) -> None:
    model, program, _ = served
    answer = upload(port_of(program), path, LIMIT + OVER, chunked=chunked)
    assert (answer.status, answer.headers.get(b"connection")) == (413, b"close"), \
        (model, answer.status, answer.body[:200], program.tail())
    assert not [line for line in program.lines if "Traceback" in line], program.tail()


@pytest.mark.parametrize("path", ROUTES)
@pytest.mark.parametrize("chunked", [False, True], ids=["content-length", "chunked"])
def test_a_body_at_the_limit_is_read_whole(served: tuple[str, Program, Path], path: str,
                                                 chunked: bool) -> None:
    _, program, _ = served
    answer = upload(port_of(program), path, LIMIT, chunked=chunked)
    assert (answer.status, answer.body) == (200, str(LIMIT).encode()), program.tail()


def test_a_declared_length_over_the_limit_is_recorded(
        served: tuple[str, Program, Path]) -> None:
    """The 413 is in the access log of the process that owns the listener; OutOfProcess
    it is the front's own answer: the child never saw the request."""
    model, program, root = served
    answer = upload(port_of(program), "/context?declared", LIMIT + OVER, chunked=False)
    assert answer.status == 413
    program.wait_for_line('"POST /context?declared HTTP/1.1" 413')
    if model == "OutOfProcess":
        assert "app called for /context?declared" not in child_log(root)


def test_a_chunked_body_stops_at_the_limit_and_the_front_keeps_serving(
        served: tuple[str, Program, Path]) -> None:
    """After a chunked body over the limit, the next requests are served (the child's
    connection that carried the cut body is not reused for them)."""
    model, program, root = served
    port = port_of(program)
    assert upload(port, "/context", LIMIT + OVER, chunked=True).status == 413
    for _ in range(3):
        answer = upload(port, "/context", 10, chunked=False)
        assert (answer.status, answer.body) == (200, b"10")
    output = program.output + (child_log(root) if model == "OutOfProcess" else "")
    assert "Traceback" not in output and "ERROR" not in output, output[-3000:]
