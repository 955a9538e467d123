"""Plugins: per-host managers, entry points, autoload opt-out, the plugins key, hooks."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path

import pytest

import hostkit
from hostkit import ConfigurationError, HostBuilder, ServerSelectionError
from hostkit.configuration import load_configuration
from hostkit.environment import flag_is_set
from hostkit.plugin_manager import Plugins

ROOT = Path(__file__).resolve().parent.parent


def builder(tmp_path: Path, *args: str, environ: dict[str, str] | None = None,
            autoload: bool = True) -> HostBuilder:
    plugins = Plugins(environ or {})
    if autoload:
        plugins.load_entry_points()
    configuration = load_configuration(list(args), environ or {}, content_root=tmp_path)
    plugins.load_modules(configuration.options.plugins, "plugins")
    return HostBuilder(configuration, plugins)


@pytest.fixture
def third_party(tmp_path: Path) -> Iterator[Path]:
    """A real installed third-party plugin: a module plus a dist-info with an entry point."""
    site = tmp_path / "site"
    (site / "thirdparty_plugin.py").parent.mkdir(parents=True)
    (site / "thirdparty_plugin.py").write_text(textwrap.dedent("""
        import hostkit

        class EchoServer:
            name = "echo"
            async def serve(self, app, stopping, *, task_status):
                task_status.started(["echo://"])

        @hostkit.hookimpl
        def hostkit_create_server(request):
            if request.server_name == "echo":
                return EchoServer()
    """))
    dist = site / "thirdparty_plugin-2.5.0.dist-info"
    dist.mkdir()
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: thirdparty-plugin\n"
                                   "Version: 2.5.0\n")
    (dist / "entry_points.txt").write_text("[hostkit]\nthirdparty = thirdparty_plugin\n")
    sys.path.insert(0, str(site))
    try:
        yield site
    finally:
        sys.path.remove(str(site))
        sys.modules.pop("thirdparty_plugin", None)


def test_builtin_plugin_comes_from_the_entry_point_group(tmp_path: Path) -> None:
    infos = {info.name: info for info in builder(tmp_path).plugins.describe()}
    inprocess = infos["hostkit_inprocess"]
    assert inprocess.distribution == "hostkit"
    assert inprocess.version == hostkit.__version__
    assert "hostkit_create_server" in inprocess.hooks


def test_third_party_entry_point_is_loaded_and_selectable(tmp_path: Path,
                                                          third_party: Path) -> None:
    built = builder(tmp_path, "--server=echo")
    info = {i.name: i for i in built.plugins.describe()}["thirdparty"]
    assert (info.distribution, info.version) == ("thirdparty-plugin", "2.5.0")
    host = built.build()
    assert host.server.name == "echo"


def test_disable_autoload_keeps_builtins_and_skips_third_party(tmp_path: Path,
                                                               third_party: Path) -> None:
    built = builder(tmp_path, environ={"HOSTKIT_DISABLE_PLUGIN_AUTOLOAD": "1"})
    names = built.plugins.names()
    assert "hostkit_inprocess" in names
    assert "thirdparty" not in names


def test_disable_autoload_set_to_0_is_not_set_anywhere(
        tmp_path: Path, third_party: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    assert not flag_is_set({"HOSTKIT_DISABLE_PLUGIN_AUTOLOAD": "0"},
                           "HOSTKIT_DISABLE_PLUGIN_AUTOLOAD")
    monkeypatch.setenv("HOSTKIT_DISABLE_PLUGIN_AUTOLOAD", "0")
    built = builder(tmp_path, "--server=nosuch", environ={"HOSTKIT_DISABLE_PLUGIN_AUTOLOAD": "0"})
    assert "thirdparty" in built.plugins.names()
    with pytest.raises(ServerSelectionError) as raised:
        built.build()
    assert "HOSTKIT_DISABLE_PLUGIN_AUTOLOAD" not in str(raised.value)
    monkeypatch.setenv("HOSTKIT_DISABLE_PLUGIN_AUTOLOAD", "1")
    with pytest.raises(ServerSelectionError, match="HOSTKIT_DISABLE_PLUGIN_AUTOLOAD is set"):
        builder(tmp_path, "--server=nosuch").build()


def test_plugins_key_loads_modules_even_without_autoload(tmp_path: Path,
                                                         third_party: Path) -> None:
    built = builder(tmp_path, "--plugins=thirdparty_plugin", "--server=echo",
                    environ={"HOSTKIT_DISABLE_PLUGIN_AUTOLOAD": "1"})
    assert built.build().server.name == "echo"


def test_plugins_key_with_missing_module_is_a_configuration_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigurationError, match=r"plugin module 'no_such_plugin_x'"):
        builder(tmp_path, "--plugins=no_such_plugin_x")


def test_each_host_has_its_own_plugin_manager(tmp_path: Path) -> None:
    class Marker:
        @hostkit.hookimpl
        def hostkit_host_started(self, host: hostkit.Host) -> None: ...

    first, second = builder(tmp_path), builder(tmp_path)
    first.add_plugin(Marker(), name="marker")
    assert "marker" in first.plugins.names()
    assert "marker" not in second.plugins.names()


def test_misspelled_hook_fails_loudly_at_build(tmp_path: Path) -> None:
    class Typo:
        @hostkit.hookimpl
        def hostkit_create_sever(self) -> None: ...

    with pytest.raises(ConfigurationError, match="hostkit_create_sever"):
        builder(tmp_path).add_plugin(Typo(), name="typo").build()


def test_no_server_names_model_server_and_loaded_plugins(tmp_path: Path) -> None:
    with pytest.raises(ServerSelectionError) as raised:
        builder(tmp_path, "--server=gunicorn").build()
    message = str(raised.value)
    assert "'InProcess'" in message and "'gunicorn'" in message
    assert "hostkit_inprocess" in message


def test_out_of_process_without_module_plugin_is_a_clear_error(tmp_path: Path) -> None:
    import hostkit_inprocess

    only_inprocess = builder(tmp_path, "--hosting_model=OutOfProcess", autoload=False)
    only_inprocess.add_plugin(hostkit_inprocess, "hostkit_inprocess")
    with pytest.raises(ServerSelectionError,
                       match=r"'OutOfProcess' with server 'hypercorn'.*hostkit_inprocess"):
        only_inprocess.build()


def test_out_of_process_front_is_the_module(tmp_path: Path) -> None:
    host = builder(tmp_path, "--hosting_model=OutOfProcess").build()
    assert host.server.name == "module"
    assert host.hosting_model is hostkit.HostingModel.OUT_OF_PROCESS


def test_plugin_settings_table_is_validated(tmp_path: Path) -> None:
    @hostkit.hookimpl
    def hostkit_add_settings_tables() -> list[hostkit.SettingsTable]:
        return [TABLE]

    import dataclasses

    from hostkit.configuration.tables import Number

    @dataclasses.dataclass(frozen=True)
    class WidgetOptions:
        size: int = hostkit.setting(3, Number(1, integer=True), "widget size")

    TABLE = hostkit.SettingsTable("widget", WidgetOptions)
    plugin = type("P", (), {"hostkit_add_settings_tables": staticmethod(
        hostkit_add_settings_tables)})
    good = builder(tmp_path, "--widget:size=5").add_plugin(plugin, "widget")
    assert good.configuration.bind(TABLE).size == 5
    good.build()
    with pytest.raises(ConfigurationError, match=r"--widget:size=0.*at least 1"):
        builder(tmp_path, "--widget:size=0").add_plugin(plugin, "widget").build()
    with pytest.raises(ConfigurationError, match=r"unknown key 'widget.colour'"):
        builder(tmp_path, "--widget:colour=red").add_plugin(plugin, "widget").build()


def test_build_runs_once(tmp_path: Path) -> None:
    built = builder(tmp_path)
    built.build()
    with pytest.raises(hostkit.InvalidOperationError):
        built.build()


def run_cli(*args: str, env: dict[str, str] | None = None, cwd: Path = ROOT
            ) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "hostkit", *args], capture_output=True,
                          text=True, timeout=60, cwd=cwd, env=env)


def test_hostkit_plugins_lists_name_version_and_hooks(tmp_path: Path) -> None:
    result = run_cli("plugins", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert f"hostkit_inprocess (hostkit {hostkit.__version__})" in result.stdout
    assert "    hostkit_create_server" in result.stdout


def test_trace_plugins_prints_every_hook_call(tmp_path: Path) -> None:
    import os

    env = {**os.environ, "HOSTKIT_TRACE_PLUGINS": "1"}
    code = ("import hostkit; b = hostkit.Host.create_default_builder([]); b.build()")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                            timeout=60, cwd=tmp_path, env=env)
    assert result.returncode == 0, result.stderr
    assert "hostkit trace: hostkit_create_server(" in result.stderr
    assert "hostkit_inprocess" in result.stderr.split("hostkit_create_server(")[1].split("\n")[0]
    assert "result: <hostkit_inprocess.server.HypercornServer" in result.stderr


def test_hostkit_config_prints_values_with_sources(tmp_path: Path) -> None:
    (tmp_path / "hostkit.toml").write_text('hosting_model = "OutOfProcess"\n')
    result = run_cli("config", "--shutdown_timeout=4", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert f'hosting_model = "OutOfProcess"  # file {tmp_path / "hostkit.toml"}, line 1' \
        in result.stdout
    assert "shutdown_timeout = 4  # command-line argument --shutdown_timeout=4" in result.stdout
    assert 'async_backend = "asyncio"  # default' in result.stdout


def test_hostkit_config_error_is_one_line(tmp_path: Path) -> None:
    result = run_cli("config", "--hosting_model=nope", cwd=tmp_path)
    assert result.returncode == 1
    assert result.stderr.strip().count("\n") == 0
    assert "'nope'" in result.stderr and "OutOfProcess" in result.stderr
