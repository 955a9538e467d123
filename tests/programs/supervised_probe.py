"""The probe (``hostkit.testing.probe``) as a supervisor's worker that can fail to start on
purpose, for the supervisor's tests.

``[worker_start] mode`` in its settings says what the program does *as a worker* before it
builds its host; as the supervisor (the same program, without the worker contract) it always
starts normally:

- ``"serve"`` (the default): serves the probe;
- ``"exit"``: prints a line and exits with status 3, as a worker that cannot read what it
  needs;
- ``"hang"``: prints a line and sleeps for an hour, as a worker stuck loading (for
  ``[workers] startup_time_limit``);
- ``"exit_until_fixed"``: as ``"exit"`` while the file ``[worker_start] fixed_by`` (relative
  to the content root) does not exist, then serves: a fault fixed while the supervisor waits.
"""

from __future__ import annotations

import sys
import time

from hostkit.testing.probe import create_host_builder
from hostkit.worker_contract import current_worker


def main() -> None:
    builder = create_host_builder(sys.argv[1:])
    if current_worker() is not None:
        settings = builder.configuration.get("worker_start", {})
        mode = settings.get("mode", "serve")
        if mode == "exit_until_fixed":
            fixed = builder.configuration.path(settings["fixed_by"]).exists()
            mode = "serve" if fixed else "exit"
        if mode == "exit":
            print("supervised_probe: this worker exits before it builds (on purpose)",
                  flush=True)
            sys.exit(3)
        if mode == "hang":
            print("supervised_probe: this worker loads forever (on purpose)", flush=True)
            time.sleep(3600)
    builder.build().run()


if __name__ == "__main__":
    main()
