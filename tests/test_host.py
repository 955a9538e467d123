"""Host.run_async in this process: readiness, lifecycle hooks, stop(), lifespan, run-once."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import anyio
import httpx
import pytest

import hostkit
from hostkit.configuration import load_configuration
from hostkit.plugin_manager import Plugins

pytestmark = pytest.mark.anyio


def make_builder(tmp_path: Path, *args: str) -> hostkit.HostBuilder:
    plugins = Plugins({})
    plugins.load_entry_points()
    configuration = load_configuration(["--urls=http://127.0.0.1:0", *args], {},
                                       content_root=tmp_path)
    return hostkit.HostBuilder(configuration, plugins)


class Lifecycle:
    """Records the lifecycle hooks and runs a request once the host has started."""

    def __init__(self) -> None:
        self.events: list[str] = []
        self.started = anyio.Event()

    @hostkit.hookimpl
    def hostkit_host_started(self, host: hostkit.Host) -> None:
        self.events.append(f"started {len(host.urls)} url")
        self.started.set()

    @hostkit.hookimpl
    def hostkit_host_stopping(self, host: hostkit.Host) -> None:
        self.events.append("stopping")

    @hostkit.hookimpl
    def hostkit_host_stopped(self, host: hostkit.Host) -> None:
        self.events.append("stopped")


async def test_run_async_serves_until_stop_with_hooks_and_lifespan(tmp_path: Path) -> None:
    lifespan_events: list[str] = []

    async def app(scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] == "lifespan":
            while True:
                message = await receive()
                lifespan_events.append(message["type"])
                reply = message["type"] + ".complete"
                await send({"type": reply})
                if message["type"] == "lifespan.shutdown":
                    return
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"in-process host"})

    lifecycle = Lifecycle()
    host = make_builder(tmp_path).use_app(app).add_plugin(lifecycle, "lifecycle").build()
    assert host.hosting_model is hostkit.HostingModel.IN_PROCESS
    with anyio.fail_after(15):
        async with anyio.create_task_group() as task_group:
            task_group.start_soon(host.run_async)
            await lifecycle.started.wait()
            async with httpx.AsyncClient() as client:
                response = await client.get(host.urls[0])
            host.stop()
    assert response.text == "in-process host"
    assert lifecycle.events == ["started 1 url", "stopping", "stopped"]
    assert lifespan_events == ["lifespan.startup", "lifespan.shutdown"]


async def test_stop_before_run_stops_right_after_start(tmp_path: Path) -> None:
    lifecycle = Lifecycle()
    host = make_builder(tmp_path).add_plugin(lifecycle, "lifecycle").build()
    host.stop()
    with anyio.fail_after(15):
        await host.run_async()
    assert lifecycle.events == ["started 1 url", "stopping", "stopped"]


async def test_address_in_use_raises_before_started(tmp_path: Path) -> None:
    import socket

    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        lifecycle = Lifecycle()
        host = make_builder(tmp_path, f"--urls=http://127.0.0.1:{port}").add_plugin(
            lifecycle, "lifecycle").build()
        with anyio.fail_after(15), pytest.raises(hostkit.AddressInUseError, match=str(port)):
            await host.run_async()
    assert lifecycle.events == []


async def test_a_host_runs_once_at_a_time(tmp_path: Path) -> None:
    lifecycle = Lifecycle()
    host = make_builder(tmp_path).add_plugin(lifecycle, "lifecycle").build()
    with anyio.fail_after(15):
        async with anyio.create_task_group() as task_group:
            task_group.start_soon(host.run_async)
            await lifecycle.started.wait()
            with pytest.raises(hostkit.InvalidOperationError):
                await host.run_async()
            host.stop()
