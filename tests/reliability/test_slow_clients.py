"""Slow clients: heads and bodies trickled one byte at a time, and TLS connections that never
send a ClientHello, while normal clients run.

CI shortens ``server.request_header_timeout`` through the configuration (1 s) and sends
80 slow connections and 50 silent TLS ones; the full run sends 500 heads + 100 bodies at
1 byte / 5 s and 500 silent TLS connections. Every slow connection is closed within the
timeout + 1 s (a trickled one with 408), and the normal clients' p99 stays
within 2x the baseline (in CI against a noise floor of 25 ms: a shared runner's p99 of a few
ms moves that much by itself).
"""

from __future__ import annotations

from collections.abc import Iterator

import anyio
import pytest

from tests.hardening import slow_clients
from tests.hardening.fronts import Front
from tests.hardening.report import measure_twice
from tests.support.http import HttpConnection

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module", params=["asyncio", "trio"])
def front(request: pytest.FixtureRequest) -> Iterator[Front]:
    with slow_clients.front_for(request.param, slow_clients.QUICK.header_timeout) as started:
        yield started


def test_slow_connections_are_closed_in_time_and_normal_clients_go_on(front: Front) -> None:
    quick = slow_clients.QUICK
    figures = measure_twice(
        lambda: anyio.run(slow_clients.run, front, quick, backend=front.backend),
        lambda figures: figures.problems(slow_clients.CI_NOISE_FLOOR_MS))
    errors = [line for line in front.lines if "error while serving" in line]
    assert figures.problems(slow_clients.CI_NOISE_FLOOR_MS) == [], figures.lines()
    assert (len(figures.slow_heads), len(figures.slow_bodies), len(figures.silent_tls)) == \
        (quick.heads, quick.bodies, quick.silent_tls)
    assert figures.answered_408 == quick.heads + quick.bodies
    assert errors == []  # a timed-out head is an answer (408), not an error in the log


def test_body_pace_gives_the_grace_then_240_bytes_a_second() -> None:
    from hostkit_outofprocess.front.deadlines import BodyPace

    pace = BodyPace(2.0)
    assert pace.allowance() == 2.0
    pace.received, pace.waited = 480, 3.0
    assert pace.allowance() == pytest.approx(1.0)
    pace.waited = 10.0
    assert pace.allowance() == 0.0


def test_a_fast_upload_after_a_pause_within_the_grace_is_not_cut(front: Front) -> None:
    grace = slow_clients.QUICK.header_timeout

    async def upload() -> int:
        head = b"POST /whoami HTTP/1.1\r\nHost: a\r\nContent-Length: 100000\r\n\r\n"
        with anyio.fail_after(20):
            async with HttpConnection(front.port) as connection:
                await connection.connect(5)
                assert connection.stream is not None
                await connection.stream.send(head)
                await anyio.sleep(0.7 * grace)  # within the grace
                await connection.stream.send(b"x" * 50000)
                await anyio.sleep(0.7 * grace)  # past the grace, but 50 000 bytes earned 208 s
                return (await connection.request(b"x" * 50000, 10)).status

    assert anyio.run(upload, backend=front.backend) == 200

