"""Keep-alive load clients that record every request they make.

:func:`run_clients` runs ``clients`` tasks until ``stop`` is set; each keeps one connection
(reconnecting after a failure) and sends what ``next_request(client, n)`` returns, recording a
:class:`Sample` per request: when it was sent and answered, the status or how it failed.
"""

from __future__ import annotations

import dataclasses
import math
import time
from collections.abc import Callable, Sequence

import anyio

from tests.support.http import HttpConnection, RequestFailed

#: (kind, request bytes, tag): kind labels the sample ("GET", "POST"), tag identifies it.
Request = tuple[str, bytes, str]


@dataclasses.dataclass
class Sample:
    """One request a load client made: when it was sent and answered, and how it ended."""

    kind: str              # e.g. "GET" / "POST"
    sent: float            # time.monotonic()
    done: float
    status: int = 0        # 0: failed
    failure: str = ""
    tag: str = ""          # e.g. the request id of a POST


def now() -> float:
    return time.monotonic()


def percentile(values: Sequence[float], fraction: float) -> float:
    """The ``fraction`` percentile (nearest rank) of ``values``; 0 for none."""
    if not values:
        return 0.0
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, math.ceil(fraction * len(ordered)) - 1))]


async def run_clients(port: int, clients: int, next_request: Callable[[int, int], Request],
                      stop: anyio.Event, samples: list[Sample], timeout: float,
                      pause: float = 0.0) -> None:
    """Load ``127.0.0.1:port`` with ``clients`` keep-alive clients until ``stop`` is set."""

    async def client(number: int) -> None:
        count = 0
        async with HttpConnection(port) as connection:
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

    async with anyio.create_task_group() as task_group:
        for number in range(clients):
            task_group.start_soon(client, number)


async def load_for(port: int, clients: int, request: bytes, seconds: float,
                   samples: list[Sample], timeout: float) -> None:
    """``clients`` clients sending ``request`` (a GET) for ``seconds``."""
    stop = anyio.Event()
    async with anyio.create_task_group() as task_group:
        task_group.start_soon(run_clients, port, clients, lambda c, n: ("GET", request, ""),
                              stop, samples, timeout)
        await anyio.sleep(seconds)
        stop.set()


def latency_ms(samples: list[Sample], fraction: float, kind: str | None = None) -> float:
    """A latency percentile (ms) of the successful samples (of ``kind``, when given)."""
    return 1000 * percentile([s.done - s.sent for s in samples
                              if s.status and (kind is None or s.kind == kind)], fraction)


def failed(samples: list[Sample]) -> list[Sample]:
    """Samples that got no answer, or an error status (5xx)."""
    return [s for s in samples if not s.status or s.status >= 500]
