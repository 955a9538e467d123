"""Server declarations (hostkit_declare_servers) and the error for an unsupported choice."""

from __future__ import annotations

from pathlib import Path

import pytest

import hostkit
from hostkit import HostBuilder, HostingModel, ServerInfo, ServerSelectionError
from hostkit.configuration import load_configuration
from hostkit.plugin_manager import Plugins
from hostkit.server_contract import declared_servers

LIMITED = ServerInfo(name="Limited", hosting_models=["inprocess"],
                     async_backends=["AsyncIO"], url_schemes=["http"])


class LimitedServer:
    name = "limited"

    async def serve(self, app, stopping, *, task_status):  # type: ignore[no-untyped-def]
        task_status.started([])


class LimitedPlugin:
    """A plugin whose server serves InProcess, on asyncio, over http:// only."""

    @hostkit.hookimpl
    def hostkit_declare_servers(self) -> list[ServerInfo]:
        return [LIMITED]

    @hostkit.hookimpl
    def hostkit_create_server(self, hosting_model: HostingModel, server_name: str,
                              behind_module: bool) -> LimitedServer | None:
        if server_name != "limited" or (
                hosting_model is HostingModel.OUT_OF_PROCESS and not behind_module):
            return None  # the public side of OutOfProcess is the module's
        return LimitedServer()


def builder(tmp_path: Path, *args: str, plugin: object | None = None) -> HostBuilder:
    plugins = Plugins({})
    plugins.load_entry_points()
    plugins.register(plugin or LimitedPlugin(), "limited_plugin")
    return HostBuilder(load_configuration(["--server=limited", *args], {},
                                          content_root=tmp_path), plugins)


def test_server_info_is_normalised_and_validated() -> None:
    assert LIMITED.name == "limited"
    assert LIMITED.hosting_models == (HostingModel.IN_PROCESS,)
    assert LIMITED.async_backends == ("asyncio",)
    assert LIMITED.describe() == "InProcess; asyncio; http"
    with pytest.raises(ValueError, match="unknown async backend 'curio'; allowed: asyncio, trio"):
        ServerInfo(name="x", hosting_models=["InProcess"], async_backends=["curio"],
                   url_schemes=["http"])
    with pytest.raises(ValueError, match="url_schemes must not be empty"):
        ServerInfo(name="x", hosting_models=["InProcess"], async_backends=["trio"],
                   url_schemes=[])


def test_declared_combination_builds(tmp_path: Path) -> None:
    assert builder(tmp_path).build().server.name == "limited"


def test_unsupported_backend_names_server_backend_source_and_alternatives(
        tmp_path: Path) -> None:
    with pytest.raises(ServerSelectionError) as raised:
        builder(tmp_path, "--async_backend=trio").build()
    assert str(raised.value) == (
        "server 'limited' does not support async_backend 'trio' (set by command-line argument "
        "--async_backend=trio); it supports: asyncio; servers that support it: hypercorn")


def test_unsupported_hosting_model(tmp_path: Path) -> None:
    (tmp_path / "hostkit.toml").write_text('hosting_model = "OutOfProcess"\n')
    with pytest.raises(ServerSelectionError,
                       match=r"server 'limited' does not support hosting_model 'OutOfProcess' "
                             r"\(set by file .*hostkit.toml, line 1\); it supports: InProcess"):
        builder(tmp_path).build()


def test_unsupported_address_kind_suggests_the_module(tmp_path: Path) -> None:
    with pytest.raises(ServerSelectionError) as raised:
        builder(tmp_path, "--urls=unix:/tmp/limited.sock").build()
    message = str(raised.value)
    assert "server 'limited' cannot listen on 'unix:/tmp/limited.sock'" in message
    assert "it supports http:// addresses; servers that support it: " in message
    assert "hypercorn" in message.split("servers that support it: ")[1]
    assert message.endswith('with hosting_model = "OutOfProcess" the module listens on urls')


def test_out_of_process_front_checks_the_backend_its_child_gets(tmp_path: Path) -> None:
    both = ServerInfo(name="limited", hosting_models=["InProcess", "OutOfProcess"],
                      async_backends=["asyncio"], url_schemes=["http"])

    class Both(LimitedPlugin):
        @hostkit.hookimpl
        def hostkit_declare_servers(self) -> list[ServerInfo]:
            return [both]

    def front(*args: str) -> HostBuilder:
        return builder(tmp_path, "--hosting_model=OutOfProcess", "--async_backend=trio", *args,
                       plugin=Both())

    with pytest.raises(ServerSelectionError,
                       match="async_backend 'trio' in the out-of-process child"):
        front().build()
    # The child may be given its own backend: then the front cannot judge it.
    assert front("--module:arguments=--async_backend=asyncio").build().server.name == "module"


def test_no_server_lists_the_declared_ones(tmp_path: Path) -> None:
    with pytest.raises(ServerSelectionError, match=r"declared servers: .*hypercorn"):
        builder(tmp_path, "--server=nginx").build()


def test_first_declaration_of_a_name_wins() -> None:
    plugins = Plugins({})
    plugins.load_entry_points()
    assert declared_servers(plugins)["hypercorn"].async_backends == ("asyncio", "trio")


def test_serves_is_the_name_in_a_process_that_runs_the_pipeline() -> None:
    both = ServerInfo(name="x", hosting_models=["InProcess", "OutOfProcess"],
                      async_backends=["asyncio"], url_schemes=["http"])
    assert both.serves(HostingModel.IN_PROCESS, "x", behind_module=False)
    assert both.serves(HostingModel.OUT_OF_PROCESS, "x", behind_module=True)
    assert not both.serves(HostingModel.OUT_OF_PROCESS, "x", behind_module=False)  # the module
    assert not both.serves(HostingModel.IN_PROCESS, "y", behind_module=False)
