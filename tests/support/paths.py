"""Where the tests' programs and the samples live."""

from __future__ import annotations

from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
PROGRAMS = ROOT / "tests" / "programs"
SAMPLES = ROOT / "samples"
