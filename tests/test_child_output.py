"""OutOfProcess: the children's output on the front's stderr (``[module] relay_child_output``).

The relay itself over real pipes (:mod:`hostkit.processes.output_relay`): lines, partial
lines, the bound and the count of dropped lines, the room it leaves in a pipe. Then real
fronts on asyncio and trio running ``tests/programs/output_app.py``: a print and a view's
traceback reach the front's stderr behind the child's pid, not with the relay off, and a child
flooding its output while nobody reads the front's stderr still answers promptly.
"""

from __future__ import annotations

import array
import fcntl
import os
import re
import termios
import time
from collections.abc import Iterator
from pathlib import Path

import anyio
import httpx
import pytest

from hostkit.processes.output_relay import (
    PARTIAL_LINE_BYTES,
    PIPE_BYTES,
    OutputRelay,
    line_prefix,
)
from hostkit.testing import Program, python, write_settings
from hostkit_outofprocess.children.settings import ChildSettings
from hostkit_outofprocess.options import ModuleOptions
from tests.support.fronts import front_settings
from tests.support.paths import PROGRAMS
from tests.support.processes import free_port

APP = PROGRAMS / "output_app.py"
STDERR_READER = PROGRAMS / "stderr_reader.py"
TIMEOUT = 15


@pytest.fixture
def pipe() -> Iterator[tuple[int, int]]:
    read_end, write_end = os.pipe()
    yield read_end, write_end
    for end in (read_end, write_end):
        os.close(end)


def read_available(descriptor: int) -> bytes:
    """Everything in the pipe now, without waiting."""
    unread = array.array("i", [0])
    fcntl.ioctl(descriptor, termios.FIONREAD, unread)
    return os.read(descriptor, unread[0]) if unread[0] else b""


def read_all(relay: OutputRelay, descriptor: int) -> bytes:
    """Read the pipe until the relay has written every line it holds."""
    received = b""
    deadline = time.monotonic() + TIMEOUT
    while not relay.drain(0.01):
        received += read_available(descriptor)
        assert time.monotonic() < deadline, "the relay did not drain"
    return received + read_available(descriptor)


def test_lines_get_the_pid_and_a_partial_line_waits_for_its_newline(
        pipe: tuple[int, int]) -> None:
    read_end, write_end = pipe
    relay = OutputRelay(write_end)
    output = relay.output_of(4321)
    output.feed(b"one\ntw")
    output.feed(b"o\nthr")
    assert read_all(relay, read_end) == b"child: [4321] one\nchild: [4321] two\n"
    output.feed(b"ee")
    output.finish()
    assert read_all(relay, read_end) == b"child: [4321] three\n"
    relay.close(TIMEOUT)


def test_a_line_without_newline_goes_out_at_the_bound(pipe: tuple[int, int]) -> None:
    read_end, write_end = pipe
    relay = OutputRelay(write_end)
    output = relay.output_of(7)
    output.feed(b"a" * (PARTIAL_LINE_BYTES - 1))
    assert relay.drain(0) and read_available(read_end) == b""
    output.feed(b"a\nb")
    assert read_all(relay, read_end) == line_prefix(7) + b"a" * PARTIAL_LINE_BYTES + b"\n"
    output.feed(b"c" * PARTIAL_LINE_BYTES)
    assert read_all(relay, read_end) == (line_prefix(7) + b"b" + b"c" * PARTIAL_LINE_BYTES
                                         + b"\n")
    relay.close(TIMEOUT)


def test_lines_that_do_not_fit_are_dropped_counted_and_said_once_per_gap(
        pipe: tuple[int, int]) -> None:
    """Nobody reads the pipe while 10 MB are queued: feeding never waits, the relay keeps
    its bound, and every line is either received or counted as dropped."""
    read_end, write_end = pipe
    relay = OutputRelay(write_end, queue_bytes=256 * 1024)
    output = relay.output_of(99)
    chunk = b"".join(b"line %06d\n" % n for n in range(1000))
    started = time.monotonic()
    for _ in range(1000):
        output.feed(chunk)
    fed = time.monotonic() - started
    received = read_all(relay, read_end)
    output.feed(b"after the gap\n")
    output.finish()
    received += read_all(relay, read_end)
    relay.close(TIMEOUT)
    lines = received.decode().splitlines()
    notice = re.compile(r"child: \[99\] \.\.\. (\d+) lines dropped: "
                        r"stderr is not read fast enough")
    gaps = [bool(notice.fullmatch(line)) for line in lines]
    dropped = sum(int(match.group(1)) for line in lines if (match := notice.fullmatch(line)))
    relayed = [line for line in lines if line.startswith("child: [99] line ")]
    assert any(gaps) and not any(a and b for a, b in zip(gaps, gaps[1:])), "once per gap"
    assert len(relayed) + dropped == 1000 * 1000
    assert len(relayed) + gaps.count(True) + 1 == len(lines)
    assert 0 < len(relayed) < 200_000 and lines[-1] == "child: [99] after the gap"
    assert fed < 5, f"feeding 10 MB took {fed:.1f} s"


def test_the_relay_grows_a_pipe_nobody_reads_and_fills_at_most_half_of_it(
        pipe: tuple[int, int]) -> None:
    """The other half is for this process's own log lines, which must never wait."""
    read_end, write_end = pipe
    relay = OutputRelay(write_end, queue_bytes=4 * PIPE_BYTES)
    output = relay.output_of(5)
    for _ in range(12_000):  # 1.2 MB: more than half of the pipe
        output.feed(b"x" * 99 + b"\n")
    assert not relay.drain(0.3), "everything was written into a pipe nobody reads"
    unread = array.array("i", [0])
    fcntl.ioctl(write_end, termios.FIONREAD, unread)
    capacity = fcntl.fcntl(write_end, fcntl.F_GETPIPE_SZ)
    assert capacity == PIPE_BYTES and 0 < unread[0] <= capacity // 2
    os.set_blocking(write_end, False)
    os.write(write_end, b"a line of the process's own\n" * 100)  # raises if it would wait
    os.set_blocking(write_end, True)
    received = read_all(relay, read_end)
    relay.close(TIMEOUT)
    assert received.count(b"a line of the process's own\n") == 100
    assert received.count(line_prefix(5) + b"x" * 99 + b"\n") == 12_000


@pytest.mark.parametrize("options, relayed", [
    (ModuleOptions(), True),
    (ModuleOptions(relay_child_output=False), False),
    (ModuleOptions(stdout_log_enabled=True), False),  # the child writes its file itself
])
def test_which_children_are_relayed_and_get_unbuffered_output(
        options: ModuleOptions, relayed: bool, tmp_path: Path) -> None:
    settings = ChildSettings.from_options(options, tmp_path, {"PYTHONUNBUFFERED": ""})
    assert settings.relay_output is relayed
    assert settings.environment["PYTHONUNBUFFERED"] == ("1" if relayed else "")
    mine = ChildSettings.from_options(options, tmp_path, {"PYTHONUNBUFFERED": "x"})
    assert mine.environment["PYTHONUNBUFFERED"] == "x"


# -- real fronts ----------------------------------------------------------------------------


def start_front(root: Path, backend: str, *args: str,
                stderr_unread: bool = False) -> tuple[Program, str]:
    """``output_app.py`` as the front and its child, on a free port; the children's output
    is not written to a file. With ``stderr_unread``, the front's stderr is not read once it
    started (``stderr_reader.py``). The front starts without ``PYTHONUNBUFFERED``, which its
    children would inherit."""
    write_settings(root, front_settings(module={"stdout_log_enabled": False}))
    url = f"http://127.0.0.1:{free_port()}"
    program, environment = APP, {"PYTHONUNBUFFERED": ""}
    if stderr_unread:
        program, environment["STDERR_READER_PROGRAM"] = STDERR_READER, str(APP)
    front = Program(python(str(program), f"--urls={url}", f"--async_backend={backend}",
                           *args), root, environment, name=f"front ({backend})")
    front.wait_started()
    return front, url


@pytest.mark.integration
@pytest.mark.parametrize("backend", ["asyncio", "trio"])
def test_a_print_and_a_views_traceback_reach_the_fronts_stderr(backend: str,
                                                              tmp_path: Path) -> None:
    front, url = start_front(tmp_path, backend)
    with front, httpx.Client(timeout=TIMEOUT) as client:
        pid = int(client.get(url + "/print?hello-from-the-view").text)
        front.wait_for_line(f"child: [{pid}] the view says hello-from-the-view", TIMEOUT)
        assert client.get(url + "/raise").status_code == 500
        front.wait_for_line(f"child: [{pid}] RuntimeError: boom in the view", TIMEOUT)
        lines = front.lines
        assert f"child: [{pid}] Traceback (most recent call last):" in lines
        error = next(line for line in lines if "unhandled exception" in line)
        assert error.startswith(f"child: [{pid}] ERROR: hostkit.request: "), error
    assert front.process.returncode == 0
    assert not any(line.startswith("child: ") and f"[{pid}]" not in line for line in lines)


@pytest.mark.integration
@pytest.mark.parametrize("backend", ["asyncio", "trio"])
def test_with_relay_child_output_false_the_output_is_not_shown(backend: str,
                                                               tmp_path: Path) -> None:
    front, url = start_front(tmp_path, backend, "--module:relay_child_output=false")
    with front, httpx.Client(timeout=TIMEOUT) as client:
        pid = int(client.get(url + "/print?not-relayed").text)
        assert client.get(url + "/raise").status_code == 500
    assert front.process.returncode == 0
    assert f"started child pid {pid}" in front.output
    assert "the view says" not in front.output and "boom in the view" not in front.output
    assert not any(line.startswith("child: ") for line in front.lines)


@pytest.mark.integration
@pytest.mark.parametrize("backend", ["asyncio", "trio"])
def test_a_flooding_child_answers_promptly_while_nobody_reads_the_fronts_stderr(
        backend: str, tmp_path: Path) -> None:
    """50 MB of output, relayed to a pipe nobody reads: the flood and the requests beside it
    are answered, and the front's own log lines still find room (it stops cleanly)."""
    front, url = start_front(tmp_path, backend, stderr_unread=True)
    latencies: list[float] = []
    flooded: list[float] = []

    async def flood(client: httpx.AsyncClient) -> None:
        started = time.monotonic()
        response = await client.get(url + f"/flood?{50 * 2**20}")
        assert (response.status_code, response.text) == (200, "flooded")
        flooded.append(time.monotonic() - started)

    async def requests(client: httpx.AsyncClient) -> None:
        while not flooded:
            started = time.monotonic()
            assert (await client.get(url + "/")).text == "hello"
            latencies.append(time.monotonic() - started)

    async def load() -> None:
        async with httpx.AsyncClient(timeout=TIMEOUT) as client:
            assert (await client.get(url + "/")).text == "hello"  # the child is up
            with anyio.fail_after(TIMEOUT * 2):
                async with anyio.create_task_group() as task_group:
                    task_group.start_soon(flood, client)
                    task_group.start_soon(requests, client)
                for _ in range(3):
                    assert (await client.get(url + "/")).text == "hello"

    with front:
        anyio.run(load, backend=backend)
        assert front.stop() == 0
    assert flooded[0] < 10, f"the flood took {flooded[0]:.1f} s"
    assert latencies and max(latencies) < 2, f"slowest request {max(latencies):.2f} s"
