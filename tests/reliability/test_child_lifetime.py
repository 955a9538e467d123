"""A child lives as long as its owner wants it, whatever thread asked for it.

``PR_SET_PDEATHSIG`` (what kills a child when the front dies) fires when the *thread* that
forked the child ends, not the process. Forking from a pooled worker thread, as trio's did,
used to SIGKILL every child of a trio front 10 s after it started, when that thread idled
out (the full logging-stall run found it). A managed process is forked by a thread of its own
instead, whoever starts it: here the start is asked for from a thread that then ends, once the
child is up (so its parent-death signal is set), and the child must live on.
"""

from __future__ import annotations

import os
import sys
import threading
from pathlib import Path

import anyio
import anyio.to_thread
import pytest
from anyio.lowlevel import current_token

from hostkit.plugin import ManagedProcess, ProcessSpec
from tests.hardening.fronts import APP
from tests.support.processes import process_alive

pytestmark = pytest.mark.anyio


async def test_a_child_outlives_the_thread_that_started_it(anyio_backend: str,
                                                           tmp_path: Path) -> None:
    environment = {k: v for k, v in os.environ.items() if not k.startswith("HOSTKIT_")}
    process = ManagedProcess(ProcessSpec([sys.executable, str(APP)], tmp_path, environment))
    release = threading.Event()

    def ask_then_end() -> None:
        process.start(token)
        release.wait(20)

    token = current_token()
    starter = threading.Thread(target=ask_then_end)
    starter.start()
    try:
        with anyio.fail_after(20):
            try:
                await process.started()
                await anyio.sleep(0.3)  # the launcher has set the parent-death signal by now
            finally:
                release.set()
                await anyio.to_thread.run_sync(starter.join)
            await anyio.sleep(0.5)  # a child tied to the ended thread would be SIGKILLed by now
            alive = process.running and process_alive(process.pid)
            await process.stop(3)
    finally:
        if process.pid and process.running:  # the test failed half-way: no leftover
            process.kill()
            with anyio.CancelScope(shield=True), anyio.move_on_after(5):
                await process.exited.wait()
    assert alive, f"the child {process.describe_exit()}"
    assert not process_alive(process.pid)  # and the stop still ends it
