"""Slow clients: connections that trickle a head or a body, one byte per ``interval``.

``heads`` connections send a request head one byte at a time; ``bodies`` connections send a
whole head announcing a body, then the body one byte at a time. Meanwhile ``normal`` keep-alive
clients load the front with ``GET /``. Figures: how long each slow connection stayed open
(every one must be closed within ``server.request_header_timeout`` + 1 s), and the normal
clients' p99 latency against a baseline run without slow clients (at most 2x).
"""

from __future__ import annotations

import contextlib
import dataclasses

import anyio

from hostkit.testing import connect
from tests.hardening.fronts import Front
from tests.hardening.report import timing
from tests.support.http import build
from tests.support.load import Sample, failed, latency_ms, load_for, now, run_clients

_TIMEOUT = 30.0


@dataclasses.dataclass(frozen=True)
class Settings:
    header_timeout: float    # server.request_header_timeout (and keep_alive_timeout)
    heads: int               # slow-head connections
    bodies: int              # slow-body connections
    interval: float          # seconds between two bytes
    normal: int              # normal keep-alive clients
    baseline: float          # seconds of the run without slow clients


#: CI's run (short timeouts through the configuration) and the full run.
QUICK = Settings(header_timeout=1.0, heads=60, bodies=20, interval=0.3, normal=8, baseline=1.5)
FULL = Settings(header_timeout=10.0, heads=500, bodies=100, interval=5.0, normal=8,
                baseline=10.0)
#: CI compares p99s of a few ms on a shared machine: below this, a difference is noise.
CI_NOISE_FLOOR_MS = 25.0


@dataclasses.dataclass
class Figures:
    header_timeout: float
    slow_heads: list[float]        # seconds each slow-head connection stayed open
    slow_bodies: list[float]
    answered_408: int
    baseline_p99_ms: float
    loaded_p99_ms: float
    normal_requests: int
    normal_failures: int

    @property
    def longest(self) -> float:
        return max(self.slow_heads + self.slow_bodies, default=0.0)

    backend: str = ""

    @property
    def p99_ratio(self) -> float:
        return self.loaded_p99_ms / self.baseline_p99_ms if self.baseline_p99_ms else 0.0

    def lines(self) -> list[str]:
        return [f"slow clients ({self.backend}): {len(self.slow_heads)} slow heads and "
                f"{len(self.slow_bodies)} slow bodies closed after at most "
                f"{max(self.slow_heads, default=0):.2f} s / {max(self.slow_bodies, default=0):.2f}"
                f" s (request_header_timeout {self.header_timeout:g} s), {self.answered_408} "
                f"told 408; normal clients p99 {self.loaded_p99_ms:.1f} ms against "
                f"{self.baseline_p99_ms:.1f} ms without them ({self.p99_ratio:.2f}x), "
                f"{self.normal_failures} of {self.normal_requests} failed"]

    def problems(self, noise_floor_ms: float = 0.0) -> list[str]:
        found = []
        if self.longest > self.header_timeout + 1:
            found.append(timing(f"a slow connection stayed open {self.longest:.2f} s"))
        if self.normal_failures or not self.normal_requests:
            found.append(f"{self.normal_failures} normal requests failed")
        if self.loaded_p99_ms > 2 * max(self.baseline_p99_ms, noise_floor_ms):
            found.append(timing(f"normal p99 {self.loaded_p99_ms:.1f} ms is more than twice "
                                f"{self.baseline_p99_ms:.1f} ms"))
        return found


def front_for(backend: str, header_timeout: float) -> Front:
    return Front(backend, server={"request_header_timeout": header_timeout,
                                  "keep_alive_timeout": header_timeout})


async def _trickle(url: str, head: bytes, trickled: bytes, interval: float, limit: float,
                   open_for: list[float], answers: list[bytes]) -> None:
    """Send ``head`` at once and ``trickled`` one byte per ``interval`` until the front closes
    the connection; record how long it stayed open."""
    received = b""
    async with await connect(url) as stream:
        opened = now()
        with contextlib.suppress(anyio.EndOfStream, anyio.BrokenResourceError, OSError), \
                anyio.move_on_after(limit):
            if head:
                await stream.send(head)
            for index in range(len(trickled)):
                await stream.send(trickled[index:index + 1])
                with anyio.move_on_after(interval):
                    while True:
                        data = await stream.receive()
                        received += data
        open_for.append(now() - opened)
        answers.append(received)


async def run(front: Front, settings: Settings) -> Figures:
    """A baseline of the normal clients alone, then the same with the slow clients."""
    header_timeout, interval, normal = settings.header_timeout, settings.interval, \
        settings.normal
    request = build("GET", "/")
    samples_before: list[Sample] = []
    samples_during: list[Sample] = []
    await load_for(front.port, 1, request, 0.5, [], _TIMEOUT)  # the child is up and warm
    await load_for(front.port, normal, request, settings.baseline, samples_before, _TIMEOUT)
    head_times: list[float] = []
    body_times: list[float] = []
    answers: list[bytes] = []
    limit = header_timeout + 10
    endless_head = b"GET / HTTP/1.1\r\nHost: a\r\nX-Slow: " + b"s" * 10000
    body_head = build("POST", "/apply", [("x-request-id", "slow")], None)[:-2] + \
        b"Content-Length: 10000\r\n\r\n"
    stop = anyio.Event()
    async with anyio.create_task_group() as task_group:
        for _ in range(settings.heads):
            task_group.start_soon(_trickle, front.url, b"", endless_head, interval, limit,
                                  head_times, answers)
        for _ in range(settings.bodies):
            task_group.start_soon(_trickle, front.url, body_head, b"b" * 10000, interval,
                                  limit, body_times, answers)
        task_group.start_soon(run_clients, front.port, normal,
                              lambda c, n: ("GET", request, ""), stop, samples_during, _TIMEOUT)
        await anyio.sleep(header_timeout + 1)
        stop.set()
    return Figures(header_timeout, head_times, body_times,
                   sum(answer.startswith(b"HTTP/1.1 408") for answer in answers),
                   latency_ms(samples_before, 0.99), latency_ms(samples_during, 0.99),
                   len(samples_during), len(failed(samples_during)), front.backend)
