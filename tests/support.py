"""Where the integration tests' programs live; starting them is ``hostkit.testing``'s job.

``Program``, ``python``, ``raw_exchange`` and ``RUNNING`` are the conformance kit's own
(:mod:`hostkit.testing`), re-exported so the tests import them from one place.
"""

from __future__ import annotations

from pathlib import Path

from hostkit.testing.client import raw_exchange
from hostkit.testing.program import RUNNING, STARTED, Program, python

ROOT = Path(__file__).resolve().parent.parent
PROGRAMS = Path(__file__).resolve().parent / "programs"
SAMPLES = ROOT / "samples"

__all__ = ["PROGRAMS", "ROOT", "RUNNING", "SAMPLES", "STARTED", "Program", "python",
           "raw_exchange"]
