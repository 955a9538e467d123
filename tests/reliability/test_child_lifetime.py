"""A child lives as long as the module wants it, whatever thread started it.

``PR_SET_PDEATHSIG`` (what kills a child when the module dies) fires when the *thread* that
forked the child ends, not the process. trio forks in a worker thread that ends after 10 s
idle, which used to SIGKILL every child of a trio front 10 s after it started (the full
logging-stall run found it). Here trio's idle timeout is shortened to 0.2 s so the test takes
about two seconds.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

import anyio
import pytest

from bench._harness import process_alive
from bench.hardening.fronts import APP
from hostkit_outofprocess.process import ChildSettings, ProcessManager

pytestmark = pytest.mark.anyio


async def test_a_child_outlives_the_thread_that_started_it(
        anyio_backend: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import trio._core._thread_cache as thread_cache

    monkeypatch.setattr(thread_cache, "IDLE_TIMEOUT", 0.2)
    environment = {k: v for k, v in os.environ.items() if not k.startswith("HOSTKIT_")}
    settings = ChildSettings([sys.executable, str(APP)], tmp_path, environment, "/", 15, 3, 10,
                             None)
    manager = ProcessManager(settings, 1)
    with anyio.fail_after(20):
        async with anyio.create_task_group() as task_group:
            await task_group.start(manager.run)
            child = await manager.acquire()
            await anyio.sleep(0.8)  # the worker threads of this loop have idled out
            alive = child.running and process_alive(child.pid)
            task_group.cancel_scope.cancel()
    assert alive, f"the child {child.describe_exit()}"
    assert not process_alive(child.pid)  # and the stop still ends it
