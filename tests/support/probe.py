"""The probe program (``tests/programs/probe.py``) on a unix socket, for both hosting models."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import httpx

from hostkit.testing import Program, python
from tests.support.paths import PROGRAMS


async def probe_on_unix_socket(path: Path, backend: str, cwd: Path,
                               timeout: float) -> tuple[dict[str, Any], int]:
    """Run the probe on ``unix:{path}`` in ``cwd`` (whose ``hostkit.toml`` says the hosting
    model), GET ``/features`` through the socket, and stop it. Returns the features and the
    probe's pid; fails unless the probe listened on that URL and removed the socket file."""
    with Program(python(str(PROGRAMS / "probe.py"), f"--urls=unix:{path}",
                        f"--async_backend={backend}"), cwd=cwd) as program:
        assert program.wait_started() == [f"unix:{path}"]
        transport = httpx.AsyncHTTPTransport(uds=str(path))
        async with httpx.AsyncClient(transport=transport, timeout=timeout) as client:
            features: dict[str, Any] = (await client.get("http://localhost/features")).json()
    assert not path.exists()  # the socket file is removed on stop
    return features, program.pid
