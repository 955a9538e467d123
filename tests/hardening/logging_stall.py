"""A chatty child: 100 MB on stdout while it serves, in each of the :data:`MODES` of its output.

One client has the app write ``chunk`` bytes of output per request (``GET /log?BYTES&stdout``),
paced so that ``total`` bytes take ``duration`` seconds (100 MB in 10 s in the full run: far
more than any app logs); ``normal`` clients load ``GET /`` meanwhile. The baseline is the same
run with the output going to ``/dev/null`` (``&null``): the same work with nothing behind the
output that could be slow. The modes:

- ``pipe``: ``relay_child_output`` and ``stdout_log_enabled`` off: the module reads the
  child's pipe and keeps its tail;
- ``relay``: ``relay_child_output`` on (the default): the module also copies each line to its
  stderr, which another process reads as fast as it can and counts
  (``tests/programs/stderr_reader.py``, as a terminal would; not the suite's own process,
  which measures);
- ``unread``: the same, but nobody reads the front's stderr once it started: the relay drops
  what does not fit. The front's own access log is off here: its lines go to the same pipe,
  and a process whose stdout is never read blocks on its own log once the pipe is full, as any
  server's would (the relay leaves them half the pipe, which a few thousand lines fill);
- ``file``: ``stdout_log_enabled`` on: the child writes its log file itself.

Figures, per mode: the requests that failed or timed out (none may), and the normal clients'
p99 against the baseline's (at most 1.2x); the CPU time the front used, against the
baseline's (what reading, and relaying, the output costs it); in ``relay``, the lines that
reached the front's stderr and those dropped.
"""

from __future__ import annotations

import contextlib
import dataclasses
import re

import anyio

from tests.hardening.fronts import APP, Front
from tests.hardening.report import timing
from tests.support.http import HttpConnection, RequestFailed, build
from tests.support.load import Sample, failed, latency_ms, now, run_clients
from tests.support.paths import PROGRAMS
from tests.support.processes import cpu_seconds

_TIMEOUT = 30.0
#: The length of the app's lines of output (``hardening_app.py``).
LINE_BYTES = 16 * 1024
# How long the relayed lines may take to reach the front's stderr after a run.
_RELAY_WAIT = 10.0
_STDERR_READER = PROGRAMS / "stderr_reader.py"
_READER_COUNT = re.compile(r"^stderr reader: (\d+) child lines, (\d+) dropped$")

#: How the child's output goes, and what each mode's front is told (see the docstring).
MODES: dict[str, dict[str, object]] = {
    "pipe": {"stdout_log_enabled": False, "relay_child_output": False},
    "relay": {"stdout_log_enabled": False, "relay_child_output": True},
    "unread": {"stdout_log_enabled": False, "relay_child_output": True},
    "file": {"stdout_log_enabled": True},
}
_DESCRIPTIONS = {
    "pipe": "relay_child_output off (the module reads the pipe)",
    "relay": "relay_child_output on (the module relays the pipe to its stderr, read)",
    "unread": "relay_child_output on, the front's stderr never read",
    "file": "stdout_log_enabled on (the child writes its log file)",
}


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
    #: CPU seconds the front used in these runs (its children not included).
    front_cpu: float = 0.0


@dataclasses.dataclass
class Figures:
    mode: str
    baseline: Run
    chatty: Run

    backend: str = ""
    #: ``relay``: the child's lines that reached the front's stderr, and those dropped.
    relayed_lines: int | None = None
    dropped_lines: int = 0

    @property
    def expected_lines(self) -> int:
        """The lines the app wrote to stdout in the chatty runs."""
        return self.chatty.written // LINE_BYTES

    @property
    def p99_ratio(self) -> float:
        return self.chatty.p99_ms / self.baseline.p99_ms if self.baseline.p99_ms else 0.0

    def lines(self) -> list[str]:
        relayed = ("" if self.relayed_lines is None else
                   f"; {self.relayed_lines} lines relayed, {self.dropped_lines} dropped")
        return [f"logging stall ({self.backend}), {_DESCRIPTIONS[self.mode]}: "
                f"{self.chatty.written // 2**20} MB written to stdout, "
                f"{self.chatty.failures} failed or timed out of {self.chatty.normal_requests}; "
                f"normal p99 {self.chatty.p99_ms:.1f} ms against {self.baseline.p99_ms:.1f} ms "
                f"writing to /dev/null ({self.p99_ratio:.2f}x); front CPU "
                f"{self.chatty.front_cpu:.2f} s against {self.baseline.front_cpu:.2f} s"
                f"{relayed}"]

    def problems(self, noise_floor_ms: float = 0.0) -> list[str]:
        found = []
        if self.chatty.failures or self.baseline.failures:
            found.append(f"{self.chatty.failures} + {self.baseline.failures} requests failed")
        if self.relayed_lines is not None and (
                self.relayed_lines + self.dropped_lines < self.expected_lines):
            found.append(f"{self.expected_lines - self.relayed_lines - self.dropped_lines} "
                         f"lines of output neither relayed nor counted as dropped")
        if self.chatty.p99_ms > 1.2 * max(self.baseline.p99_ms, noise_floor_ms):
            found.append(timing(f"p99 {self.chatty.p99_ms:.1f} ms is more than 1.2x "
                                f"{self.baseline.p99_ms:.1f} ms"))
        return found


def front_for(backend: str, mode: str) -> Front:
    """The front of ``mode`` (one of :data:`MODES`)."""
    module = {**MODES[mode], "request_timeout": _TIMEOUT}
    if mode in ("relay", "unread"):
        unread = mode == "unread"
        return Front(backend, module=module, program=_STDERR_READER, environment={
            "STDERR_READER_PROGRAM": str(APP),
            "STDERR_READER_MODE": "unread" if unread else "count"},
            tables={"logging": {"access_log": False}} if unread else None)
    return Front(backend, module=module)


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


async def run(front: Front, mode: str, settings: Settings) -> Figures:
    """Baseline (output to /dev/null) and chatty (stdout) runs, alternating, ``rounds`` each,
    after a warm-up, on the front of ``mode`` (:func:`front_for`); the samples of each sink
    are pooled."""
    await _one_run(front, "null", settings, [], share=0.25)  # warm-up, not measured
    first_line = len(front.lines)
    runs = {}
    for sink in ("null", "stdout"):
        runs[sink] = Run(sink, 0, 0, 0, 0.0)
    pooled: dict[str, list[Sample]] = {"null": [], "stdout": []}
    for _ in range(settings.rounds):
        for sink in ("null", "stdout"):
            samples: list[Sample] = []
            cpu = cpu_seconds(front.pid)
            runs[sink].failures += await _one_run(front, sink, settings, samples)
            runs[sink].front_cpu += cpu_seconds(front.pid) - cpu
            runs[sink].written += settings.total
            pooled[sink] += samples
    for sink, samples in pooled.items():
        runs[sink].normal_requests = len(samples)
        runs[sink].failures += len(failed(samples))
        runs[sink].p99_ms = latency_ms(samples, 0.99)
    figures = Figures(mode, runs["null"], runs["stdout"], front.backend)
    if mode == "relay":
        before = _reader_count(front.lines[:first_line])
        with contextlib.suppress(AssertionError):  # a shortfall is a figure, see problems()
            front.wait_until(lambda: (sum(_reader_count(front.lines)) - sum(before)
                                      >= figures.expected_lines),
                             _RELAY_WAIT, "the relayed lines")
        after = _reader_count(front.lines)
        figures.relayed_lines = after[0] - before[0]
        figures.dropped_lines = after[1] - before[1]
    return figures


def _reader_count(lines: list[str]) -> tuple[int, int]:
    """The last ``(child lines, dropped)`` the front's stderr reader said in ``lines``."""
    for line in reversed(lines):
        if match := _READER_COUNT.match(line):
            return int(match.group(1)), int(match.group(2))
    return 0, 0
