"""The ``event_loop`` setting: which loop each process really runs, and the one decision.

The integration tests start real programs (InProcess, an OutOfProcess front and its child, a
supervisor and its workers) and ask the app which loop it runs on: the app reads the running
loop's class, not hostkit's settings. Their clients are synchronous, so they run once each.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import httpx
import pytest

from hostkit.event_loop import EventLoop, EventLoopError, choose_event_loop
from hostkit.testing import Program, python, write_settings
from tests.support.fronts import child_log, child_program, front_settings
from tests.support.paths import PROGRAMS

APP = PROGRAMS / "event_loop_app.py"
TIMEOUT = 15
#: What every host logs once it serves, naming the loop it runs on.
ON_UVLOOP = "async backend: asyncio (uvloop)"


def start(root: Path, *args: str) -> Program:
    """:data:`APP` in ``root`` (its ``hostkit.toml``) on a free port, started."""
    program = Program(python(str(APP), "--urls=http://127.0.0.1:0", *args), cwd=root)
    try:
        program.wait_started()
    except AssertionError:
        program.stop()
        raise
    return program


def answer(program: Program) -> dict[str, Any]:
    """The app's answer to ``GET /`` (which must be 200): ``loop`` and ``pid``."""
    with httpx.Client(timeout=TIMEOUT) as client:
        response = client.get(program.urls[0] + "/")
    assert response.status_code == 200, response.text
    return json.loads(response.text)  # type: ignore[no-any-return]


# -- the decision ----------------------------------------------------------------------------


@pytest.mark.parametrize("backend, event_loop, expected", [
    ("asyncio", "asyncio", EventLoop("asyncio")),
    ("asyncio", "uvloop", EventLoop("asyncio", uvloop=True)),
    ("asyncio", "auto", EventLoop("asyncio", uvloop=True)),
    ("trio", "auto", EventLoop("trio")),
    ("trio", "asyncio", EventLoop("trio")),
])
def test_the_settings_choose_the_loop(backend: str, event_loop: str,
                                      expected: EventLoop) -> None:
    chosen = choose_event_loop(backend, event_loop)
    assert chosen == expected
    assert chosen.backend_options == ({"use_uvloop": True} if expected.uvloop else {})


def test_without_uvloop_auto_is_the_standard_library_loop_and_uvloop_an_error(
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "uvloop", None)  # import uvloop now raises ImportError
    assert choose_event_loop("asyncio", "auto") == EventLoop("asyncio")
    with pytest.raises(EventLoopError, match=r"pip install 'hostkit\[uvloop\]'"):
        choose_event_loop("asyncio", "uvloop")


def test_uvloop_cannot_run_trio() -> None:
    with pytest.raises(EventLoopError, match="asyncio event loop"):
        choose_event_loop("trio", "uvloop")


# -- real processes --------------------------------------------------------------------------


@pytest.mark.integration
@pytest.mark.parametrize("backend, event_loop, expected", [
    ("asyncio", "uvloop", "uvloop"),
    ("asyncio", "auto", "uvloop"),  # uvloop is installed with the test extra
    ("asyncio", "asyncio", "asyncio"),
    ("trio", "auto", "trio"),
])
def test_an_inprocess_host_runs_the_loop_chosen(tmp_path: Path, backend: str, event_loop: str,
                                                expected: str) -> None:
    write_settings(tmp_path, {"hosting_model": "InProcess", "shutdown_timeout": 2,
                              "event_loop": event_loop})
    with start(tmp_path, f"--async_backend={backend}") as program:
        body = answer(program)
        assert body == {"loop": expected, "pid": program.pid}
        assert (ON_UVLOOP in program.output) is (expected == "uvloop")


@pytest.mark.integration
def test_the_front_and_its_child_run_on_uvloop(tmp_path: Path) -> None:
    write_settings(tmp_path, front_settings(module=child_program(APP), event_loop="uvloop"))
    with start(tmp_path) as front:
        body = answer(front)
        assert body["loop"] == "uvloop"
        assert body["pid"] in [pid for pid, _ in front.started_children()]
        assert ON_UVLOOP in front.output  # the front's own line
        front.wait_until(lambda: ON_UVLOOP in child_log(tmp_path), TIMEOUT, "the child's line")


@pytest.mark.integration
def test_a_supervisor_and_its_workers_run_on_uvloop(tmp_path: Path) -> None:
    write_settings(tmp_path, {"shutdown_timeout": 2, "workers": {"processes": 2}})
    with start(tmp_path, "--event_loop=uvloop") as supervisor:
        supervisor.wait_workers_ready(2)
        body = answer(supervisor)
        assert body["loop"] == "uvloop"
        assert body["pid"] != supervisor.pid
        # the supervisor's line and each worker's ("INFO: [pid] hostkit.host: ...")
        supervisor.wait_for_count(ON_UVLOOP, 3, TIMEOUT)


@pytest.mark.integration
def test_trio_with_uvloop_stops_the_program_naming_the_key(tmp_path: Path) -> None:
    write_settings(tmp_path, {"async_backend": "trio", "event_loop": "uvloop"})
    with Program(python(str(APP), "--urls=http://127.0.0.1:0"), cwd=tmp_path) as program:
        assert program.wait_exit(TIMEOUT) == 1
    error = next(line for line in program.lines if line.startswith("hostkit: error:"))
    assert f"file {tmp_path / 'hostkit.toml'}, line 2" in error
    assert "event_loop = 'uvloop' cannot run with async_backend = 'trio'" in error
