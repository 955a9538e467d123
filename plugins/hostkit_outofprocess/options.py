"""The OutOfProcess plugin's own settings: the ``[module]`` and ``[integration]`` tables.

Contributed through ``hostkit_add_settings_tables`` like any plugin's tables, so hostkit
validates them (unknown keys, bad values name their source), ``hostkit config`` shows them and
``hostkit.toml.example`` documents them. Read them with :func:`module_options` and
:func:`integration_options`, once, when the host is built.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping

import hostkit
from hostkit.plugin import (
    CHILD_VARIABLES,
    Boolean,
    ContentRootRules,
    Number,
    SettingsTable,
    Text,
    TextList,
    TextTable,
    setting,
)


@dataclasses.dataclass(frozen=True)
class IntegrationOptions:
    forward_client_certificate: bool = setting(
        True, Boolean(),
        "child side: fill context.connection.client_certificate from the module's header")


@dataclasses.dataclass(frozen=True)
class ModuleOptions:
    process_path: str = setting("", Text("a path to an executable"),
                                "executable for the child (empty: the current interpreter)")
    arguments: tuple[str, ...] = setting(
        (), TextList(), "arguments for the child (empty: the current program's argv)")
    environment_variables: Mapping[str, str] = setting(
        {}, TextTable(reserved=CHILD_VARIABLES),
        "extra environment for the child; wins over the inherited environment", secret=True)
    eager_start: bool = setting(False, Boolean(),
                                "start the child when the front starts, not on the first request")
    startup_time_limit: float = setting(
        120, Number(0.1), "seconds for the child to accept connections on its port")
    shutdown_time_limit: float = setting(
        10, Number(0), "seconds between asking the child to stop and killing it")
    rapid_fails_per_minute: int = setting(
        10, Number(0, integer=True), "child failures allowed per rolling minute")
    request_timeout: float = setting(
        120, Number(0.001), "seconds for the child to answer a forwarded request")
    stdout_log_enabled: bool = setting(False, Boolean(), "log child stdout and stderr to a file")
    stdout_log_file: str = setting(
        "logs/stdout", Text("a file path prefix", non_empty=True),
        "prefix of {stdout_log_file}_{yyyymmddHHMMSS}_{pid}.log")
    relay_child_output: bool = setting(
        True, Boolean(),
        "copy the children's stdout and stderr to the front's stderr, line by line, each "
        "line prefixed with the child's pid (never blocking a child)")
    forward_identity: bool = setting(True, Boolean(),
                                     "forward the front's authenticated identity to the child")
    disable_startup_error_page: bool = setting(
        False, Boolean(), "bare status codes instead of hostkit's error pages")
    path_base: str = setting("/", Text("a path starting with '/'",
                                       check=lambda v: v.startswith("/")),
                             "the app's base path, applied as request.path_base")
    processes_per_application: int = setting(
        1, Number(1, 100, integer=True), "number of child processes, load-balanced")
    restart_on_config_change: bool = setting(
        True, Boolean(),
        "a change to the configuration files replaces the children by rolling replacement "
        "(as SIGHUP)")
    app_offline_file: str = setting(
        "app_offline.htm", Text("a file name", non_empty=True),
        "while this file exists in the content root, the module answers 503 with its content")


MODULE_TABLE = SettingsTable("module", ModuleOptions, "The out-of-process module")
INTEGRATION_TABLE = SettingsTable("integration", IntegrationOptions, "Child-side integration")


def module_options(configuration: hostkit.Configuration) -> ModuleOptions:
    """The validated ``[module]`` table of ``configuration`` (defaults where unset).

    Raises :class:`hostkit.ConfigurationError` naming the source of a bad key or value.
    """
    options: ModuleOptions = configuration.bind(MODULE_TABLE)
    return options


def content_root_rules(options: ModuleOptions) -> ContentRootRules:
    """What ``app_offline_file`` and ``restart_on_config_change`` ask of whoever runs the
    app's processes: the module for its children, the supervisor for InProcess workers."""
    return ContentRootRules(options.app_offline_file, options.restart_on_config_change)


def integration_options(configuration: hostkit.Configuration) -> IntegrationOptions:
    """The validated ``[integration]`` table of ``configuration`` (defaults where unset)."""
    options: IntegrationOptions = configuration.bind(INTEGRATION_TABLE)
    return options
