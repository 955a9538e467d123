"""A child that crashes as it starts (for the rapid-fail budget and the 502.5 page)."""

import sys

print("crash_on_start: cannot read my settings (on purpose)", flush=True)
sys.exit(3)
