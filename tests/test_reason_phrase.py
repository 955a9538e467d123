"""The status line carries the standard reason phrase, in both models on both backends.

RFC 9112 lets a server send none (``HTTP/1.1 200 ``), but uvicorn, Kestrel, IIS and nginx send
the standard one and clients show it. A phrase the app's server chose is kept: OutOfProcess,
the child's non-empty phrase crosses the front (ASGI has no field for an app's own phrase, so
InProcess there is none to keep). Each status line is read as bytes from a raw socket.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

import anyio
import pytest

from hostkit.testing import Program, connect, python, raw_exchange, receive_until, write_settings
from tests.support.fronts import child_program, front_settings
from tests.support.http import build
from tests.support.paths import PROGRAMS

pytestmark = [pytest.mark.anyio, pytest.mark.integration]

TIMEOUT = 15


def start(root: Path, backend: str) -> Program:
    """The probe program in ``root`` (as its ``hostkit.toml`` says), on a free port."""
    program = Program(python(str(PROGRAMS / "probe.py"), "--urls=http://127.0.0.1:0",
                             f"--async_backend={backend}"), cwd=root)
    program.wait_started()
    return program


def status_line(answer: bytes) -> bytes:
    return answer.split(b"\r\n", 1)[0]


@pytest.fixture(scope="module", params=["InProcess", "OutOfProcess"])
def probe_url(request: pytest.FixtureRequest, anyio_backend: str,
              tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """The probe app's URL, InProcess or behind a front (whose child is the probe)."""
    root = tmp_path_factory.mktemp("probe")
    if request.param == "InProcess":
        write_settings(root, {"hosting_model": "InProcess", "shutdown_timeout": 5})
    else:
        write_settings(root, front_settings(module=child_program(PROGRAMS / "probe.py")))
    with start(root, anyio_backend) as program:
        yield program.urls[0]


@pytest.mark.parametrize("raw, line", [
    (build("GET", "/features"), b"HTTP/1.1 200 OK"),
    (build("GET", "/nowhere"), b"HTTP/1.1 404 Not Found"),
    (build("GET", "/headers?201"), b"HTTP/1.1 201 Created"),
    (build("GET", "/boom"), b"HTTP/1.1 500 Internal Server Error"),
    (build("GET", "/headers?599"), b"HTTP/1.1 599 "),  # no standard phrase: none
    (b"GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n", b"HTTP/1.1 400 Bad Request"),
    (build("POST", "/echo", [("Expect", "100-continue"), ("Content-Length", "2")]),
     b"HTTP/1.1 100 Continue"),
])
async def test_the_status_line_has_the_standard_phrase(probe_url: str, raw: bytes,
                                                       line: bytes) -> None:
    assert status_line(await raw_exchange(probe_url, raw, TIMEOUT)) == line


async def test_each_response_of_a_connection_has_it(probe_url: str) -> None:
    """Two requests sent at once on one connection (the second closes it): both answers."""
    raw = build("GET", "/nowhere") + build("GET", "/headers?201", [("Connection", "close")])
    with anyio.fail_after(TIMEOUT):
        stream = await connect(probe_url)
        try:
            await stream.send(raw)
            answers = await receive_until(stream, b"never in an answer")
        finally:
            await stream.aclose()
    assert re.findall(rb"HTTP/1\.1 [^\r]*", answers) == [b"HTTP/1.1 404 Not Found",
                                                          b"HTTP/1.1 201 Created"]


# -- OutOfProcess: the child's own phrase, and the front's own answers ----------------------


@pytest.fixture(scope="module")
def front_of_a_raw_child(anyio_backend: str,
                         tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A front whose child writes the status line each request's path asks for
    (``tests/programs/status_line_child.py``)."""
    root = tmp_path_factory.mktemp("raw-child")
    write_settings(root, front_settings(
        module=child_program(PROGRAMS / "status_line_child.py")))
    with start(root, anyio_backend) as front:
        yield front.urls[0]


@pytest.mark.parametrize("path, line", [
    ("/201/", b"HTTP/1.1 201 Created"),  # none from the child: the standard one
    ("/200/OK", b"HTTP/1.1 200 OK"),
    ("/200/All%20good", b"HTTP/1.1 200 All good"),  # the child's own: kept
    ("/404/Nobody%20here", b"HTTP/1.1 404 Nobody here"),
    ("/599/", b"HTTP/1.1 599 "),  # none, and no standard one
])
async def test_the_front_keeps_a_childs_phrase_and_fills_a_missing_one(
        front_of_a_raw_child: str, path: str, line: bytes) -> None:
    answer = await raw_exchange(front_of_a_raw_child, build("GET", path), TIMEOUT)
    assert status_line(answer) == line


async def test_the_fronts_own_answers_have_their_phrases(anyio_backend: str,
                                                         tmp_path: Path) -> None:
    """A malformed request (400), a child that cannot start (502), twice, which is over the
    rapid-fail budget of one a minute (503)."""
    write_settings(tmp_path, front_settings(module={
        **child_program(PROGRAMS / "crash_on_start.py"), "rapid_fails_per_minute": 1}))
    with start(tmp_path, anyio_backend) as front:
        (url,) = front.urls
        answer = await raw_exchange(url, b"GET /\x00 HTTP/1.1\r\nHost: a\r\n\r\n", TIMEOUT)
        assert status_line(answer) == b"HTTP/1.1 400 Bad Request"
        lines = [status_line(await raw_exchange(url, build("GET", "/"), TIMEOUT))
                 for _ in range(3)]
        assert lines == [b"HTTP/1.1 502 Bad Gateway"] * 2 + [b"HTTP/1.1 503 Service Unavailable"]
