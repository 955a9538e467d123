"""Configuration: sources and precedence, case-insensitivity, validation and its messages."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from hostkit import ConfigurationError, HostingModel
from hostkit.cli import format_entry
from hostkit.configuration.reference import render_example
from hostkit.configuration import load_configuration
from hostkit.configuration.tables import HOST_TABLES

ROOT = Path(__file__).resolve().parent.parent


def write(folder: Path, name: str, text: str) -> Path:
    path = folder / name
    path.write_text(text)
    return path


def test_defaults_without_any_source(tmp_path: Path) -> None:
    options = load_configuration([], {}, content_root=tmp_path).options
    assert options.hosting_model is HostingModel.IN_PROCESS
    assert options.urls == ("http://127.0.0.1:5000",)
    assert options.async_backend == "asyncio"
    assert options.server == "hypercorn"
    assert options.shutdown_timeout == 30
    assert options.server_options.max_request_body_size == 30_000_000
    assert options.server_options.allow_synchronous_io is False
    assert options.module.startup_time_limit == 120
    assert options.module.app_offline_file == "app_offline.htm"
    assert options.authentication.automatic_authentication is True
    assert options.integration.forward_client_certificate is True


def test_precedence_file_environment_file_variables_arguments(tmp_path: Path) -> None:
    write(tmp_path, "hostkit.toml",
          "shutdown_timeout = 1\n[module]\nstartup_time_limit = 1\nrequest_timeout = 1\n"
          "rapid_fails_per_minute = 1\n")
    write(tmp_path, "hostkit.Staging.toml",
          "[module]\nstartup_time_limit = 2\nrequest_timeout = 2\nrapid_fails_per_minute = 2\n")
    environ = {"HOSTKIT_ENVIRONMENT": "Staging", "HOSTKIT_MODULE__REQUEST_TIMEOUT": "3",
               "HOSTKIT_MODULE__RAPID_FAILS_PER_MINUTE": "3"}
    configuration = load_configuration(["--module:rapid_fails_per_minute=4"], environ,
                                       content_root=tmp_path)
    module = configuration.options.module
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
    options = load_configuration([], {"hostkit_Module__Path_Base": "/app"},
                                 content_root=tmp_path).options
    assert options.hosting_model is HostingModel.OUT_OF_PROCESS
    assert options.module.eager_start is True
    assert options.module.path_base == "/app"


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
    options = load_configuration(["--plugins", "a.b, c", '--module:arguments=["x", "y"]'],
                                 environ, content_root=tmp_path).options
    assert options.urls == ("http://127.0.0.1:1", "http://127.0.0.1:2")
    assert options.server_options.allow_synchronous_io is True
    assert options.module.environment_variables == {"GREETING": "hi"}
    assert options.plugins == ("a.b", "c")
    assert options.module.arguments == ("x", "y")


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
    ('urls = ["ftp://x"]\n', "urls", "['ftp://x']", "http://HOST:PORT"),
    ("[server]\nallow_synchronous_io = 1\n", "server.allow_synchronous_io", "1",
     "true or false"),
    ('[module]\npath_base = "app"\n', "module.path_base", "'app'", "starting with '/'"),
])
def test_wrong_value_in_file_names_file_key_value_and_allowed(
        tmp_path: Path, text: str, key: str, value: str, allowed: str) -> None:
    write(tmp_path, "hostkit.toml", text)
    with pytest.raises(ConfigurationError) as raised:
        load_configuration([], {}, content_root=tmp_path)
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
        load_configuration([], {}, content_root=tmp_path)
    write(tmp_path, "hostkit.toml", "")
    with pytest.raises(ConfigurationError, match=r"HOSTKIT_URL.*unknown key"):
        load_configuration([], {"HOSTKIT_URL": "x"}, content_root=tmp_path)


def test_reserved_child_variables_cannot_be_configured(tmp_path: Path) -> None:
    write(tmp_path, "hostkit.toml", '[module.environment_variables]\nHOSTKIT_TOKEN = "x"\n')
    with pytest.raises(ConfigurationError, match="HOSTKIT_TOKEN"):
        load_configuration([], {}, content_root=tmp_path)


def test_https_without_tls_names_what_is_missing(tmp_path: Path) -> None:
    write(tmp_path, "hostkit.toml", 'urls = ["https://127.0.0.1:8443"]\n')
    with pytest.raises(ConfigurationError,
                       match=r"hostkit.toml.*tls.certificate and tls.private_key are not set"):
        load_configuration([], {}, content_root=tmp_path)


def test_bad_argument_shape_is_named(tmp_path: Path) -> None:
    with pytest.raises(ConfigurationError, match=r"command-line argument 'stray'"):
        load_configuration(["stray"], {}, content_root=tmp_path)


def test_secrets_are_redacted_in_config_output(tmp_path: Path) -> None:
    write(tmp_path, "hostkit.toml",
          '[module.environment_variables]\nDB_PASSWORD = "hunter2"\n[myapp]\napi_token = "abc"\n')
    lines = [format_entry(e) for e in
             load_configuration([], {}, content_root=tmp_path).effective_entries()]
    text = "\n".join(lines)
    assert "hunter2" not in text and "abc" not in text
    assert "module.environment_variables = <redacted>" in text
    assert "myapp.api_token = <redacted>" in text


def test_effective_entries_cover_every_key_with_a_source(tmp_path: Path) -> None:
    entries = load_configuration(["--shutdown_timeout=3"], {}, content_root=tmp_path
                                 ).effective_entries()
    keys = {entry.key for entry in entries}
    expected = {f.name if t.name is None else f"{t.name}.{f.name}"
                for t, _ in HOST_TABLES for f in t.fields()}
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
            assert load_configuration([], {}, content_root=tmp_path).source_of(key) is not None
