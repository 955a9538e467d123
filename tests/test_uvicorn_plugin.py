"""The third-party sample plugin hostkit-uvicorn (samples/hostkit_uvicorn), installed in the
test environment like any plugin: discoverable, traced, refusing trio clearly, and serving
the child of an out-of-process front that itself runs on trio.

Its conformance run is samples/hostkit_uvicorn/tests (the kit covers both hosting models).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import anyio
import httpx
import pytest

import hostkit
from hostkit.testing import Program, python, write_settings

TIMEOUT = 15


def run(*args: str, cwd: Path, env: dict[str, str] | None = None
        ) -> subprocess.CompletedProcess[str]:
    clean = {k: v for k, v in os.environ.items() if not k.startswith("HOSTKIT_")}
    return subprocess.run([sys.executable, *args], capture_output=True, text=True,
                          timeout=60, cwd=cwd, env={**clean, **(env or {})})


def test_hostkit_plugins_shows_it_with_version_hooks_and_server(tmp_path: Path) -> None:
    result = run("-m", "hostkit", "plugins", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    start = lines.index("hostkit_uvicorn (hostkit-uvicorn 0.1.0)")
    assert lines[start + 1:start + 3] == ["    hostkit_create_server",
                                          "    hostkit_declare_servers"]
    assert "    uvicorn: InProcess, OutOfProcess; asyncio; http, unix" in lines


def test_trace_plugins_prints_its_hook_calls_and_results(tmp_path: Path) -> None:
    code = "import hostkit; hostkit.Host.create_default_builder(['--server=uvicorn']).build()"
    result = run("-c", code, cwd=tmp_path, env={"HOSTKIT_TRACE_PLUGINS": "1"})
    assert result.returncode == 0, result.stderr
    trace = result.stderr.splitlines()
    declare = next(line for line in trace if "hostkit_declare_servers(" in line)
    create = next(line for line in trace if "hostkit_create_server(" in line)
    for call in (declare, create):
        assert "hostkit_uvicorn" in call and "hostkit_inprocess" in call
    assert any("hostkit_declare_servers result: " in line and "name='uvicorn'" in line
               for line in trace)
    assert any(line.startswith("hostkit trace: hostkit_create_server result: "
                               "<hostkit_uvicorn.server.UvicornServer") for line in trace)


def test_trio_with_uvicorn_is_one_clear_line(tmp_path: Path) -> None:
    result = run("-m", "hostkit.testing.probe", "--server=uvicorn", "--async_backend=trio",
                 "--urls=http://127.0.0.1:0", cwd=tmp_path)
    assert result.returncode == 1
    assert result.stderr.strip() == (
        "hostkit: error: server 'uvicorn' does not support async_backend 'trio' (set by "
        "command-line argument --async_backend=trio); it supports: asyncio; servers that "
        "support it: hypercorn")


def test_run_async_under_trio_is_refused_by_the_server(tmp_path: Path) -> None:
    """An embedding program that runs an asyncio-configured host on trio itself."""
    async def app(scope: object, receive: object, send: object) -> None: ...

    host = hostkit.Host.create_default_builder(
        ["--server=uvicorn", "--urls=http://127.0.0.1:0", f"--content_root={tmp_path}"]
    ).use_app(app).build()
    with pytest.raises(hostkit.ServerSelectionError,
                       match="server 'uvicorn' runs on asyncio only, and this host runs on "
                             "'trio'"):
        anyio.run(host.run_async, backend="trio")


def test_the_kit_runs_against_it_from_the_command_line(tmp_path: Path) -> None:
    result = run("-m", "pytest", "--pyargs", "hostkit.testing.suite",
                 "--hostkit-server=uvicorn", "--collect-only", "-q", "-p", "no:cacheprovider",
                 cwd=tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr
    collected = [line for line in result.stdout.splitlines() if "::" in line]
    assert len(collected) == 15, result.stdout
    assert all("[uvicorn-asyncio]" in line for line in collected if line.endswith("]"))


@pytest.fixture(scope="module")
def trio_front(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Program, str]]:
    """An out-of-process front on trio whose child runs uvicorn on asyncio."""
    root = tmp_path_factory.mktemp("trio-front")
    write_settings(root, {
        "hosting_model": "OutOfProcess", "async_backend": "trio", "shutdown_timeout": 5,
        "server": {"name": "uvicorn"},
        "module": {"shutdown_time_limit": 3,
                   "environment_variables": {"HOSTKIT_ASYNC_BACKEND": "asyncio"}}})
    with Program(python("-m", "hostkit.testing.probe", "--urls=http://127.0.0.1:0"),
                 cwd=root) as front:
        (url,) = front.wait_started(TIMEOUT)
        yield front, url


@pytest.mark.anyio
@pytest.mark.integration
async def test_trio_front_with_a_uvicorn_child(trio_front: tuple[Program, str]) -> None:
    front, url = trio_front
    async with httpx.AsyncClient(timeout=TIMEOUT) as client:
        features = (await client.get(url + "/features")).json()
    assert "async backend: trio" in front.output
    assert (features["hosting_model"], features["server"], features["async_library"]) == \
        ("OutOfProcess", "uvicorn", "asyncio")
    assert features["process_id"] != front.pid
    assert json.dumps(features["lifespan_state"]) == '{"probe": "started"}'
