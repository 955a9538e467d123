"""A chatty child: 100 MB on stdout while it serves, with the module's file log off and on.

One client has the app write ``chunk`` bytes of output per request (``GET /log?BYTES&stdout``),
paced so that ``total`` bytes take ``duration`` seconds (100 MB in 10 s in the full run: far
more than any app logs); ``normal`` clients load ``GET /`` meanwhile. The baseline is the same
run with the output going to ``/dev/null`` (``&null``): the same work with nothing behind the
output that could be slow. With ``module.stdout_log_enabled`` off, the module
reads the child's pipe; on, the child writes to its log file itself. Figures, per mode: the
requests that failed or timed out (none may), and the normal clients' p99 against the
baseline's (at most 1.2x).
"""

from __future__ import annotations

import dataclasses

import anyio

from tests.hardening.fronts import Front
from tests.hardening.report import timing
from tests.support.http import HttpConnection, RequestFailed, build
from tests.support.load import Sample, failed, latency_ms, now, run_clients

_TIMEOUT = 30.0


@dataclasses.dataclass(frozen=True)
class Settings:
    total: int           # bytes of output per run
    chunk: int           # bytes per request
    duration: float      # seconds the total is spread over
    normal: int          # normal keep-alive clients
    rounds: int = 2      # runs per mode, alternating


#: CI's run and the full run (100 MB per mode and round).
QUICK = Settings(total=8 * 2**20, chunk=256 * 2**10, duration=0.75, normal=8)
FULL = Settings(total=100 * 2**20, chunk=2**20, duration=10.0, normal=8)
#: CI compares p99s of a few ms on a shared machine: below this, a difference is noise.
CI_NOISE_FLOOR_MS = 25.0


@dataclasses.dataclass
class Run:
    """One mode's pooled rounds."""

    sink: str
    written: int
    normal_requests: int
    failures: int
    p99_ms: float


@dataclasses.dataclass
class Figures:
    file_log: bool
    baseline: Run
    chatty: Run

    backend: str = ""

    @property
    def p99_ratio(self) -> float:
        return self.chatty.p99_ms / self.baseline.p99_ms if self.baseline.p99_ms else 0.0

    def lines(self) -> list[str]:
        mode = "on (the child writes its log file)" if self.file_log else \
            "off (the module reads the pipe)"
        return [f"logging stall ({self.backend}), stdout_log_enabled {mode}: "
                f"{self.chatty.written // 2**20} MB written to stdout, "
                f"{self.chatty.failures} failed or timed out of {self.chatty.normal_requests}; "
                f"normal p99 {self.chatty.p99_ms:.1f} ms against {self.baseline.p99_ms:.1f} ms "
                f"writing to /dev/null ({self.p99_ratio:.2f}x)"]

    def problems(self, noise_floor_ms: float = 0.0) -> list[str]:
        found = []
        if self.chatty.failures or self.baseline.failures:
            found.append(f"{self.chatty.failures} + {self.baseline.failures} requests failed")
        if self.chatty.p99_ms > 1.2 * max(self.baseline.p99_ms, noise_floor_ms):
            found.append(timing(f"p99 {self.chatty.p99_ms:.1f} ms is more than 1.2x "
                                f"{self.baseline.p99_ms:.1f} ms"))
        return found


def front_for(backend: str, file_log: bool) -> Front:
    return Front(backend, module={"stdout_log_enabled": file_log, "request_timeout": _TIMEOUT})


async def _one_run(front: Front, sink: str, settings: Settings, samples: list[Sample],
                   share: float = 1.0) -> int:
    """Write ``share`` of the total to ``sink`` under load; returns the writer's failures."""
    total, chunk = int(settings.total * share), settings.chunk
    pause = chunk * settings.duration / settings.total
    writer_failures = 0
    written = 0
    stop = anyio.Event()
    request = build("GET", "/")

    async def writer() -> None:
        nonlocal written, writer_failures
        started = now()
        async with HttpConnection(front.port) as connection:
            while written < total:
                await anyio.sleep(max(0.0, started + written // chunk * pause - now()))
                try:
                    response = await connection.request(build("GET", f"/log?{chunk}&{sink}"),
                                                        _TIMEOUT)
                except RequestFailed:
                    writer_failures += 1
                    continue
                if response.status != 200:
                    writer_failures += 1
                written += chunk
        stop.set()

    async with anyio.create_task_group() as task_group:
        task_group.start_soon(run_clients, front.port, settings.normal,
                              lambda c, n: ("GET", request, ""), stop, samples, _TIMEOUT)
        task_group.start_soon(writer)
    return writer_failures


async def run(front: Front, file_log: bool, settings: Settings) -> Figures:
    """Baseline (output to /dev/null) and chatty (stdout) runs, alternating, ``rounds`` each,
    after a warm-up; each mode's samples are pooled."""
    await _one_run(front, "null", settings, [], share=0.25)  # warm-up, not measured
    runs = {}
    for sink in ("null", "stdout"):
        runs[sink] = Run(sink, 0, 0, 0, 0.0)
    pooled: dict[str, list[Sample]] = {"null": [], "stdout": []}
    for _ in range(settings.rounds):
        for sink in ("null", "stdout"):
            samples: list[Sample] = []
            runs[sink].failures += await _one_run(front, sink, settings, samples)
            runs[sink].written += settings.total
            pooled[sink] += samples
    for sink, samples in pooled.items():
        runs[sink].normal_requests = len(samples)
        runs[sink].failures += len(failed(samples))
        runs[sink].p99_ms = latency_ms(samples, 0.99)
    return Figures(file_log, runs["null"], runs["stdout"], front.backend)
