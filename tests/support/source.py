"""What code a measurement ran: for the hardening report and the benchmarks' JSON results."""

from __future__ import annotations

import hashlib
import subprocess

from tests.support.paths import ROOT


def source_state(*directories: str) -> dict[str, object]:
    """The code a run measured: git HEAD, uncommitted changes, and a hash of the ``.py`` files.

    ``directories`` are relative to the repository root. Taken at the start and the end of a
    run, a different ``sha256`` means the code changed while it was being measured.
    """
    digest = hashlib.sha256()
    for directory in directories:
        for path in sorted((ROOT / directory).rglob("*.py")):
            digest.update(str(path.relative_to(ROOT)).encode() + b"\0")
            digest.update(path.read_bytes())
    state: dict[str, object] = {"sha256": digest.hexdigest()}
    try:
        head = subprocess.run(["git", "rev-parse", "HEAD"], cwd=ROOT, capture_output=True,
                              text=True, timeout=10)
        status = subprocess.run(["git", "status", "--porcelain", "--", *directories],
                                cwd=ROOT, capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.TimeoutExpired):
        return state
    state["git_head"] = head.stdout.strip()
    state["uncommitted"] = [line[3:] for line in status.stdout.splitlines()]
    return state
