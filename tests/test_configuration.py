"""Configuration: sources and precedence, case-insensitivity, validation and its messages."""

from __future__ import annotations

import dataclasses
import re
import sys
import textwrap
from collections.abc import Mapping, Sequence
from pathlib import Path

import pytest
from hostkit_outofprocess.options import INTEGRATION_TABLE, MODULE_TABLE

from hostkit import ConfigurationError, HostEnvironment, HostingModel
from hostkit._compat import tomllib
from hostkit.cli import format_entry, print_config
from hostkit.configuration import Configuration, load_configuration, resolve_path
from hostkit.configuration.key_lines import key_lines
from hostkit.configuration.reference import builtin_plugin_tables, render_example
from hostkit.configuration.sources import CODE_SOURCE, configuration_files
from hostkit.configuration.tables import (
    HOST_TABLES,
    Number,
    ServerOptions,
    SettingsTable,
    Text,
    TextTable,
    setting,
)
from hostkit.environment import is_development

ROOT = Path(__file__).resolve().parent.parent

# The OutOfProcess plugin's tables, as every host has them once built.
PLUGIN_TABLES = (INTEGRATION_TABLE, MODULE_TABLE)


def write(folder: Path, name: str, text: str) -> Path:
    path = folder / name
    path.write_text(text)
    return path


def load(args: Sequence[str] = (), environ: Mapping[str, str] | None = None, *,
         content_root: Path) -> Configuration:
    """:func:`load_configuration` with the OutOfProcess plugin's tables in the schema."""
    return load_configuration(args, environ or {}, content_root=content_root
                              ).with_tables(PLUGIN_TABLES)


@dataclasses.dataclass(frozen=True)
class WidgetOptions:
    size: int = setting(3, Number(1, integer=True), "widgets kept")
    labels: Mapping[str, str] = setting({}, TextTable(), "a label per widget")
    api_key: str = setting("", Text(), "the widget service's key", secret=True)


# A third-party plugin's table, declared as a plugin declares one.
WIDGET_TABLE = SettingsTable("widget", WidgetOptions, "Widgets")


def test_defaults_without_any_source(tmp_path: Path) -> None:
    configuration = load([], {}, content_root=tmp_path)
    options = configuration.options
    assert options.hosting_model is HostingModel.IN_PROCESS
    assert options.urls == ("http://127.0.0.1:5000",)
    assert options.async_backend == "asyncio"
    assert options.event_loop == "auto"
    assert options.server == "hypercorn"
    assert options.shutdown_timeout == 30
    assert options.server_options.max_request_body_size == 30_000_000
    assert options.server_options.allow_synchronous_io is False
    assert configuration.bind(MODULE_TABLE).startup_time_limit == 120
    assert configuration.bind(MODULE_TABLE).app_offline_file == "app_offline.htm"
    assert options.authentication.automatic_authentication is True
    assert configuration.bind(INTEGRATION_TABLE).forward_client_certificate is True


def test_precedence_file_environment_file_variables_arguments(tmp_path: Path) -> None:
    write(tmp_path, "hostkit.toml",
          "shutdown_timeout = 1\n[module]\nstartup_time_limit = 1\nrequest_timeout = 1\n"
          "rapid_fails_per_minute = 1\n")
    write(tmp_path, "hostkit.Staging.toml",
          "[module]\nstartup_time_limit = 2\nrequest_timeout = 2\nrapid_fails_per_minute = 2\n")
    environ = {"HOSTKIT_ENVIRONMENT": "Staging", "HOSTKIT_MODULE__REQUEST_TIMEOUT": "3",
               "HOSTKIT_MODULE__RAPID_FAILS_PER_MINUTE": "3"}
    configuration = load(["--module:rapid_fails_per_minute=4"], environ, content_root=tmp_path)
    module = configuration.bind(MODULE_TABLE)
    assert configuration.options.shutdown_timeout == 1
    assert module.startup_time_limit == 2
    assert module.request_timeout == 3
    assert module.rapid_fails_per_minute == 4
    assert configuration.environment_name == "Staging"
    assert str(configuration.source_of("module.startup_time_limit")).endswith(
        "hostkit.Staging.toml, line 2")
    assert str(configuration.source_of("module.request_timeout")) == \
        "environment variable HOSTKIT_MODULE__REQUEST_TIMEOUT"
    assert str(configuration.source_of("module.rapid_fails_per_minute")) == \
        "command-line argument --module:rapid_fails_per_minute=4"


def test_keys_and_hosting_model_are_case_insensitive(tmp_path: Path) -> None:
    write(tmp_path, "hostkit.toml", 'Hosting_Model = "outofprocess"\n[MODULE]\nEager_Start = true\n')
    configuration = load([], {"hostkit_Module__Path_Base": "/app"}, content_root=tmp_path)
    options = configuration.options
    assert options.hosting_model is HostingModel.OUT_OF_PROCESS
    assert configuration.bind(MODULE_TABLE).eager_start is True
    assert configuration.bind(MODULE_TABLE).path_base == "/app"


def test_environment_file_name_matches_case_insensitively(tmp_path: Path) -> None:
    write(tmp_path, "hostkit.development.toml", "shutdown_timeout = 7\n")
    options = load_configuration(["--environment=Development"], {}, content_root=tmp_path).options
    assert options.shutdown_timeout == 7


def test_content_root_from_argument_and_variable(tmp_path: Path) -> None:
    write(tmp_path, "hostkit.toml", "shutdown_timeout = 9\n")
    by_argument = load_configuration([f"--content_root={tmp_path}"], {})
    by_variable = load_configuration([], {"HOSTKIT_CONTENT_ROOT": str(tmp_path)})
    assert by_argument.options.shutdown_timeout == by_variable.options.shutdown_timeout == 9
    assert by_argument.content_root == tmp_path.resolve()


def test_text_values_from_variables_and_arguments(tmp_path: Path) -> None:
    environ = {
        "HOSTKIT_URLS": "http://127.0.0.1:1;http://127.0.0.1:2",
        "HOSTKIT_SERVER__ALLOW_SYNCHRONOUS_IO": "yes",
        "HOSTKIT_MODULE__ENVIRONMENT_VARIABLES": '{ GREETING = "hi" }',
    }
    configuration = load(["--plugins", "a.b, c", '--module:arguments=["x", "y"]'],
                         environ, content_root=tmp_path)
    options = configuration.options
    assert options.urls == ("http://127.0.0.1:1", "http://127.0.0.1:2")
    assert options.server_options.allow_synchronous_io is True
    assert configuration.bind(MODULE_TABLE).environment_variables == {"GREETING": "hi"}
    assert options.plugins == ("a.b", "c")
    assert configuration.bind(MODULE_TABLE).arguments == ("x", "y")


def test_server_name_and_server_table_in_one_file(tmp_path: Path) -> None:
    write(tmp_path, "hostkit.toml", '[server]\nname = "custom"\nkeep_alive_timeout = 2\n')
    options = load_configuration([], {}, content_root=tmp_path).options
    assert options.server == "custom"
    assert options.server_options.keep_alive_timeout == 2


def test_app_tables_pass_through_untouched(tmp_path: Path) -> None:
    write(tmp_path, "hostkit.toml", '[MyApp]\nGreeting = "hello"\nlimits = [1, 2]\n'
                                    "[MyApp.Nested]\ndepth = 3\n")
    configuration = load_configuration(["--myapp:greeting=override"],
                                       {"HOSTKIT_MYAPP__NESTED__DEPTH": "4"},
                                       content_root=tmp_path)
    assert configuration.get("myapp.greeting") == "override"
    assert configuration["MyApp.limits"] == [1, 2]
    assert configuration.get("myapp.nested.depth") == "4"  # text from a variable, as in ASP.NET
    assert configuration.get("myapp.missing", "fallback") == "fallback"
    assert "myapp" in configuration


def test_malformed_toml_names_file_and_line(tmp_path: Path) -> None:
    path = write(tmp_path, "hostkit.toml", 'urls = ["http://127.0.0.1:1"]\n[server\n')
    with pytest.raises(ConfigurationError, match=rf"{re.escape(str(path))}.*line 2"):
        load_configuration([], {}, content_root=tmp_path)


def test_unknown_hosting_model_names_both_valid_values(tmp_path: Path) -> None:
    write(tmp_path, "hostkit.toml", 'hosting_model = "sideways"\n')
    with pytest.raises(ConfigurationError) as raised:
        load_configuration([], {}, content_root=tmp_path)
    message = str(raised.value)
    assert "hostkit.toml, line 1" in message
    assert "'sideways'" in message and "InProcess" in message and "OutOfProcess" in message


@pytest.mark.parametrize("text, key, value, allowed", [
    ("shutdown_timeout = -1\n", "shutdown_timeout", "-1", "a number at least 0"),
    ('shutdown_timeout = "soon"\n', "shutdown_timeout", "'soon'", "a number at least 0"),
    ("[server]\nmax_request_body_size = 1.5\n", "server.max_request_body_size", "1.5",
     "a whole number"),
    ("[module]\nprocesses_per_application = 0\n", "module.processes_per_application", "0",
     "at least 1"),
    ('async_backend = "curio"\n', "async_backend", "'curio'", '"asyncio" or "trio"'),
    ('event_loop = "tokio"\n', "event_loop", "'tokio'", '"auto" or "asyncio" or "uvloop"'),
    ('urls = ["ftp://x"]\n', "urls", "['ftp://x']", "http://HOST:PORT"),
    ("[server]\nallow_synchronous_io = 1\n", "server.allow_synchronous_io", "1",
     "true or false"),
    ('[module]\npath_base = "app"\n', "module.path_base", "'app'", "starting with '/'"),
])
def test_wrong_value_in_file_names_file_key_value_and_allowed(
        tmp_path: Path, text: str, key: str, value: str, allowed: str) -> None:
    write(tmp_path, "hostkit.toml", text)
    with pytest.raises(ConfigurationError) as raised:
        load([], {}, content_root=tmp_path)
    message = str(raised.value)
    assert str(tmp_path / "hostkit.toml") in message
    assert repr(key) in message
    assert value in message
    assert allowed in message


def test_wrong_value_in_variable_and_argument_names_them(tmp_path: Path) -> None:
    with pytest.raises(ConfigurationError,
                       match=r"environment variable HOSTKIT_SHUTDOWN_TIMEOUT.*'never'"):
        load_configuration([], {"HOSTKIT_SHUTDOWN_TIMEOUT": "never"}, content_root=tmp_path)
    with pytest.raises(ConfigurationError,
                       match=r"command-line argument --server:keep_alive_timeout=-2.*at least 0"):
        load_configuration(["--server:keep_alive_timeout=-2"], {}, content_root=tmp_path)


def test_unknown_keys_in_hostkit_tables_are_errors(tmp_path: Path) -> None:
    write(tmp_path, "hostkit.toml", "[module]\nstartup_time_limt = 5\n")
    with pytest.raises(ConfigurationError, match=r"unknown key 'module.startup_time_limt'.*"
                                                 r"allowed: .*startup_time_limit"):
        load([], {}, content_root=tmp_path)
    write(tmp_path, "hostkit.toml", "")  # a variable: a warning instead (test_systemd.py)
    (warning,) = load_configuration([], {"HOSTKIT_URL": "x"}, content_root=tmp_path).warnings
    assert "HOSTKIT_URL (did you mean 'urls'?)" in warning


def test_reserved_child_variables_cannot_be_configured(tmp_path: Path) -> None:
    write(tmp_path, "hostkit.toml", '[module.environment_variables]\nHOSTKIT_TOKEN = "x"\n')
    with pytest.raises(ConfigurationError, match="HOSTKIT_TOKEN"):
        load([], {}, content_root=tmp_path)


def test_https_without_tls_names_what_is_missing(tmp_path: Path) -> None:
    write(tmp_path, "hostkit.toml", 'urls = ["https://127.0.0.1:8443"]\n')
    with pytest.raises(ConfigurationError,
                       match=r"hostkit.toml.*tls.certificate and tls.private_key are not set"):
        load_configuration([], {}, content_root=tmp_path)


def test_event_loop_from_every_source_in_any_case(tmp_path: Path) -> None:
    write(tmp_path, "hostkit.toml", 'event_loop = "UVLoop"\n')
    assert load_configuration([], {}, content_root=tmp_path).options.event_loop == "uvloop"
    configuration = load_configuration([], {"HOSTKIT_EVENT_LOOP": "Auto"}, content_root=tmp_path)
    assert configuration.options.event_loop == "auto"
    assert str(configuration.source_of("event_loop")) == "environment variable HOSTKIT_EVENT_LOOP"
    configuration = load_configuration(["--event_loop=ASYNCIO"], {}, content_root=tmp_path)
    assert configuration.options.event_loop == "asyncio"


def test_uvloop_with_trio_names_both_keys_and_their_sources(tmp_path: Path) -> None:
    path = write(tmp_path, "hostkit.toml", 'async_backend = "trio"\nevent_loop = "uvloop"\n')
    with pytest.raises(ConfigurationError) as raised:
        load_configuration([], {}, content_root=tmp_path)
    assert str(raised.value).startswith(
        f"file {path}, line 2: event_loop = 'uvloop' cannot run with async_backend = 'trio' "
        f"(set by file {path}, line 1): uvloop is an asyncio event loop")
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(ConfigurationError, match=r"^command-line argument --event_loop=uvloop: "
                                                 r".*\(set by environment variable "
                                                 r"HOSTKIT_ASYNC_BACKEND\)"):
        load_configuration(["--event_loop=uvloop"], {"HOSTKIT_ASYNC_BACKEND": "trio"},
                           content_root=empty)
    for event_loop in ("auto", "asyncio"):  # trio's own loop
        options = load_configuration([f"--event_loop={event_loop}", "--async_backend=trio"], {},
                                     content_root=empty).options
        assert (options.async_backend, options.event_loop) == ("trio", event_loop)


def test_uvloop_that_cannot_be_imported_says_how_to_install_it(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "uvloop", None)  # import uvloop now raises ImportError
    with pytest.raises(ConfigurationError) as raised:
        load_configuration([], {"HOSTKIT_EVENT_LOOP": "uvloop"}, content_root=tmp_path)
    assert str(raised.value) == (
        "environment variable HOSTKIT_EVENT_LOOP: invalid value 'uvloop' for 'event_loop'; "
        "uvloop cannot be imported; install uvloop: pip install 'hostkit[uvloop]'")
    # auto is the standard library's loop then, not an error
    assert load_configuration(["--event_loop=auto"], {},
                              content_root=tmp_path).options.event_loop == "auto"


def test_bad_argument_shape_is_named(tmp_path: Path) -> None:
    with pytest.raises(ConfigurationError, match=r"command-line argument 'stray'"):
        load_configuration(["stray"], {}, content_root=tmp_path)


def test_secrets_are_redacted_in_config_output(tmp_path: Path) -> None:
    write(tmp_path, "hostkit.toml",
          '[module.environment_variables]\nDB_PASSWORD = "hunter2"\n[myapp]\napi_token = "abc"\n')
    lines = [format_entry(e) for e in load([], {}, content_root=tmp_path).effective_entries()]
    text = "\n".join(lines)
    assert "hunter2" not in text and "abc" not in text
    assert "module.environment_variables = <redacted>" in text
    assert "myapp.api_token = <redacted>" in text


def test_effective_entries_cover_every_key_with_a_source(tmp_path: Path) -> None:
    entries = load(["--shutdown_timeout=3"], {}, content_root=tmp_path).effective_entries()
    keys = {entry.key for entry in entries}
    tables = [t for t, _ in HOST_TABLES] + list(PLUGIN_TABLES)
    expected = {f.name if t.name is None else f"{t.name}.{f.name}"
                for t in tables for f in t.fields()}
    assert keys == expected
    sources = {entry.key: str(entry.source) for entry in entries}
    assert sources["shutdown_timeout"] == "command-line argument --shutdown_timeout=3"
    assert sources["urls"] == "default"


def test_example_file_is_generated_from_the_schema() -> None:
    assert (ROOT / "hostkit.toml.example").read_text() == render_example()


def test_every_example_value_is_accepted(tmp_path: Path) -> None:
    table = None
    for line in render_example().splitlines():
        if line.startswith("["):
            table = line.strip("[]")
        match = re.match(r"^# (\w+) = (.*)$", line)
        if match:
            key = match.group(1) if table is None else f"{table}.{match.group(1)}"
            write(tmp_path, "hostkit.toml",
                  (f"[{table}]\n" if table else "") + f"{match.group(1)} = {match.group(2)}\n")
            configuration = load_configuration([], {}, content_root=tmp_path)
            source = configuration.with_tables(builtin_plugin_tables()).source_of(key)
            assert source is not None and source.kind == "file"


# -- one place per fact ----------------------------------------------------------------------


@pytest.mark.parametrize("keep_alive, header, expected", [(5, 30, 5), (30, 2, 2), (4, 4, 4)])
def test_a_connection_waits_for_its_next_request_head_the_smaller_timeout(
        keep_alive: float, header: float, expected: float) -> None:
    limits = ServerOptions(keep_alive_timeout=keep_alive, request_header_timeout=header)
    assert limits.next_request_head_timeout == expected


def test_configuration_files_are_the_files_the_loader_reads(tmp_path: Path) -> None:
    assert configuration_files(tmp_path, "Staging") == (
        tmp_path / "hostkit.toml", tmp_path / "hostkit.Staging.toml")  # neither exists yet
    write(tmp_path, "hostkit.toml", "shutdown_timeout = 1\n")
    write(tmp_path, "hostkit.development.toml", "shutdown_timeout = 2\n")
    files = configuration_files(tmp_path, "Development")
    assert files == (tmp_path / "hostkit.toml", tmp_path / "hostkit.development.toml")
    configuration = load_configuration(["--environment=Development"], {},
                                       content_root=tmp_path)
    assert configuration.files == files
    assert configuration.options.shutdown_timeout == 2


@pytest.mark.parametrize("name, expected", [
    ("Development", True), ("development", True), ("DEVELOPMENT", True),
    ("Production", False), ("Develop", False)])
def test_one_development_check(tmp_path: Path, name: str, expected: bool) -> None:
    assert is_development(name) is expected
    assert HostEnvironment(name, tmp_path).is_development() is expected


def test_relative_paths_are_relative_to_the_content_root(tmp_path: Path) -> None:
    assert resolve_path(tmp_path, "logs/stdout") == tmp_path / "logs" / "stdout"
    assert resolve_path(tmp_path, "/var/log/app") == Path("/var/log/app")
    assert resolve_path(tmp_path, "~/logs") == Path.home() / "logs"
    configuration = load_configuration([], {}, content_root=tmp_path)
    assert configuration.path("~/logs") == Path.home() / "logs"


# -- errors name the right line --------------------------------------------------------------


def test_error_names_the_line_of_the_key_in_its_own_table(tmp_path: Path) -> None:
    write(tmp_path, "hostkit.toml", "[myapp]\nmax_request_body_size = 1\n"
                                    "[server]\nmax_request_body_size = 1.5\n")
    with pytest.raises(ConfigurationError, match=r"hostkit.toml, line 4: invalid value 1.5"):
        load_configuration([], {}, content_root=tmp_path)
    write(tmp_path, "hostkit.toml", '[myapp]\nnote = """\n[server]\nkeep_alive_timeout = 1\n"""\n'
                                    "[server]\nkeep_alive_timeout = -1\n")
    with pytest.raises(ConfigurationError, match=r"hostkit.toml, line 7: invalid value -1"):
        load_configuration([], {}, content_root=tmp_path)


def test_key_lines_follow_tables_dotted_keys_inline_tables_and_strings() -> None:
    text = textwrap.dedent('''\
        # a comment with key = 1
        title = """
        urls = "inside a string"
        """
        [myapp]
        urls = ["a", # comment ]
          "b"]
        nested = { urls = 1, deep = { x = 2 } }
        'quoted.key' = 'v'
        "escaped\\"" = "a \\" b" # urls = 3
        [[items]]
        x = 1
        [server]
        a.b = 2023-01-01 10:00:00
        urls = 4
        ''')
    assert tomllib.loads(text)  # the scanner reads valid TOML only
    lines = key_lines(text)
    assert lines[("title",)] == 2
    assert lines[("myapp",)] == 5
    assert lines[("myapp", "urls")] == 6
    assert lines[("myapp", "nested")] == 8
    assert lines[("myapp", "nested", "urls")] == 8
    assert lines[("myapp", "nested", "deep", "x")] == 8
    assert lines[("myapp", "quoted.key")] == 9
    assert lines[("myapp", 'escaped"')] == 10
    assert lines[("items",)] == 11
    assert lines[("server", "a", "b")] == 14
    assert lines[("server", "urls")] == 15
    assert ("urls",) not in lines


def test_a_typo_of_a_known_table_is_refused_with_the_name_meant(tmp_path: Path) -> None:
    path = write(tmp_path, "hostkit.toml", 'urls = ["http://127.0.0.1:1"]\n'
                                           "[modul]\neager_start = true\n")
    configuration = load_configuration([], {}, content_root=tmp_path)  # plugins not known yet
    with pytest.raises(ConfigurationError) as raised:
        configuration.check_app_tables(["module", "integration"])
    assert str(raised.value).startswith(f"file {path}, line 2: unknown table [modul]; "
                                        "did you mean [module]?")
    write(tmp_path, "hostkit.toml", "[sever]\n[sever.limits]\nkeep_alive_timeout = 1\n")
    with pytest.raises(ConfigurationError, match=r"line 1: unknown table \[sever\]; "
                                                 r"did you mean \[server\]\?"):
        load_configuration([], {}, content_root=tmp_path).check_app_tables()
    write(tmp_path, "hostkit.toml", "")
    with pytest.raises(ConfigurationError, match=r"environment variable HOSTKIT_WIDGIT__SIZE: "
                                                 r"unknown table \[WIDGIT\]; did you mean "
                                                 r"\[widget\]\?"):
        load_configuration([], {"HOSTKIT_WIDGIT__SIZE": "1"}, content_root=tmp_path
                           ).with_values({"shutdown_timeout": 1}, CODE_SOURCE
                                         ).check_app_tables(["widget"])


def test_app_tables_of_their_own_are_never_refused(tmp_path: Path) -> None:
    names = ["myapp", "database", "log", "cache", "auth", "app", "mymodule", "my_module",
             "webserver", "session", "service", "models", "tools", "widget"]
    write(tmp_path, "hostkit.toml", "".join(f"[{name}]\nx = 1\n" for name in names))
    configuration = load_configuration([], {}, content_root=tmp_path)
    configuration.check_app_tables(["module", "integration", "widget"])
    assert configuration.get("mymodule.x") == 1


@pytest.mark.parametrize("url", ["http://127.0.0.1:notaport", "http://:80", "http://[0]:1",
                                 "http://127.0.0.1:80/app", "unix:"])
def test_a_bad_urls_entry_names_its_source_key_value_and_allowed(tmp_path: Path,
                                                                 url: str) -> None:
    allowed = "http://HOST:PORT, https://HOST:PORT or unix:/PATH"
    path = write(tmp_path, "hostkit.toml", f'shutdown_timeout = 1\nurls = ["{url}"]\n')
    with pytest.raises(ConfigurationError) as raised:
        load_configuration([], {}, content_root=tmp_path)
    message = str(raised.value)
    assert message.startswith(f"file {path}, line 2: invalid value [{url!r}] for 'urls'")
    assert allowed in message
    write(tmp_path, "hostkit.toml", "")
    with pytest.raises(ConfigurationError, match=rf"environment variable HOSTKIT_URLS: "
                                                 rf"invalid value {re.escape(repr(url))}.*"
                                                 rf"{re.escape(allowed)}"):
        load_configuration([], {"HOSTKIT_URLS": url}, content_root=tmp_path)
    with pytest.raises(ConfigurationError, match=rf"command-line argument --urls={re.escape(url)}"
                                                 rf": invalid value .*{re.escape(allowed)}"):
        load_configuration([f"--urls={url}"], {}, content_root=tmp_path)


@pytest.mark.parametrize("text, environ, suggestion", [
    ("shutdown_timout = 1\n", {}, "unknown key 'shutdown_timout'; did you mean "
                                  "'shutdown_timeout'?"),
    ("", {"HOSTKIT_URL": "x"}, "unknown key 'URL'; did you mean 'urls'?"),
    ("", {"HOSTKIT_TSL": "x"}, "unknown key 'TSL'; did you mean [tls]?"),
    ("[server]\nkeep_alive_timout = 1\n", {},
     "unknown key 'server.keep_alive_timout' in table [server]; did you mean "
     "'keep_alive_timeout'? allowed: "),
])
def test_an_unknown_key_suggests_the_closest_valid_one(
        tmp_path: Path, text: str, environ: dict[str, str], suggestion: str) -> None:
    write(tmp_path, "hostkit.toml", text)
    if environ:  # a variable that names no setting is a warning, not an error (SPEC §9)
        (warning,) = load_configuration([], environ, content_root=tmp_path).warnings
        assert f"{next(iter(environ))} ({suggestion.split('; ')[1]})" in warning
        return
    with pytest.raises(ConfigurationError) as raised:
        load_configuration([], environ, content_root=tmp_path)
    assert suggestion in str(raised.value)
    write(tmp_path, "hostkit.toml", "[server]\nqwerty = 1\n")
    with pytest.raises(ConfigurationError) as raised:
        load_configuration([], {}, content_root=tmp_path)
    assert "did you mean" not in str(raised.value)  # nothing close: no guess


def test_a_table_near_a_plugins_table_is_refused_at_build(tmp_path: Path) -> None:
    """[modul] is a typo of the OutOfProcess plugin's [module], known only once the plugins
    contributed their tables: the builder refuses it, naming the file and line."""
    from hostkit import HostBuilder
    from hostkit.plugin_manager import Plugins

    write(tmp_path, "hostkit.toml", 'urls = ["http://127.0.0.1:0"]\n[modul]\neager_start = true\n')
    plugins = Plugins({})
    plugins.load_entry_points()
    builder = HostBuilder(load_configuration([], {}, content_root=tmp_path), plugins)
    with pytest.raises(ConfigurationError, match=r"hostkit.toml, line 2: unknown table "
                       r"\[modul\]; did you mean \[module\]\?"):
        builder.build()


# -- a plugin's table is part of the schema --------------------------------------------------


def test_a_plugin_table_is_read_as_the_apps_until_the_schema_has_it(tmp_path: Path) -> None:
    write(tmp_path, "hostkit.toml", "[widget]\nsize = 5\n[widget.labels]\nred = \"r\"\n")
    configuration = load_configuration([], {}, content_root=tmp_path)
    assert configuration.get("widget.labels.red") == "r"  # the app's value, split into keys
    extended = configuration.with_tables([WIDGET_TABLE])
    assert extended.bind(WIDGET_TABLE) == WidgetOptions(size=5, labels={"red": "r"})
    assert extended.with_tables([WIDGET_TABLE]) is extended
    assert configuration.bind(WIDGET_TABLE) == extended.bind(WIDGET_TABLE)  # bind adds it


def test_a_plugins_table_valued_setting_may_be_a_toml_sub_table(tmp_path: Path) -> None:
    path = write(tmp_path, "hostkit.toml", 'shutdown_timeout = 1\n[module.environment_variables]\n'
                                           'GREETING = "hi"\n[widget.labels]\nred = "r"\n')
    configuration = load([], {}, content_root=tmp_path).with_tables([WIDGET_TABLE])
    assert configuration.bind(MODULE_TABLE).environment_variables == {"GREETING": "hi"}
    assert str(configuration.source_of("module.environment_variables")) == \
        f"file {path}, line 2"
    assert configuration.bind(WIDGET_TABLE).labels == {"red": "r"}
    write(tmp_path, "hostkit.toml", '[widget.labels]\nred = 1\n')
    with pytest.raises(ConfigurationError, match=r"line 1: invalid value \{'red': 1\} for "
                                                 r"'widget.labels'; allowed: a table of strings"):
        load_configuration([], {}, content_root=tmp_path).with_tables([WIDGET_TABLE])


def test_a_plugin_table_is_as_strict_as_hostkits(tmp_path: Path) -> None:
    path = write(tmp_path, "hostkit.toml", 'shutdown_timeout = 1\n[widget]\nsize = "5"\n')
    with pytest.raises(ConfigurationError) as raised:
        load_configuration([], {}, content_root=tmp_path).with_tables([WIDGET_TABLE])
    assert str(raised.value) == (f"file {path}, line 3: invalid value '5' for 'widget.size'; "
                                 "allowed: a whole number at least 1")
    write(tmp_path, "hostkit.toml", "")
    configuration = load_configuration(["--widget:size=5"], {"HOSTKIT_WIDGET__API_KEY": "k"},
                                       content_root=tmp_path).with_tables([WIDGET_TABLE])
    assert configuration.bind(WIDGET_TABLE) == WidgetOptions(size=5, api_key="k")  # text


def test_a_plugin_tables_unknown_key_suggests_the_closest_valid_one(tmp_path: Path) -> None:
    path = write(tmp_path, "hostkit.toml", "[module]\neager_start = true\nstartup_time_limt = 5\n")
    configuration = load_configuration([], {}, content_root=tmp_path)
    with pytest.raises(ConfigurationError) as raised:
        configuration.with_tables(PLUGIN_TABLES)
    assert str(raised.value).startswith(
        f"file {path}, line 3: unknown key 'module.startup_time_limt' in table [module]; "
        "did you mean 'startup_time_limit'? allowed: app_offline_file, arguments, ")
    with pytest.raises(ConfigurationError,
                       match=r"line 3: unknown key 'module.startup_time_limt'"):
        configuration.bind(MODULE_TABLE)
    write(tmp_path, "hostkit.toml", "")
    configuration = load_configuration([], {"HOSTKIT_WIDGET__SIZ": "1"}, content_root=tmp_path)
    assert configuration.warnings == ()  # [widget] is the app's until the plugin's is known
    (warning,) = configuration.with_tables([WIDGET_TABLE]).warnings  # a warning, not an error
    assert "HOSTKIT_WIDGET__SIZ (did you mean 'size'?)" in warning


def test_a_plugin_table_may_not_take_a_name_already_taken(tmp_path: Path) -> None:
    configuration = load([], {}, content_root=tmp_path)
    with pytest.raises(ConfigurationError, match=r"\[module\] \(WidgetOptions\) has the name "
                                                 r"of another plugin's table \[module\]"):
        configuration.with_tables([SettingsTable("module", WidgetOptions)])
    with pytest.raises(ConfigurationError, match=r"\[TLS\] \(WidgetOptions\) has the name of "
                                                 r"hostkit's own table \[tls\]"):
        configuration.with_tables([SettingsTable("TLS", WidgetOptions)])
    with pytest.raises(ConfigurationError, match=r"\[urls\] has the name of hostkit's "
                                                 r"top-level key 'urls'"):
        configuration.with_tables([SettingsTable("urls", WidgetOptions)])


def test_hostkit_config_shows_every_plugin_key_with_its_default_or_source(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = write(tmp_path, "hostkit.toml", "[module]\neager_start = true\n")
    print_config([f"--content_root={tmp_path}", "--module:request_timeout=7"])
    lines = capsys.readouterr().out.splitlines()
    assert f"module.eager_start = true  # file {path}, line 2" in lines
    assert ("module.request_timeout = 7  # command-line argument --module:request_timeout=7"
            in lines)
    assert "module.startup_time_limit = 120  # default" in lines
    assert 'module.app_offline_file = "app_offline.htm"  # default' in lines
    assert "integration.forward_client_certificate = true  # default" in lines
    keys = [line.split(" = ")[0] for line in lines if not line.startswith("#")]
    assert keys.index("authentication.users_file") < keys.index("integration."
                                                                "forward_client_certificate")
    assert keys.index("integration.forward_client_certificate") < keys.index(
        "module.process_path")
    assert {key for key in keys if key.startswith("module.")} == {
        f"module.{field.name}" for field in MODULE_TABLE.fields()}


def test_hostkit_config_redacts_a_plugins_secret_fields(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str]) -> None:
    write(tmp_path, "secret_widget_plugin.py", textwrap.dedent("""
        import dataclasses
        import hostkit
        from hostkit.plugin import Number, SettingsTable, Text, setting

        @dataclasses.dataclass(frozen=True)
        class WidgetOptions:
            size: int = setting(3, Number(1, integer=True), "widgets kept")
            api_key: str = setting("", Text(), "the widget service's key", secret=True)

        @hostkit.hookimpl
        def hostkit_add_settings_tables():
            return [SettingsTable("widget", WidgetOptions)]
        """))
    monkeypatch.syspath_prepend(str(tmp_path))
    write(tmp_path, "hostkit.toml", 'plugins = ["secret_widget_plugin"]\n'
                                    '[module.environment_variables]\nGREETING = "greeting-7q"\n'
                                    '[widget]\napi_key = "key-7q"\n')
    print_config([f"--content_root={tmp_path}"])
    output = capsys.readouterr().out
    assert "7q" not in output
    assert "module.environment_variables = <redacted>  # file" in output
    assert "widget.api_key = <redacted>  # file" in output
    assert "widget.size = 3  # default" in output


def test_hostkit_config_refuses_a_bad_plugin_key_as_build_does(tmp_path: Path) -> None:
    write(tmp_path, "hostkit.toml", "[module]\neager_strat = true\n")
    with pytest.raises(ConfigurationError, match=r"line 2: unknown key 'module.eager_strat' in "
                                                 r"table \[module\]; did you mean 'eager_start'"):
        print_config([f"--content_root={tmp_path}"])
    write(tmp_path, "hostkit.toml", "[modul]\neager_start = true\n")
    with pytest.raises(ConfigurationError, match=r"line 1: unknown table \[modul\]; "
                                                 r"did you mean \[module\]\?"):
        print_config([f"--content_root={tmp_path}"])


def test_the_example_documents_the_builtin_plugins_tables_after_hostkits() -> None:
    tables = re.findall(r"^\[(\w+)\]$", render_example(), flags=re.MULTILINE)
    assert tables == ["tls", "server", "authentication", "workers", "health", "logging",
                      "forwarded_headers", "metrics", "integration",
                      "module"]
    assert builtin_plugin_tables() == [INTEGRATION_TABLE, MODULE_TABLE]
    assert "[widget]\n# widgets kept\n#   allowed: a whole number at least 1\n# size = 3\n" in \
        render_example([WIDGET_TABLE])
