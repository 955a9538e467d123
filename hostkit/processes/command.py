"""The command line that started this program, to start it again as another process."""

from __future__ import annotations

import sys


def this_program() -> list[str]:
    """The same interpreter, flags and arguments this process was started with: what a
    supervisor's workers and, by default, an OutOfProcess front's children run."""
    return [sys.executable, *sys.orig_argv[1:]]
