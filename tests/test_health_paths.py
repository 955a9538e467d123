"""The health paths (``[health] liveness_path``, ``readiness_path``) and ``shutdown_delay``,
end to end with real programs: answered by hostkit before authentication and the app;
readiness 503 while the app starts, fails to start, or the host drains; the supervisor's own
answers while no worker is up."""

from __future__ import annotations

import base64
import re
import signal
import time
from collections.abc import Iterator
from pathlib import Path

import anyio
import pytest

from hostkit.authentication.passwords import hash_password
from hostkit.authentication.users_file import set_user
from hostkit.testing import Program, python, write_settings
from tests.support.http import HttpConnection, Response, build, request_once
from tests.support.paths import PROGRAMS
from tests.support.supervisors import RAPID_FAIL, supervised_settings
from tests.support.supervisors import start as start_supervised

pytestmark = pytest.mark.anyio

PROBE = PROGRAMS / "probe.py"
TIMEOUT = 10.0
HEALTH = {"liveness_path": "/healthz", "readiness_path": "/readyz"}
_LISTENING = re.compile(r"Now listening on: http://127\.0\.0\.1:(\d+)")


def start(root: Path, backend: str, program: Path = PROBE, *, wait: bool = True) -> Program:
    started = Program(python(str(program), "--urls=http://127.0.0.1:0",
                             f"--async_backend={backend}"), cwd=root)
    if wait:
        started.wait_started(TIMEOUT + 10)
    return started


def port_of(program: Program) -> int:
    """The port ``program`` listens on, from its "Now listening on:" line (written as soon as
    it listens, before its app has started)."""
    listening = _LISTENING.search(program.wait_for_line("Now listening on:", TIMEOUT))
    assert listening is not None, program.output
    return int(listening[1])


async def get(port: int, path: str, *headers: tuple[str, str]) -> Response:
    return await request_once(port, build("GET", path, [("Connection", "close"), *headers]),
                              TIMEOUT)


def assert_not_ready(response: Response, reason: str) -> None:
    assert response.status == 503, response
    assert bytes(response.body) == f"not ready: {reason}\n".encode()
    assert response.header(b"retry-after") == b"1"
    assert response.header(b"x-request-id")


# -- before authentication and the app --------------------------------------------------------

WRONG = ("Authorization", "Basic " + base64.b64encode(b"alice:wrong").decode())


@pytest.fixture(scope="module")
def guarded(anyio_backend: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[int]:
    """The probe behind basic authentication, with health paths; its port."""
    root = tmp_path_factory.mktemp("guarded")
    set_user(root / "users.txt", "alice", hash_password("wonderland", 1000))
    write_settings(root, {"health": HEALTH, "authentication": {"schemes": ["basic"]}})
    with start(root, anyio_backend) as program:
        yield port_of(program)


async def test_health_paths_are_answered_before_authentication_and_the_app(guarded: int) -> None:
    refused = await get(guarded, "/features", WRONG)
    assert refused.status == 401  # what the wrong credentials get anywhere else
    live = await get(guarded, "/healthz", WRONG)
    assert (live.status, bytes(live.body)) == (200, b"ok\n")
    ready = await get(guarded, "/readyz?probe=1", WRONG)  # the path alone is compared
    assert (ready.status, bytes(ready.body)) == (200, b"ready\n")
    assert ready.header(b"content-type") == b"text/plain; charset=utf-8"
    # the probe would have answered 404 "not found": the app never saw them
    missing = await get(guarded, "/healthz/more")
    assert missing.status == 404


async def test_a_health_path_answers_head_without_a_body(guarded: int) -> None:
    async with HttpConnection(guarded) as connection:
        response = await connection.request(build("HEAD", "/healthz"), TIMEOUT, head=True)
        assert (response.status, bytes(response.body)) == (200, b"")
        assert response.header(b"content-length") == b"3"
        again = await connection.request(build("GET", "/healthz"), TIMEOUT)  # same connection
        assert bytes(again.body) == b"ok\n"


# -- readiness: starting, start_failed, draining ----------------------------------------------

async def test_readiness_is_503_while_the_app_starts_and_requests_wait_for_it(
        anyio_backend: str, tmp_path: Path) -> None:
    write_settings(tmp_path, {"health": HEALTH})
    with start(tmp_path, anyio_backend, PROGRAMS / "slow_start.py", wait=False) as program:
        port = port_of(program)  # it listens before its app has started
        program.wait_for_line("slow start: waiting for SIGUSR1", TIMEOUT)
        assert_not_ready(await get(port, "/readyz"), "starting")
        live = await get(port, "/healthz")
        assert (live.status, bytes(live.body)) == (200, b"ok\n")
        answers: list[Response] = []

        async def early() -> None:
            answers.append(await get(port, "/early"))

        async with anyio.create_task_group() as task_group:
            task_group.start_soon(early)
            await anyio.sleep(0.3)
            assert answers == []  # it waits for the app, no error
            program.signal(signal.SIGUSR1)
        assert (answers[0].status, bytes(answers[0].body)) == (200, b"started")
        program.wait_started(TIMEOUT)
        ready = await get(port, "/readyz")
        assert (ready.status, bytes(ready.body)) == (200, b"ready\n")


async def test_readiness_is_503_while_the_start_failure_page_is_served(
        anyio_backend: str, tmp_path: Path) -> None:
    write_settings(tmp_path, {"health": HEALTH})
    with start(tmp_path, anyio_backend, PROGRAMS / "failing_start.py") as program:
        port = port_of(program)
        page = await get(port, "/")
        assert page.status == 500 and b"500.30" in page.body
        assert_not_ready(await get(port, "/readyz"), "start_failed")
        assert (await get(port, "/healthz")).status == 200  # the process still serves


async def test_after_sigterm_readiness_is_503_and_requests_are_served_for_shutdown_delay(
        anyio_backend: str, tmp_path: Path) -> None:
    delay = 1.5
    write_settings(tmp_path, {"health": HEALTH, "shutdown_delay": delay})
    with start(tmp_path, anyio_backend) as program:
        port = port_of(program)
        async with HttpConnection(port) as kept:  # a keep-alive connection open before
            assert (await kept.request(build("GET", "/features"), TIMEOUT)).status == 200
            signalled = time.monotonic()
            program.signal(signal.SIGTERM)
            program.wait_for_line("(shutdown_delay) before the drain", TIMEOUT)
            assert_not_ready(await get(port, "/readyz"), "draining")
            served = await get(port, "/features")  # a new connection: still accepted
            assert served.status == 200
            last = await kept.request(build("GET", "/features"), TIMEOUT)
            assert last.status == 200
            assert last.header(b"connection") == b"close"  # go elsewhere for the next one
        assert program.wait_exit(TIMEOUT) == 0
        assert time.monotonic() - signalled >= delay
        lines = program.output
        assert lines.index("still serving for") < lines.index("Application stopped.")


async def test_a_second_signal_skips_the_rest_of_shutdown_delay(anyio_backend: str,
                                                                 tmp_path: Path) -> None:
    write_settings(tmp_path, {"shutdown_delay": 120})
    with start(tmp_path, anyio_backend) as program:
        program.signal(signal.SIGINT)
        program.wait_for_line("(again to skip shutdown_delay)", TIMEOUT)
        program.wait_for_line("before the drain", TIMEOUT)
        program.signal(signal.SIGINT)
        assert program.wait_exit(TIMEOUT) == 0
        assert "without the rest of shutdown_delay" in program.output


# -- the supervisor, while no worker is up ----------------------------------------------------

async def test_the_supervisor_answers_the_health_paths_while_no_worker_is_up(
        anyio_backend: str, tmp_path: Path) -> None:
    supervised_settings(tmp_path, {"supervise": True, "rapid_fails_per_minute": 0},
                        worker_start={"mode": "exit"}, health=HEALTH)
    with start_supervised(tmp_path, anyio_backend) as program:
        program.wait_for_line(RAPID_FAIL, TIMEOUT)
        port = int(program.urls[0].rpartition(":")[2])
        assert_not_ready(await get(port, "/readyz"), "rapid-failed")
        live = await get(port, "/healthz")
        assert (live.status, bytes(live.body)) == (200, b"ok\n")
        assert live.header(b"x-request-id")
        other = await get(port, "/features")
        assert other.status == 503 and other.header(b"x-request-id")
