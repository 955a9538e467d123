"""Where the integration tests' programs live; starting them is ``hostkit.testing``'s job.

``Program``, ``python``, ``raw_exchange`` and ``RUNNING`` are the conformance kit's own
(:mod:`hostkit.testing`), re-exported so the tests import them from one place.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import httpx

from hostkit.testing.client import raw_exchange
from hostkit.testing.program import RUNNING, STARTED, Program, python

ROOT = Path(__file__).resolve().parent.parent
PROGRAMS = Path(__file__).resolve().parent / "programs"
SAMPLES = ROOT / "samples"

__all__ = ["PROGRAMS", "ROOT", "RUNNING", "SAMPLES", "STARTED", "Program",
           "probe_on_unix_socket", "python", "raw_exchange"]


async def probe_on_unix_socket(path: Path, backend: str, cwd: Path,
                               timeout: float) -> tuple[dict[str, Any], int]:
    """Run the probe on ``unix:{path}`` in ``cwd`` (whose ``hostkit.toml`` says the hosting
    model), GET ``/features`` through the socket, and stop it. Returns the features and the
    probe's pid; fails unless the probe listened on that URL and removed the socket file."""
    program = Program(python(str(PROGRAMS / "probe.py"), f"--urls=unix:{path}",
                             f"--async_backend={backend}"), cwd=cwd)
    try:
        assert program.wait_started() == [f"unix:{path}"]
        transport = httpx.AsyncHTTPTransport(uds=str(path))
        async with httpx.AsyncClient(transport=transport, timeout=timeout) as client:
            features: dict[str, Any] = (await client.get("http://localhost/features")).json()
    finally:
        program.stop()
    assert not path.exists()  # the socket file is removed on stop
    return features, program.pid
