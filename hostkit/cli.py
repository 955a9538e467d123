"""The ``hostkit`` command line: ``run``, ``plugins``, ``config`` and ``users``.

Every subcommand takes the configuration arguments of SPEC §3 after its own
(``--key=value``, ``--table:key=value``, ``--environment=``, ``--content_root=``) and the
shorthands ``--host``, ``--port``, ``--workers``, ``--reload`` and ``--log-level``
(:mod:`hostkit.configuration.sources` parses them all, for program files too).
``hostkit run`` reads its arguments itself, so ``MODULE:ATTR`` may come before or after them.
"""

from __future__ import annotations

import argparse
import getpass
import importlib
import importlib.metadata
import inspect
import os
import sys
import textwrap
from collections.abc import Sequence
from typing import Any

from hostkit.authentication.passwords import DEFAULT_ITERATIONS, hash_password
from hostkit.authentication.users_file import check_name, read_users, set_user
from hostkit.builder import HostBuilder
from hostkit.configuration import Entry
from hostkit.configuration.schema import Schema, contributed_tables
from hostkit.configuration.sources import (
    ADDRESS_SHORTHANDS, FLAGS, HOST_ARGUMENTS, SHORTHANDS, split_target)
from hostkit.errors import HostkitError
from hostkit.host import Host, configure_default_logging
from hostkit.pipeline import as_terminal_app
from hostkit.plugin_manager import Plugins
from hostkit.server_contract import declared_servers
from hostkit.wsgi import is_wsgi_app
from hostkit.configuration.tables import toml_literal

REDACTED = "<redacted>"


RUN_USAGE = "hostkit run MODULE:ATTR [OPTION ...]"
RUN_DESCRIPTION = ("Run MODULE:ATTR (a HostBuilder, a function returning one, or an ASGI app, "
                   "handler or WSGI app) with the configuration of hostkit.toml, "
                   "hostkit.{environment}.toml, HOSTKIT_* variables and these options, later "
                   "ones winning.")
# What the value of each shorthand and host argument is called in the help.
_METAVARS = {"host": "HOST", "port": "PORT", "workers": "N", "log_level": "LEVEL",
             "environment": "NAME", "content_root": "PATH"}
_ADDRESS_HELP = {
    "host": f"default {ADDRESS_SHORTHANDS['host']}; 0.0.0.0 or :: for every interface",
    "port": f"default {ADDRESS_SHORTHANDS['port']}; not together with --urls",
}
_HOST_ARGUMENT_HELP = {
    "environment": "the environment (default Production, or HOSTKIT_ENVIRONMENT): reads "
                   "hostkit.NAME.toml",
    "content_root": "the content root (default the current directory, or "
                    "HOSTKIT_CONTENT_ROOT): where hostkit.toml is",
}
#: Columns of ``hostkit run --help``: the whole line, and where the explanations start.
_HELP_WIDTH, _HELP_INDENT = 88, 30


def _version() -> str:
    """The installed distribution's version, as ``pip`` knows it."""
    try:
        return importlib.metadata.version("hostkit")
    except importlib.metadata.PackageNotFoundError:  # run from a source tree
        from hostkit import __version__
        return __version__


def run_help() -> str:
    """``hostkit run --help``: the usage, the shorthands, the forms of every other option,
    and every setting they can set (hostkit's and the installed plugins')."""
    plugins = Plugins()
    try:
        plugins.load_entry_points()
        schema = Schema(contributed_tables(plugins))
    except Exception:  # a broken plugin fails `hostkit run` itself; the help lists hostkit's
        schema = Schema()
    fields = schema.fields()

    def option(name: str) -> str:
        metavar = "" if name in FLAGS else f" {_METAVARS.get(name, 'VALUE')}"
        return f"--{name.replace('_', '-')}{metavar}"

    shorthands = [(option(name), f"shorthand for urls = [\"http://HOST:PORT\"] ({text})")
                  for name, text in _ADDRESS_HELP.items()]
    for name, key in SHORTHANDS.items():
        path = tuple(key.split("."))
        value = "true" if name in FLAGS else _METAVARS.get(name, "VALUE")
        shorthands.append((option(name), f"shorthand for --{':'.join(path)}={value}: "
                                         f"{fields[path].metadata['doc']}"))
    forms = [("--KEY=VALUE, --KEY VALUE", "a top-level setting, e.g. --urls=http://0.0.0.0:80 "
                                          "or --hosting_model OutOfProcess"),
             ("--TABLE:KEY=VALUE", "a setting of a table, e.g. --server:keep_alive_timeout=10 "
                                   "(also --TABLE__KEY=VALUE)"),
             *((f"--{name}={_METAVARS[name]}", _HOST_ARGUMENT_HELP[name])
               for name in HOST_ARGUMENTS),
             ("-h, --help", "show this help and exit")]
    settings = [(f"--{':'.join(path)}", f"{field.metadata['doc']}; allowed: "
                                        f"{field.metadata['kind'].allowed}")
                for path, field in fields.items()]
    sections = [
        ("arguments", [("MODULE:ATTR", "what to run: a module importable from the current "
                                       "directory, and an attribute of it")]),
        ("shorthands", shorthands), ("options", forms),
        ("settings of hostkit and its plugins (`hostkit config` shows their values)",
         settings)]
    lines = [f"usage: {RUN_USAGE}", "", textwrap.fill(RUN_DESCRIPTION, _HELP_WIDTH)]
    for title, rows in sections:
        lines += ["", f"{title}:"]
        for left, text in rows:
            head = f"  {left}"
            if len(head) >= _HELP_INDENT:  # too long to share its line with the text
                lines.append(head)
                head = ""
            wrapped = textwrap.wrap(text, _HELP_WIDTH - _HELP_INDENT)
            lines.append(head.ljust(_HELP_INDENT) + wrapped[0])
            lines += [" " * _HELP_INDENT + more for more in wrapped[1:]]
    return "\n".join(lines) + "\n"


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="hostkit", description="Host a Python web app InProcess or OutOfProcess.")
    parser.add_argument("--version", action="version", version=f"hostkit {_version()}")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    # `hostkit run` reads its own arguments (main); this entry is for `hostkit --help`.
    commands.add_parser(
        "run", help="run MODULE:ATTR (a HostBuilder, a function returning one, or an ASGI "
                    "or WSGI app); `hostkit run --help` lists its options")
    commands.add_parser("plugins", help="list the installed plugins, their versions and hooks")
    commands.add_parser(
        "config", help="print the effective configuration with the source of every value")
    users = commands.add_parser(
        "users", help="add, remove or list the users of the basic scheme "
                      "([authentication] users_file)")
    users.add_argument("action", choices=("add", "remove", "list"))
    users.add_argument("name", nargs="?", metavar="NAME")
    users.add_argument("--password-stdin", action="store_true",
                       help="read the password from the first line of stdin (no prompt)")
    users.add_argument("--iterations", type=int, default=DEFAULT_ITERATIONS,
                       help=f"PBKDF2 iterations (default {DEFAULT_ITERATIONS})")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``hostkit`` console script and ``python -m hostkit``."""
    argv = sys.argv[1:] if argv is None else list(argv)
    if argv[:1] == ["run"]:
        return run_command(argv[1:])
    parser = _parser()
    arguments, rest = parser.parse_known_args(argv)
    try:
        if arguments.command == "plugins":
            print_plugins(rest)
        elif arguments.command == "users":
            manage_users(arguments, rest)
        else:
            print_config(rest)
    except HostkitError as error:
        print(f"hostkit: error: {error}", file=sys.stderr)
        return 1
    except BrokenPipeError:  # `hostkit config | head`
        sys.stderr.close()
        return 0
    return 0


def run_command(args: list[str]) -> int:
    """``hostkit run ARGS``: the help, or :func:`run` with ``MODULE:ATTR`` wherever it is
    among the options. Returns the exit status."""
    if "-h" in args or "--help" in args:
        print(run_help(), end="")
        return 0
    target, rest = split_target(args)
    try:
        if target is None:
            raise HostkitError(f"run: MODULE:ATTR is missing; usage: {RUN_USAGE} "
                               "(hostkit run --help lists the options)")
        run(target, rest)
    except HostkitError as error:
        print(f"hostkit: error: {error}", file=sys.stderr)
        return 1
    return 0


def load_target(target: str, args: list[str]) -> HostBuilder:
    """Import ``MODULE:ATTR`` and turn it into a builder, as ``hostkit run`` does.

    ATTR may be a :class:`HostBuilder`, a function returning one (called with ``args`` when
    it takes a parameter), or an ASGI app / handler / WSGI app (served by a default builder;
    a plain function of two positional parameters is a WSGI app).
    """
    module_name, _, attribute = target.partition(":")
    if not module_name or not attribute:
        raise HostkitError(f"run: expected MODULE:ATTR, got {target!r}")
    if os.getcwd() not in sys.path:
        sys.path.insert(0, os.getcwd())
    module = importlib.import_module(module_name)
    value: Any = module
    for part in attribute.split("."):
        value = getattr(value, part)
    if isinstance(value, HostBuilder):
        return value
    if is_wsgi_app(value):  # `def app(environ, start_response)`, a Flask or Django app
        return Host.create_default_builder(args).use_app(value)
    if inspect.isfunction(value) and not inspect.iscoroutinefunction(value):
        takes_args = len(inspect.signature(value).parameters) >= 1
        result = value(args) if takes_args else value()
        if isinstance(result, HostBuilder):
            return result
        raise HostkitError(f"run: {target} returned {type(result).__name__}, not a HostBuilder")
    try:
        as_terminal_app(value)
    except TypeError as error:  # not an app at all: say so, rather than serve 500.30
        raise HostkitError(f"run: {target} is not a HostBuilder, a function returning one, "
                           f"or an app: {error}") from None
    return Host.create_default_builder(args).use_app(value)


def run(target: str, args: list[str]) -> None:
    """``hostkit run``: build and run the target.

    When importing or calling the target fails, the host still starts on the configured
    ``urls`` and answers "500.30 In-Process Start Failure", as ANCM does when an app's
    startup throws, instead of leaving clients with a refused connection. With
    ``capture_startup_errors = false``, or as an OutOfProcess child, it logs the error and
    the process exits with status 3 instead (``SystemExit`` from :meth:`Host.run`).
    """
    configure_default_logging()
    try:
        builder = load_target(target, args)
    except HostkitError:
        raise
    except Exception as error:  # the app's own code failed: report it on every request
        host = Host.create_default_builder(args).build()
        host.fail_startup(error)
        host.run()
        return
    builder.build().run()


def print_plugins(args: list[str]) -> None:
    """``hostkit plugins``: name, version and hooks of every registered plugin, then the
    servers they declare (``server = NAME``) with their models, backends and url schemes."""
    builder = Host.create_default_builder(args)
    infos = builder.plugins.describe()
    if not infos:
        print("no plugins")
        return
    for info in infos:
        origin = f"{info.distribution} " if info.distribution else ""
        print(f"{info.name} ({origin}{info.version or 'unknown version'})")
        for hook in info.hooks:
            print(f"    {hook}")
    servers = declared_servers(builder.plugins)
    if servers:
        print("servers (server = NAME): hosting models; async backends; url schemes")
        for name, server in sorted(servers.items()):
            print(f"    {name}: {server.describe()}")


def manage_users(arguments: argparse.Namespace, args: list[str]) -> None:
    """``hostkit users add|remove|list``: edit the users file of the configuration."""
    configuration = Host.create_default_builder(args).configuration
    path = configuration.path(configuration.options.authentication.users_file)
    if arguments.action == "list":
        for name in read_users(path) if path.exists() else {}:
            print(name)
        return
    if not arguments.name:
        raise HostkitError(f"users {arguments.action}: a NAME is needed")
    try:
        check_name(arguments.name)
    except ValueError as error:
        raise HostkitError(f"users {arguments.action}: {error}") from None
    if arguments.action == "remove":
        if not set_user(path, arguments.name, None):
            raise HostkitError(f"users remove: no user {arguments.name!r} in {path}")
        print(f"removed {arguments.name!r} from {path}")
        return
    if arguments.iterations < 1:
        raise HostkitError("users add: --iterations must be at least 1")
    password = _read_password(arguments.password_stdin)
    existed = set_user(path, arguments.name, hash_password(password, arguments.iterations))
    print(f"{'updated' if existed else 'added'} {arguments.name!r} in {path}")


def _read_password(from_stdin: bool) -> str:
    if from_stdin:
        password = sys.stdin.readline().rstrip("\r\n")
    else:
        password = getpass.getpass("Password: ")
        if getpass.getpass("Again: ") != password:
            raise HostkitError("users add: the passwords differ")
    if not password:
        raise HostkitError("users add: the password is empty")
    return password


def format_entry(entry: Entry) -> str:
    """One line of ``hostkit config``: ``key = value  # source``, secrets redacted."""
    value = REDACTED if entry.secret and entry.value else toml_literal(entry.value)
    return f"{entry.key} = {value}  # {entry.source}"


def print_config(args: list[str]) -> None:
    """``hostkit config``: every effective value with its source: hostkit's settings, the
    settings of the plugins' tables, then the app's values.

    The plugins' tables are validated as ``build()`` validates them, so a bad key or value,
    or an app table named like a typo of a known one, fails here as it would at start.
    """
    builder = Host.create_default_builder(args)
    configuration = builder.configuration.with_tables(builder.settings_tables())
    configuration.check_app_tables()
    print(f"# environment: {configuration.environment_name}")
    print(f"# content root: {configuration.content_root}")
    for path in configuration.files:
        print(f"# file: {path}")
    for entry in configuration.effective_entries():
        print(format_entry(entry))
