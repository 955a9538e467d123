"""A child writing a lot to stdout, in modes of ``tests/hardening/logging_stall.py``: its output
relayed to the front's stderr (read by another process, and never read), and written by the
child to its log file (the full run also has the module reading it into its tail only). No
request fails or times out, and the normal clients' p99 stays within 1.2x of the same run
writing to /dev/null. CI writes 2x8 MB per mode; the full run 2x100 MB."""

from __future__ import annotations

import fcntl
import os

import anyio
import pytest

from tests.hardening import logging_stall
from tests.hardening.report import measure_twice

pytestmark = pytest.mark.integration

_F_GETPIPE_SZ = 1032


@pytest.mark.parametrize("backend, mode", [("asyncio", "relay"), ("trio", "unread"),
                                           ("trio", "file")])
def test_a_chatty_child_does_not_stall_requests(backend: str, mode: str) -> None:
    front = logging_stall.front_for(backend, mode)
    with front:
        figures = measure_twice(
            lambda: anyio.run(logging_stall.run, front, mode, logging_stall.QUICK,
                              backend=backend),
            lambda figures: figures.problems(logging_stall.CI_NOISE_FLOOR_MS))
        pipe = _pipe_size(front.children[-1][0]) if mode == "relay" else None
    assert figures.problems(logging_stall.CI_NOISE_FLOOR_MS) == [], figures.lines()
    assert figures.chatty.written >= 2 * logging_stall.QUICK.total
    # A burst of output fills a 1 MB pipe before the child waits on the module to read it.
    assert pipe is None or pipe >= 2**20
    if mode == "relay":  # every line reached the front's stderr or was counted as dropped
        assert figures.relayed_lines is not None
        assert figures.relayed_lines + figures.dropped_lines >= figures.expected_lines > 0


def _pipe_size(pid: int) -> int:
    """The size of the pipe that is ``pid``'s stdout (opened anew through /proc)."""
    descriptor = os.open(f"/proc/{pid}/fd/1", os.O_RDONLY | os.O_NONBLOCK)
    try:
        return fcntl.fcntl(descriptor, _F_GETPIPE_SZ)
    finally:
        os.close(descriptor)
