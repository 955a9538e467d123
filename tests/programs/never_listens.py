"""A child that starts but never listens on its port (for startup_time_limit)."""

import time

print("never_listens: loading forever (on purpose)", flush=True)
time.sleep(3600)
