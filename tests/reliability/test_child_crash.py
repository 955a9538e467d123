"""The child SIGKILLed under load (64 keep-alive clients, GET and POST), on asyncio and trio.

CI kills it a few times in a few seconds; ``python -m tests.hardening --full`` every 2 s for
60 s. Only requests in flight at a kill may fail; requests arriving while the child is down
wait for the next one; no POST is applied twice (the app's request-id ledger).
"""

from __future__ import annotations

from pathlib import Path

import anyio
import pytest

from hostkit_outofprocess.front.upstream import ConnectionPool
from tests.hardening import crash

pytestmark = pytest.mark.integration


@pytest.mark.parametrize("backend", ["asyncio", "trio"])
def test_only_requests_in_flight_at_a_kill_fail(backend: str, tmp_path: Path) -> None:
    ledger = tmp_path / "ledger"
    with crash.front_for(backend, ledger) as front:
        figures = anyio.run(crash.run, front, ledger, crash.QUICK, backend=backend)
    assert figures.problems() == [], figures.lines()
    assert len(figures.kills) >= 3 and figures.posts > 100
    assert figures.arrived_while_down > 0  # the case that must not fail did occur


@pytest.mark.anyio
async def test_the_pool_never_hands_out_a_connection_the_child_closed() -> None:
    """A child that died (or closed an idle connection) is seen at once, from the socket, not
    when the event loop gets to it: a request written there would be lost unanswered."""
    accepted: list[anyio.abc.SocketStream] = []
    async with await anyio.create_tcp_listener(local_host="127.0.0.1") as listener:
        port = listener.extra(anyio.abc.SocketAttribute.local_port)
        async with anyio.create_task_group() as task_group:
            async def accept() -> None:
                async def keep(stream: anyio.abc.SocketStream) -> None:
                    accepted.append(stream)
                await listener.serve(keep)
            task_group.start_soon(accept)
            pool = ConnectionPool(port, idle_timeout=30)
            with anyio.fail_after(5):
                first = await pool.get()
                first.reusable = True
                await pool.put(first)
                while not accepted:
                    await anyio.sleep(0.01)
                await accepted[0].aclose()  # the child's side goes away...
                await anyio.sleep(0.05)
                second = await pool.get()   # ...and the pool knows without a read
            assert second is not first and first.closed
            await second.aclose()
            task_group.cancel_scope.cancel()


def test_child_ports_are_outside_the_range_outgoing_connections_use() -> None:
    """While a replacement child starts under load, no client's or module's outgoing
    connection can take its port (bind(0) would pick from exactly that range)."""
    from hostkit.processes.ports import ephemeral_ports, free_loopback_port

    ephemeral = ephemeral_ports()
    ports = {free_loopback_port() for _ in range(50)}
    assert not any(port in ephemeral for port in ports)
    assert len(ports) > 40  # random, not one port over and over
