"""The TLS handshake is part of the wait for a connection's first request head (issue 19).

A connection has ``server.request_header_timeout`` from its accept to a whole request head,
TLS handshake included: a TLS connection that never sends its ClientHello, or that finishes
its handshake late and then sends nothing, is closed within that deadline from accept (the
slow-client suite's bound: + 1 s), in both models and on both backends, as a silent plain
connection is. Requests over TLS, and the keep-alive waits after them, go on as before.
"""

from __future__ import annotations

import contextlib
import ssl
import time
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import anyio
import h11
import pytest
import trustme
from anyio.abc import ByteStream
from anyio.streams.tls import TLSStream

from hostkit.testing import Program, python, status_now, write_settings
from hostkit.testing.client import request_on
from tests.support.paths import PROGRAMS

pytestmark = [pytest.mark.anyio, pytest.mark.integration]

#: ``server.request_header_timeout``: above 1 s, so that a handshake begun late but within it
#: (:data:`LATE_HANDSHAKE`) followed by a whole deadline would end past :data:`BOUND`.
HEAD_TIMEOUT = 1.5
LATE_HANDSHAKE = 1.1
#: A silent connection is closed this long after connect at the latest.
BOUND = HEAD_TIMEOUT + 1
TIMEOUT = 15


@dataclass
class Site:
    """An https listener of a program under test, and a client context that trusts it."""

    host: str
    port: int
    client_context: ssl.SSLContext


@pytest.fixture(scope="module", params=["InProcess", "OutOfProcess"])
def site(request: pytest.FixtureRequest, anyio_backend: str,
         authority: tuple[trustme.CA, Path],
         tmp_path_factory: pytest.TempPathFactory) -> Iterator[Site]:
    """The probe on https in one model, with the short head deadline, answering already (an
    OutOfProcess child started)."""
    model = request.param
    ca, pem = authority
    root = tmp_path_factory.mktemp(f"tls-deadline-{model}")
    write_settings(root, {"hosting_model": model, "urls": ["https://127.0.0.1:0"],
                          "shutdown_timeout": 5,
                          "tls": {"certificate": str(pem), "private_key": str(pem)},
                          "server": {"request_header_timeout": HEAD_TIMEOUT}})
    context = ssl.create_default_context()
    ca.configure_trust(context)
    with Program(python(str(PROGRAMS / "probe.py"), f"--async_backend={anyio_backend}"),
                 cwd=root) as program:
        (url,) = program.wait_started()
        assert status_now(url, "/features", TIMEOUT, tls=context) == 200  # the child is up
        host, _, port = url.removeprefix("https://").rpartition(":")
        yield Site(host, int(port), context)


async def _until_closed(stream: ByteStream, limit: float) -> None:
    """Read ``stream`` until the server closes it, or for ``limit`` seconds."""
    with anyio.move_on_after(limit), contextlib.suppress(
            anyio.EndOfStream, anyio.BrokenResourceError, OSError):
        while True:
            await stream.receive()


async def _silent(site: Site) -> float:
    """Seconds a connection that never sends a ClientHello stays open."""
    started = time.monotonic()
    async with await anyio.connect_tcp(site.host, site.port) as stream:
        await _until_closed(stream, BOUND + 2)
    return time.monotonic() - started


async def _silent_after_a_late_handshake(site: Site) -> float:
    """Seconds a connection stays open that begins its handshake :data:`LATE_HANDSHAKE` s
    after connect and sends nothing after it, from connect."""
    started = time.monotonic()
    async with await anyio.connect_tcp(site.host, site.port) as tcp:
        await anyio.sleep(LATE_HANDSHAKE)
        with anyio.fail_after(HEAD_TIMEOUT):
            stream = await TLSStream.wrap(tcp, hostname=site.host,
                                          ssl_context=site.client_context,
                                          standard_compatible=False)
        await _until_closed(stream, BOUND + 2)
    return time.monotonic() - started


async def _get_twice(site: Site, pause: float) -> tuple[int, int]:
    """Two GETs on one TLS connection, ``pause`` s after the handshake and ``pause`` s after
    the first answer; their statuses."""
    with anyio.fail_after(TIMEOUT):
        async with await anyio.connect_tcp(site.host, site.port, ssl_context=site.client_context,
                                           tls_standard_compatible=False) as stream:
            connection = h11.Connection(h11.CLIENT)
            await anyio.sleep(pause)
            first, _ = await request_on(stream, connection, "GET", "/features")
            await anyio.sleep(pause)
            second, _ = await request_on(stream, connection, "GET", "/features")
    return first, second


async def test_silent_tls_connections_close_within_the_head_deadline_from_accept(
        site: Site) -> None:
    times: dict[str, float] = {}

    async def measure(name: str, silent: Callable[[Site], Awaitable[float]]) -> None:
        times[name] = await silent(site)

    with anyio.fail_after(TIMEOUT):
        async with anyio.create_task_group() as task_group:
            task_group.start_soon(measure, "no ClientHello", _silent)
            task_group.start_soon(measure, "late handshake", _silent_after_a_late_handshake)
    assert all(0.8 * HEAD_TIMEOUT <= seconds <= BOUND for seconds in times.values()), times


async def test_tls_requests_are_answered_and_keep_alive_is_timed_from_the_answer(
        site: Site) -> None:
    # The second request comes later than the first head's deadline from accept, but within
    # the keep-alive wait from the first answer: the first deadline ended with the first head.
    pause = 0.6 * HEAD_TIMEOUT
    assert await _get_twice(site, pause) == (200, 200)
