"""Server declarations (hostkit_declare_servers) and the error for an unsupported choice."""

from __future__ import annotations

from pathlib import Path

import pytest

import hostkit
import hostkit_inprocess
from hostkit import HostBuilder, HostingModel, ServerInfo, ServerSelectionError
from hostkit.configuration import load_configuration
from hostkit.plugin import HostRole, ServerRequest
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
    def hostkit_create_server(self, request: ServerRequest) -> LimitedServer | None:
        if request.server_name != "limited" or request.role is HostRole.FRONT:
            return None  # the public side of OutOfProcess is the module's
        return LimitedServer()


class BothModelsPlugin(LimitedPlugin):
    """The same server, declared for both models (still asyncio and http:// only)."""

    @hostkit.hookimpl
    def hostkit_declare_servers(self) -> list[ServerInfo]:
        return [ServerInfo(name="limited", hosting_models=["InProcess", "OutOfProcess"],
                           async_backends=["asyncio"], url_schemes=["http"])]


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


@pytest.mark.parametrize("child_setting", [
    '--module:arguments=["app.py", "--server", "hypercorn"]',
    '--module:arguments=["app.py", "--server=hypercorn"]',
    '--module:environment_variables={HOSTKIT_SERVER__NAME = "hypercorn"}',
    '--module:environment_variables={HOSTKIT_SERVER = "hypercorn"}',
])
def test_the_front_reads_its_childs_settings_as_the_child_will(
        tmp_path: Path, child_setting: str) -> None:
    """Every spelling the configuration loader accepts counts: the child runs hypercorn on
    trio, which it supports, although the front names a server that does not."""
    front = builder(tmp_path, "--hosting_model=OutOfProcess", "--async_backend=trio",
                    child_setting, plugin=BothModelsPlugin())
    assert front.build().server.name == "module"


def test_the_front_refuses_a_server_its_child_is_given_but_cannot_run(tmp_path: Path) -> None:
    front = builder(tmp_path, "--hosting_model=OutOfProcess", "--async_backend=trio",
                    "--server=hypercorn", '--module:arguments=["app.py", "--server", "limited"]',
                    plugin=BothModelsPlugin())
    with pytest.raises(ServerSelectionError, match=r"server 'limited' does not support "
                       r"async_backend 'trio' in the out-of-process child"):
        front.build()


def test_no_server_lists_the_declared_ones(tmp_path: Path) -> None:
    with pytest.raises(ServerSelectionError, match=r"declared servers: .*hypercorn"):
        builder(tmp_path, "--server=nginx").build()


def test_first_declaration_of_a_name_wins() -> None:
    plugins = Plugins({})
    plugins.load_entry_points()
    assert declared_servers(plugins)["hypercorn"].async_backends == ("asyncio", "trio")


def test_only_a_front_runs_no_pipeline_and_only_a_child_owns_no_public_listener() -> None:
    assert HostRole.SERVE.runs_pipeline and HostRole.CHILD.runs_pipeline
    assert not HostRole.FRONT.runs_pipeline
    assert HostRole.SERVE.owns_public_listener and HostRole.FRONT.owns_public_listener
    assert not HostRole.CHILD.owns_public_listener


@pytest.mark.parametrize(("arguments", "environ", "role"), [
    ([], {}, HostRole.SERVE),
    (["--hosting_model=OutOfProcess"], {}, HostRole.FRONT),
    (["--hosting_model=OutOfProcess"],
     {"HOSTKIT_PORT": "5001", "HOSTKIT_TOKEN": "t", "HOSTKIT_PATH_BASE": "/"}, HostRole.CHILD),
])
def test_the_role_follows_the_model_and_the_child_contract(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, arguments: list[str],
        environ: dict[str, str], role: HostRole) -> None:
    for name, value in environ.items():
        monkeypatch.setenv(name, value)
    host = HostBuilder(load_configuration(arguments, {}, content_root=tmp_path),
                       _builtin_plugins()).build()
    assert host.role is role


def test_no_role_for_out_of_process_without_its_plugin_is_an_error(tmp_path: Path) -> None:
    plugins = Plugins({})
    plugins.register(hostkit_inprocess, "hostkit_inprocess")
    configuration = load_configuration(["--hosting_model=OutOfProcess"], {},
                                       content_root=tmp_path)
    with pytest.raises(ServerSelectionError, match=r"no plugin hosts hosting model "
                       r"'OutOfProcess'.*loaded plugins: hostkit_inprocess"):
        HostBuilder(configuration, plugins).build()


def _builtin_plugins() -> Plugins:
    plugins = Plugins({})
    plugins.load_entry_points()
    return plugins
