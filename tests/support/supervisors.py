"""What the supervisor's tests share: the supervised probe program, settings, starting it,
and asking which worker answers."""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path

import anyio

from hostkit.testing import Program, python, worker_of_line, write_settings
from tests.support.http import Response, build, request_once
from tests.support.paths import PROGRAMS
from tests.support.processes import LOOPBACK

#: The probe with start failures on demand (``[worker_start] mode``).
SUPERVISED = PROGRAMS / "supervised_probe.py"
BACKENDS = ["asyncio", "trio"]
#: Seconds any one request, and any wait for a log line, may take.
TIMEOUT = 10.0
#: What a worker that fails to start logs through its supervisor.
FAILED_START = "before it was ready (its output is above)"
RAPID_FAIL = "worker failures in the last minute (more than workers.rapid_fails_per_minute"


def supervised_settings(root: Path, workers: Mapping[str, object],
                        **more: object) -> None:
    """``root/hostkit.toml`` with a short stop (``shutdown_timeout`` 1 s), the ``[workers]``
    table ``workers`` and ``more`` (top-level keys, or tables as mappings)."""
    write_settings(root, {"shutdown_timeout": 1, **more, "workers": dict(workers)})


def start(root: Path, backend: str, *args: str, url: str = f"http://{LOOPBACK}:0",
          command: list[str] | None = None) -> Program:
    """:data:`SUPERVISED` with ``args`` (or ``command``) started in ``root`` on ``url`` (a
    free port), once the supervisor logged "Application started." (every worker's first
    start has succeeded or failed)."""
    started = Program(command or python(str(SUPERVISED), f"--urls={url}",
                                        f"--async_backend={backend}", *args), cwd=root)
    try:
        started.wait_started(TIMEOUT + 10)
    except AssertionError:
        started.stop()
        raise
    return started


def port_of(program: Program) -> int:
    return int(program.urls[0].rpartition(":")[2])


async def get(port: int, path: str = "/features") -> Response:
    """``GET path`` on a connection of its own (``Connection: close``), bounded."""
    return await request_once(port, build("GET", path, [("Connection", "close")]), TIMEOUT)


async def served_by(port: int) -> int:
    """The pid that answered ``GET /features`` on a fresh connection (which must be 200)."""
    response = await get(port)
    assert response.status == 200, response
    return int(json.loads(bytes(response.body))["process_id"])


#: Fresh connections made at once by :func:`pids_answering`: clients arrive together, as
#: in production; one at a time, whichever worker is awake first may take them all.
AT_ONCE = 4


async def pids_answering(port: int, distinct: int, attempts: int = 60) -> list[int]:
    """The pid behind each of up to ``attempts`` fresh connections, :data:`AT_ONCE` at a
    time, stopping once ``distinct`` pids have answered (and at least 8 requests were made)."""
    seen: list[int] = []

    async def one() -> None:
        seen.append(await served_by(port))

    while len(seen) < attempts and (len(set(seen)) < distinct or len(seen) < 8):
        async with anyio.create_task_group() as task_group:
            for _ in range(AT_ONCE):
                task_group.start_soon(one)
    return seen


def assert_503_retry_after(response: Response) -> int:
    """The 503 of rapid-fail protection: its Retry-After, a whole number of seconds >= 1."""
    assert response.status == 503, response
    retry_after = (response.header(b"retry-after") or b"").decode()
    assert retry_after.isdigit() and int(retry_after) >= 1, response.headers
    assert b"503 Service Unavailable" in response.body
    return int(retry_after)


def worker_lines(program: Program) -> list[str]:
    """The lines ``program``'s workers wrote (not the supervisor's own)."""
    return [line for line in program.lines if worker_of_line(line) is not None]
