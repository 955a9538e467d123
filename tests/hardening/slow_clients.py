"""Slow clients: connections that trickle a head or a body, one byte per ``interval``, or
open TLS and never send a ClientHello.

``heads`` connections send a request head one byte at a time; ``bodies`` connections send a
whole head announcing a body, then the body one byte at a time; ``silent_tls`` connections
connect to the front's https port and send nothing (the TLS handshake is part of the wait for
the first head). Meanwhile ``normal`` keep-alive clients load the front with ``GET /``.
Figures: how long each slow connection stayed open (every one must be closed within
``server.request_header_timeout`` + 1 s), and the normal clients' p99 latency against a
baseline run without slow clients (at most 2x).
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import tempfile
from pathlib import Path

import anyio
import trustme

from hostkit.testing import connect
from tests.hardening.fronts import Front
from tests.hardening.report import timing
from tests.support.http import build
from tests.support.load import Sample, failed, latency_ms, load_for, now, run_clients
from tests.support.processes import LOOPBACK

_TIMEOUT = 30.0


@dataclasses.dataclass(frozen=True)
class Settings:
    header_timeout: float    # server.request_header_timeout (and keep_alive_timeout)
    heads: int               # slow-head connections
    bodies: int              # slow-body connections
    silent_tls: int          # TLS connections that never send a ClientHello
    interval: float          # seconds between two bytes
    normal: int              # normal keep-alive clients
    baseline: float          # seconds of the run without slow clients


#: CI's run (short timeouts through the configuration) and the full run.
QUICK = Settings(header_timeout=1.0, heads=60, bodies=20, silent_tls=50, interval=0.3,
                normal=8, baseline=1.5)
FULL = Settings(header_timeout=10.0, heads=500, bodies=100, silent_tls=500, interval=5.0,
                normal=8, baseline=10.0)
#: CI compares p99s of a few ms on a shared machine: below this, a difference is noise.
CI_NOISE_FLOOR_MS = 25.0


@dataclasses.dataclass
class Figures:
    header_timeout: float
    slow_heads: list[float]        # seconds each slow-head connection stayed open
    slow_bodies: list[float]
    silent_tls: list[float]        # seconds each silent TLS connection stayed open
    answered_408: int
    baseline_p99_ms: float
    loaded_p99_ms: float
    normal_requests: int
    normal_failures: int

    @property
    def longest(self) -> float:
        return max(self.slow_heads + self.slow_bodies + self.silent_tls, default=0.0)

    backend: str = ""

    @property
    def p99_ratio(self) -> float:
        return self.loaded_p99_ms / self.baseline_p99_ms if self.baseline_p99_ms else 0.0

    def lines(self) -> list[str]:
        return [f"slow clients ({self.backend}): {len(self.slow_heads)} slow heads and "
                f"{len(self.slow_bodies)} slow bodies closed after at most "
                f"{max(self.slow_heads, default=0):.2f} s / {max(self.slow_bodies, default=0):.2f}"
                f" s (request_header_timeout {self.header_timeout:g} s), {self.answered_408} "
                f"told 408; {len(self.silent_tls)} silent TLS connections closed after at "
                f"most {max(self.silent_tls, default=0):.2f} s; normal clients p99 "
                f"{self.loaded_p99_ms:.1f} ms against {self.baseline_p99_ms:.1f} ms without "
                f"them ({self.p99_ratio:.2f}x), {self.normal_failures} of "
                f"{self.normal_requests} failed"]

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
    """A front with these timeouts, on http (:attr:`Front.port`) and https
    (:attr:`Front.secure_port`)."""
    return Front(backend, server={"request_header_timeout": header_timeout,
                                  "keep_alive_timeout": header_timeout},
                 tls={"certificate": _certificate(), "private_key": _certificate()})


def _certificate() -> str:
    """A PEM file of a key and a certificate for 127.0.0.1 (no client here checks it: the
    silent connections never begin a handshake)."""
    return str(Path(_certificate_folder().name) / "server.pem")


@functools.cache
def _certificate_folder() -> tempfile.TemporaryDirectory[str]:
    """The folder of :func:`_certificate`, made once, removed when the process exits."""
    folder = tempfile.TemporaryDirectory(prefix="hostkit-slow-tls-")
    pem = trustme.CA().issue_cert(LOOPBACK).private_key_and_cert_chain_pem
    pem.write_to_path(str(Path(folder.name) / "server.pem"))
    return folder


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


async def _silent(port: int, limit: float, open_for: list[float]) -> None:
    """Connect to ``port`` and send nothing until the front closes the connection; record how
    long it stayed open."""
    async with await anyio.connect_tcp(LOOPBACK, port) as stream:
        opened = now()
        with contextlib.suppress(anyio.EndOfStream, anyio.BrokenResourceError, OSError), \
                anyio.move_on_after(limit):
            while await stream.receive():
                pass
        open_for.append(now() - opened)


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
    silent_times: list[float] = []
    answers: list[bytes] = []
    limit = header_timeout + 10
    endless_head = b"GET / HTTP/1.1\r\nHost: a\r\nX-Slow: " + b"s" * 10000
    body_head = build("POST", "/apply", [("x-apply-tag", "slow")], None)[:-2] + \
        b"Content-Length: 10000\r\n\r\n"
    stop = anyio.Event()
    async with anyio.create_task_group() as task_group:
        for _ in range(settings.heads):
            task_group.start_soon(_trickle, front.url, b"", endless_head, interval, limit,
                                  head_times, answers)
        for _ in range(settings.bodies):
            task_group.start_soon(_trickle, front.url, body_head, b"b" * 10000, interval,
                                  limit, body_times, answers)
        assert front.secure_port is not None
        for _ in range(settings.silent_tls):
            task_group.start_soon(_silent, front.secure_port, limit, silent_times)
        task_group.start_soon(run_clients, front.port, normal,
                              lambda c, n: ("GET", request, ""), stop, samples_during, _TIMEOUT)
        await anyio.sleep(header_timeout + 1)
        stop.set()
    return Figures(header_timeout, head_times, body_times, silent_times,
                   sum(answer.startswith(b"HTTP/1.1 408") for answer in answers),
                   latency_ms(samples_before, 0.99), latency_ms(samples_during, 0.99),
                   len(samples_during), len(failed(samples_during)), front.backend)
