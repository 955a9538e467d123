"""A child that crashes on its first ``$FLAKY_CRASHES`` starts, then runs the hardening app
(``hardening_app.py``).

The starts are counted in the file ``$FLAKY_COUNTER``: the app "gets fixed" by itself, so a
module that recovers after its rapid-fail window needs no one to act.
"""

from __future__ import annotations

import os
import runpy
import sys
from pathlib import Path

counter = Path(os.environ["FLAKY_COUNTER"])
starts = int(counter.read_text() or "0") + 1 if counter.exists() else 1
counter.write_text(str(starts))
if starts <= int(os.environ["FLAKY_CRASHES"]):
    print(f"flaky_start: start {starts} fails (on purpose)", flush=True)
    sys.exit(3)
sys.argv = [str(Path(__file__).with_name("hardening_app.py")), *sys.argv[1:]]
runpy.run_path(sys.argv[0], run_name="__main__")
