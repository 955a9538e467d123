"""After a forwarded WebSocket handshake (the child's 101): bytes carried both ways, as is.

HTTP is no longer spoken on the connection, so nothing is parsed: what one side sends, the
other gets, until either side ends, which ends both.
"""

from __future__ import annotations

from collections.abc import Callable

import anyio

from hostkit_outofprocess.front.client_input import STREAM_ERRORS
from hostkit_outofprocess.front.streams import READ_SIZE, Stream


async def carry(client: Stream, child: Stream, on_sent: Callable[[int], None]) -> None:
    """Copy bytes from ``client`` to ``child`` and back until one of them ends;
    ``on_sent(size)`` after each ``size`` bytes the client was sent."""
    async with anyio.create_task_group() as task_group:
        task_group.start_soon(_copy, client, child, task_group.cancel_scope, None)
        task_group.start_soon(_copy, child, client, task_group.cancel_scope, on_sent)


async def _copy(source: Stream, sink: Stream, scope: anyio.CancelScope,
                on_sent: Callable[[int], None] | None) -> None:
    """Copy bytes until ``source`` ends, then end the whole tunnel."""
    try:
        while True:
            data = await source.receive(READ_SIZE)
            await sink.send(data)
            if on_sent is not None:
                on_sent(len(data))
    except STREAM_ERRORS:
        pass
    finally:
        scope.cancel()
