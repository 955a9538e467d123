"""Keep-alive load clients that record every request they make.

:func:`run_clients` runs ``clients`` tasks until ``stop`` is set; each keeps one connection
(reconnecting after a failure) and sends what ``next_request(client, n)`` returns, recording a
:class:`~bench.hardening.client.Sample` per request: when it was sent and answered, the status
or how it failed.
"""

from __future__ import annotations

from collections.abc import Callable

import anyio

from bench.hardening.client import HttpConnection, RequestFailed, Sample, now, percentile

#: (kind, request bytes, tag): kind labels the sample ("GET", "POST"), tag identifies it.
Request = tuple[str, bytes, str]


async def run_clients(port: int, clients: int, next_request: Callable[[int, int], Request],
                      stop: anyio.Event, samples: list[Sample], timeout: float,
                      pause: float = 0.0) -> None:
    """Load ``127.0.0.1:port`` with ``clients`` keep-alive clients until ``stop`` is set."""

    async def client(number: int) -> None:
        connection = HttpConnection(port)
        count = 0
        try:
            while not stop.is_set():
                kind, data, tag = next_request(number, count)
                count += 1
                sent = now()
                try:
                    response = await connection.request(data, timeout)
                except RequestFailed as failure:
                    samples.append(Sample(kind, sent, now(), failure=failure.kind, tag=tag))
                    await anyio.sleep(0.01)  # no busy loop against a front that is gone
                else:
                    samples.append(Sample(kind, sent, now(), status=response.status, tag=tag))
                if pause:
                    await anyio.sleep(pause)
        finally:
            await connection.aclose()

    async with anyio.create_task_group() as task_group:
        for number in range(clients):
            task_group.start_soon(client, number)


def latency_ms(samples: list[Sample], fraction: float, kind: str | None = None) -> float:
    """A latency percentile (ms) of the successful samples (of ``kind``, when given)."""
    return 1000 * percentile([s.done - s.sent for s in samples
                              if s.status and (kind is None or s.kind == kind)], fraction)


def failed(samples: list[Sample]) -> list[Sample]:
    """Samples that got no answer, or an error status (5xx)."""
    return [s for s in samples if not s.status or s.status >= 500]
