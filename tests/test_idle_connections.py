"""An InProcess server's idle keep-alive connections, on asyncio and trio, over real sockets.

A connection waiting for its next request head is closed ``keep_alive_timeout`` after its
last response ended (each request's answer starts that wait anew), and at once, whatever
that timeout, when the server stops: an idle connection owes nobody an answer, so the
server does not wait for it (SIGTERM: idle keep-alive connections close, the others after
their current response). A connection whose client has ended its side closes as soon as its
last response is written, not after the keep-alive timeout with its socket in CLOSE_WAIT.
"""

from __future__ import annotations

import signal
import time
from collections.abc import Iterator
from pathlib import Path

import anyio
import h11
import pytest
from anyio.abc import ByteStream

from hostkit.testing import Program, connect
from hostkit.testing.client import request_on
from tests.support.models import serve_in
from tests.support.paths import PROGRAMS

pytestmark = [pytest.mark.anyio, pytest.mark.integration]

KEEP_ALIVE = 0.6
TIMEOUT = 10


def _serve(root: Path, backend: str, keep_alive_timeout: float) -> Program:
    return serve_in("InProcess", PROGRAMS / "probe.py", backend, root,
                    server={"keep_alive_timeout": keep_alive_timeout})


@pytest.fixture
def short_keep_alive(anyio_backend: str, tmp_path: Path) -> Iterator[Program]:
    with _serve(tmp_path, anyio_backend, KEEP_ALIVE) as server:
        yield server


async def _closed_after(stream: ByteStream) -> float:
    """Seconds until the server closes ``stream`` (which has nothing more to read)."""
    started = time.monotonic()
    try:
        data = await stream.receive()
    except (anyio.EndOfStream, anyio.BrokenResourceError):
        return time.monotonic() - started
    raise AssertionError(f"the server sent {data!r} on an idle connection")


async def test_an_idle_connection_closes_after_the_keep_alive_timeout_from_its_last_answer(
        short_keep_alive: Program) -> None:
    with anyio.fail_after(TIMEOUT):
        stream = await connect(short_keep_alive.urls[0])
        async with stream:
            client = h11.Connection(h11.CLIENT)
            statuses = []
            first = time.monotonic()
            for _ in range(3):  # each within the timeout of the last answer, all past the first
                statuses.append((await request_on(stream, client, "GET", "/features"))[0])
                await anyio.sleep(0.5 * KEEP_ALIVE)
            assert statuses == [200, 200, 200]
            assert time.monotonic() - first > KEEP_ALIVE
            waited = 0.5 * KEEP_ALIVE + await _closed_after(stream)
    assert 0.8 * KEEP_ALIVE <= waited <= KEEP_ALIVE + 1.5, waited


async def test_a_connection_that_sends_nothing_closes_after_the_keep_alive_timeout(
        short_keep_alive: Program) -> None:
    with anyio.fail_after(TIMEOUT):
        stream = await connect(short_keep_alive.urls[0])
        async with stream:
            waited = await _closed_after(stream)
    assert 0.8 * KEEP_ALIVE <= waited <= KEEP_ALIVE + 1.5, waited


async def test_stopping_closes_idle_connections_at_once(anyio_backend: str,
                                                        tmp_path: Path) -> None:
    with _serve(tmp_path, anyio_backend, keep_alive_timeout=60) as server:
        with anyio.fail_after(TIMEOUT):
            answered = await connect(server.urls[0])
            silent = await connect(server.urls[0])
            async with answered, silent:
                client = h11.Connection(h11.CLIENT)
                assert (await request_on(answered, client, "GET", "/features"))[0] == 200
                server.signal(signal.SIGTERM)
                # The server's last-request grace (1 s) comes first, then the idle close.
                assert await _closed_after(answered) <= 3
                assert await _closed_after(silent) <= 3
        assert server.wait_exit(TIMEOUT) == 0


async def test_a_connection_its_client_ended_closes_at_once(anyio_backend: str,
                                                            tmp_path: Path) -> None:
    with _serve(tmp_path, anyio_backend, keep_alive_timeout=60) as server:
        with anyio.fail_after(TIMEOUT):
            stream = await connect(server.urls[0])
            async with stream:
                client = h11.Connection(h11.CLIENT)
                assert (await request_on(stream, client, "GET", "/features"))[0] == 200
                await stream.send_eof()
                assert await _closed_after(stream) <= 2
