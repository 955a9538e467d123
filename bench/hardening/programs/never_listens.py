"""A child that starts and never listens on its port (for ``module.startup_time_limit``)."""

import time

print("never_listens: loading forever (on purpose)", flush=True)
time.sleep(3600)
