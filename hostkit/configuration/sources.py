"""Layered configuration: the one place that reads and validates settings.

Sources, later ones winning (SPEC §3):

1. ``hostkit.toml`` in the content root;
2. ``hostkit.{environment}.toml``;
3. environment variables ``HOSTKIT_*`` (prefix stripped, ``__`` separates tables);
4. command-line arguments ``--key=value`` / ``--table:key=value``, and the shorthands
   ``--host``/``--port`` (``urls``), ``--workers``, ``--reload``, ``--log-level``.

With systemd socket activation (:mod:`hostkit.systemd`) and no source setting ``urls``,
``urls`` is the activated sockets, ``fd://3`` …

Keys are case-insensitive. Every value of a table the schema knows is validated as it is
merged, so an error names the source it came from. A ``HOSTKIT_*`` variable that names no
setting is ignored with a warning (:attr:`Configuration.warnings`), not refused: a container
platform sets variables of its own with that prefix. Until the plugins are known the schema is
hostkit's own tables (:data:`HOST_SCHEMA`): other top-level tables pass through as the app's.
:meth:`Configuration.with_tables` merges the same values again against a schema that also has
the plugins' tables (``HostBuilder.build`` does it with every contributed table), and
:meth:`Configuration.check_app_tables` then refuses an app table whose name is a typo of a
known one.
"""

from __future__ import annotations

import dataclasses
import difflib
import ipaddress
import logging
import os
import re
from collections.abc import Iterable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

from hostkit import child_contract, systemd, worker_contract
from hostkit._compat import tomllib
from hostkit.configuration.key_lines import KeyPath, key_lines
from hostkit.configuration.schema import HOST_SCHEMA, Schema, UnknownKey
from hostkit.configuration.tables import HostOptions, InvalidValue, SettingsTable, field_default
from hostkit.errors import ConfigurationError
from hostkit.event_loop import EventLoopError, choose_event_loop
from hostkit.listeners import parse_url

logger = logging.getLogger("hostkit.configuration")

ENVIRONMENT_PREFIX = "HOSTKIT_"
DEFAULT_ENVIRONMENT = "Production"
CONFIG_FILE = "hostkit.toml"

# HOSTKIT_* variables that are not configuration keys: they choose where configuration comes
# from, control plugin loading, or carry a front's contract with its child (child_contract).
NON_CONFIGURATION_VARIABLES = frozenset({
    "HOSTKIT_ENVIRONMENT", "HOSTKIT_CONTENT_ROOT", "HOSTKIT_DISABLE_PLUGIN_AUTOLOAD",
    "HOSTKIT_TRACE_PLUGINS",
}) | child_contract.VARIABLES | worker_contract.VARIABLES

# Settings that choose the content root and environment are arguments, not keys.
HOST_ARGUMENTS = ("content_root", "environment")

_SECRET_WORDS = ("password", "secret", "token", "private")

# How alike an app table's name and a known table's must be to be taken for a typo of it
# (difflib's ratio: "modul" and "module" score 0.91, "myapp" and "module" 0.18), and how
# many letters longer or shorter it may be ("mymodule" is the app's own name, not a typo).
_NEAR_MISS_CUTOFF = 0.8
_NEAR_MISS_LENGTH = 1


@dataclasses.dataclass(frozen=True)
class Source:
    """Where one value came from: ``kind`` is default, file, environment, argument or code."""

    kind: str
    name: str = ""
    line: int | None = None

    def __str__(self) -> str:
        if self.kind == "default":
            return "default"
        if self.kind == "file":
            return f"file {self.name}" + (f", line {self.line}" if self.line else "")
        if self.kind == "environment":
            return f"environment variable {self.name}"
        if self.kind == "argument":
            return f"command-line argument {self.name}"
        return self.name or self.kind


DEFAULT_SOURCE = Source("default")
CODE_SOURCE = Source("code", "set in code")
#: ``urls`` when systemd activated sockets for this process and no source sets it.
SOCKET_ACTIVATION_SOURCE = Source("systemd", "systemd socket activation (LISTEN_FDS)")


@dataclasses.dataclass(frozen=True)
class Entry:
    """One effective value: its dotted key as written, the value, and where it came from."""

    key: str
    value: Any
    source: Source
    secret: bool = False


@dataclasses.dataclass(frozen=True)
class _Raw:
    """One value as a source gave it, before validation: its dotted key as written."""

    key: str
    value: Any
    source: Source
    is_text: bool
    # Where the top-level table holding the value is first written (a file's header line);
    # None: where the value is.
    table_source: Source | None = None


@dataclasses.dataclass(frozen=True)
class _Document:
    """One configuration file as tomllib read it, with the line each key is written on.

    Kept whole, not as values: where a file's sub-table is one value (a table-valued
    setting) and where it is a table of values depends on the schema it is merged against.
    """

    path: Path
    values: Mapping[str, Any]
    lines: Mapping[KeyPath, int]

    def raws(self, schema: Schema) -> list[_Raw]:
        """The file's values in the order written: scalars, arrays, and the sub-tables that
        ``schema`` says are one value."""
        raws: list[_Raw] = []

        def walk(prefix: KeyPath, table: Mapping[str, Any]) -> None:
            for name, value in table.items():
                key = prefix + (name,)
                if isinstance(value, dict) and not schema.is_table_valued(key):
                    walk(key, value)
                else:
                    raws.append(_Raw(".".join(key), value, self._source(key), is_text=False,
                                     table_source=self._source(key[:1])))

        walk((), self.values)
        return raws

    def _source(self, key: KeyPath) -> Source:
        return Source("file", str(self.path), self.lines.get(key))


@dataclasses.dataclass(frozen=True)
class _AppTable:
    """A top-level table no table of the schema is: its name as first written, and where."""

    name: str
    source: Source


class Configuration(Mapping[str, Any]):
    """The merged configuration of one host.

    ``options`` holds hostkit's own settings, typed and validated; :meth:`bind` gives a
    plugin's table the same way. Item access and :meth:`get` reach any key
    case-insensitively with dotted paths (``"server.keep_alive_timeout"``,
    ``"myapp.greeting"``); values of app tables from environment variables or arguments are
    strings, as in ASP.NET Core.

    Made by :func:`load_configuration`. It keeps the values it was merged from (files first,
    then variables, arguments and code, in precedence order), so :meth:`with_values`,
    :meth:`with_sources` and :meth:`with_tables` merge them again with more values or a
    larger schema. The constructor merges ``documents`` then ``raws`` against ``schema`` and
    raises :class:`ConfigurationError` for a bad key or value, naming its source.
    """

    def __init__(self, content_root: Path, environment_name: str,
                 documents: Sequence[_Document], raws: Sequence[_Raw],
                 schema: Schema = HOST_SCHEMA):
        self.content_root = content_root
        self.environment_name = environment_name
        self.files = tuple(document.path for document in documents)
        self._documents = tuple(documents)
        self._raws = tuple(raws)
        self._schema = schema
        merged = [raw for document in documents for raw in document.raws(schema)]
        merged += raws
        self._entries, self._ignored_variables = _merge(merged, schema)
        values = {path: entry.value for path, entry in self._entries.items()}
        self.options: HostOptions = schema.host_options(values)
        _https_check(self.options, self._entries, content_root)
        _health_paths_check(self.options, self._entries)
        _event_loop_check(self.options, self._entries)
        self._plugin_options = {table.name.lower(): schema.options(table, values)
                                for table in schema.plugin_tables if table.name is not None}
        self._app_tables = _app_tables(merged, schema)

    @property
    def warnings(self) -> tuple[str, ...]:
        """What the host logs as it starts about this configuration: the ``HOSTKIT_*``
        environment variables that name no setting and were ignored (SPEC §9: a warning,
        not an error, since Kubernetes sets such variables for a service named hostkit)."""
        return _ignored_variables_warning(self._ignored_variables)

    def log_warnings(self) -> None:
        """Log :attr:`warnings` on logger ``hostkit.configuration``: called once, by the
        host of the process that the environment was given to (not a supervisor's worker
        or a front's child, which inherit the same variables)."""
        for warning in self.warnings:
            logger.warning("%s", warning)

    # -- reading ---------------------------------------------------------------------------

    def path(self, value: str) -> Path:
        """A file named by a setting: relative paths are relative to the content root."""
        return resolve_path(self.content_root, value)

    def get(self, key: str, default: Any = None) -> Any:
        """The value at a dotted key, or ``default`` when nothing sets it.

        For a table, returns a dict of its effective values.
        """
        path = tuple(part.lower() for part in key.split("."))
        entry = self._entries.get(path)
        if entry is not None:
            return entry.value
        table = {p[len(path)]: e.value for p, e in self._entries.items()
                 if len(p) == len(path) + 1 and p[:len(path)] == path}
        return table if table else default

    def __getitem__(self, key: str) -> Any:
        value = self.get(key, _MISSING)
        if value is _MISSING:
            raise KeyError(key)
        return value

    def __iter__(self) -> Iterator[str]:
        seen: dict[str, None] = {}
        for path in self._entries:
            seen.setdefault(path[0], None)
        return iter(seen)

    def __len__(self) -> int:
        return sum(1 for _ in self)

    def source_of(self, key: str) -> Source | None:
        """Where the effective value of a dotted key came from; ``None`` if nothing sets it."""
        entry = self._entries.get(tuple(part.lower() for part in key.split(".")))
        return entry.source if entry is not None else None

    def entries(self) -> list[Entry]:
        """Every value some source set, with that source, in the order they were read."""
        return list(self._entries.values())

    def effective_entries(self) -> list[Entry]:
        """Every setting of the schema (set or default) in schema order (hostkit's tables,
        then the plugins'), then the app's values."""
        result = [self._entries.get(path) or _default_entry(path, field)
                  for path, field in self._schema.fields().items()]
        result += [entry for path, entry in self._entries.items()
                   if path not in self._schema.fields()]
        return result

    def with_values(self, values: Mapping[str, Any], source: Source) -> Configuration:
        """A copy with ``values`` (dotted keys) set from ``source``, validated like any other.

        Used when code, not a file, decides a value: e.g. the out-of-process integration
        pointing a child's ``urls`` at its loopback port.
        """
        raws = [_Raw(key, value, source, is_text=False) for key, value in values.items()]
        return self._merged_with(raws, self._schema)

    def with_sources(self, args: Sequence[str] = (),
                     environ: Mapping[str, str] | None = None) -> Configuration:
        """A copy with the ``HOSTKIT_*`` variables of ``environ``, then the ``--key=value``
        ``args``, applied on top, read and validated as :func:`load_configuration` reads them.

        Used by a front to know what a child started with its own arguments and variables
        will run. Raises :class:`ConfigurationError` like :func:`load_configuration`.
        """
        _, argument_raws = split_arguments(args)
        return self._merged_with([*_read_environment(environ or {}), *argument_raws],
                                 self._schema)

    def with_tables(self, tables: Iterable[SettingsTable]) -> Configuration:
        """A copy validated against this schema plus the plugins' ``tables``: their keys get
        hostkit's validation, errors, defaults and secrets instead of passing as the app's.

        Called by ``HostBuilder.build`` with every table the plugins contributed, and by
        ``hostkit config``. Returns ``self`` when the schema already has every table. Raises
        :class:`ConfigurationError` for a bad key or value of a table (naming its source) and
        for a table whose name another table has.
        """
        schema = self._schema.with_tables(tables)
        return self if schema is self._schema else self._merged_with((), schema)

    def reloaded(self) -> Configuration:
        """A copy with the configuration files read again (the variables, arguments and code
        values as they were), validated against the same schema; for a reload. Raises
        :class:`ConfigurationError` like :func:`load_configuration`."""
        documents = [_read_file(path) for path in
                     configuration_files(self.content_root, self.environment_name)
                     if path.is_file()]
        return Configuration(self.content_root, self.environment_name, documents, self._raws,
                             self._schema)

    def _merged_with(self, raws: Sequence[_Raw], schema: Schema) -> Configuration:
        return Configuration(self.content_root, self.environment_name, self._documents,
                             [*self._raws, *raws], schema)

    def bind(self, table: SettingsTable) -> Any:
        """The options of a plugin's ``table``: an instance of ``table.options``, validated,
        defaults where nothing sets a key.

        Called by the plugin that contributed the table, once the host is built (its schema
        has every contributed table then). A configuration whose schema lacks the table is
        merged again with it first (:meth:`with_tables`), so a plugin may read its table from
        any configuration. Raises :class:`ConfigurationError` for a bad key or value, naming
        its source.
        """
        if table.name is None:
            raise ValueError("a plugin table needs a name")
        if self._schema.table(table.name) != table:
            return self.with_tables([table]).bind(table)
        return self._plugin_options[table.name.lower()]

    def check_app_tables(self, known_names: Iterable[str] = ()) -> None:
        """Refuse an app table whose name is a typo of a known table (``[modul]``).

        The known tables are those of the schema (hostkit's own, and the plugins' once
        :meth:`with_tables` added them) and ``known_names``. Called once every plugin's tables
        are known (``HostBuilder.build``): until then a plugin's table could pass for a typo.
        A typo is a name much like a known one and about as long (``_NEAR_MISS_*``), so an
        app's own names (``[myapp]``, ``[database]``, ``[mymodule]``) pass. Raises :class:`ConfigurationError` naming where the table is
        written and the table meant.
        """
        known = {name.lower() for name in known_names}
        known |= {table.name.lower() for table in self._schema.tables() if table.name}
        for lowered, table in self._app_tables.items():
            if lowered in known:
                continue
            meant = _near_miss(lowered, known)
            if meant is not None:
                raise ConfigurationError(
                    f"{table.source}: unknown table [{table.name}]; did you mean [{meant}]? "
                    "(an app's own table needs a name of its own, not one this close to "
                    "hostkit's or a plugin's)")


_MISSING = object()


def _near_miss(name: str, known: Iterable[str]) -> str | None:
    """The known table name ``name`` is a typo of, or None when it is a name of its own."""
    for candidate in difflib.get_close_matches(name, sorted(known), n=3,
                                               cutoff=_NEAR_MISS_CUTOFF):
        if abs(len(candidate) - len(name)) <= _NEAR_MISS_LENGTH:
            return candidate
    return None


def _convert(field: dataclasses.Field[Any], value: Any, source: Source, key: str,
             is_text: bool) -> Any:
    kind = field.metadata["kind"]
    try:
        return kind.from_text(value) if is_text and isinstance(value, str) else kind.convert(value)
    except InvalidValue as error:
        raise ConfigurationError(f"{source}: invalid value {value!r} for {key!r}; {error}") from None


# -- reading the sources ---------------------------------------------------------------------


def _read_file(path: Path) -> _Document:
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as error:
        raise ConfigurationError(f"cannot read {path}: {error.strerror}") from None
    try:
        values = tomllib.loads(text)
    except tomllib.TOMLDecodeError as error:
        raise ConfigurationError(f"file {path}: malformed TOML: {error}") from None
    return _Document(path, values, key_lines(text))


def _read_environment(environ: Mapping[str, str]) -> list[_Raw]:
    raws = []
    for name, value in environ.items():
        upper = name.upper()
        if not upper.startswith(ENVIRONMENT_PREFIX) or upper in NON_CONFIGURATION_VARIABLES:
            continue
        key = ".".join(name[len(ENVIRONMENT_PREFIX):].split("__"))
        raws.append(_Raw(key, value, Source("environment", name), is_text=True))
    return raws


#: Conventional command-line names (uvicorn's, gunicorn's) for keys: ``--workers 4``.
SHORTHANDS = {"workers": "workers.processes", "reload": "workers.reload",
              "log_level": "logging.level"}
#: Shorthands that may stand alone as a switch: ``--reload`` is ``--reload=true``.
FLAGS = frozenset({"reload"})
#: ``--host`` and ``--port``, with what each is when only the other is given: together
#: they are ``urls = ["http://HOST:PORT"]``.
ADDRESS_SHORTHANDS = {"host": "127.0.0.1", "port": "5000"}
_HOST_NAME = re.compile(r"[A-Za-z0-9_](?:[A-Za-z0-9_.-]*[A-Za-z0-9_])?")


def split_arguments(args: Sequence[str]) -> tuple[dict[str, str], list[_Raw]]:
    """Parse ``--key=value``, ``--key value`` and ``--table:key=value`` arguments, and the
    shorthands (:data:`SHORTHANDS`, ``--host``/``--port``).

    Returns the host arguments (``content_root``, ``environment``) and the configuration
    values. Anything else is a :class:`ConfigurationError` naming the argument.
    """
    host: dict[str, str] = {}
    raws: list[_Raw] = []
    address: dict[str, tuple[str, str]] = {}  # host/port: (value, the argument as written)
    for written, name, value in _options(args):
        argument = " ".join(written)
        if name is None:
            raise ConfigurationError(
                f"command-line argument {argument!r}: expected --key=value or --table:key=value")
        normalized = name.replace("-", "_").lower()
        if normalized in HOST_ARGUMENTS:
            host[normalized] = value
        elif normalized in ADDRESS_SHORTHANDS:
            address[normalized] = (value, argument)
        else:
            key = SHORTHANDS.get(normalized) or ".".join(name.replace("__", ":").split(":"))
            raws.append(_Raw(key, value, Source("argument", argument), is_text=True))
    if address:
        raws.append(_address_argument(address, raws))
    return host, raws


def split_target(args: Sequence[str]) -> tuple[str | None, list[str]]:
    """The first argument that is neither an option nor an option's value (``hostkit run``'s
    ``MODULE:ATTR``, wherever it is among the options), and the other arguments in order;
    ``None`` when there is none."""
    target: str | None = None
    rest: list[str] = []
    for written, name, _ in _options(args):
        if name is None and target is None:
            target = written[0]
        else:
            rest += written
    return target, rest


def _options(args: Sequence[str]) -> Iterator[tuple[tuple[str, ...], str | None, str]]:
    """Each option as ``(the arguments it takes, name, value)``: ``--name=value``,
    ``--name value`` (two arguments), a switch of :data:`FLAGS` (value ``"true"``); any
    other argument as ``((argument,), None, "")``."""
    items = list(args)
    index = 0
    while index < len(items):
        argument = items[index]
        index += 1
        body = argument[2:]
        if not argument.startswith("--") or not body:
            yield (argument,), None, ""
        elif "=" in body:
            name, value = body.split("=", 1)
            yield (argument,), name, value
        elif body.replace("-", "_").lower() in FLAGS:
            yield (argument,), body, "true"
        elif index < len(items) and not items[index].startswith("--"):
            index += 1
            yield (argument, items[index - 1]), body, items[index - 1]
        else:
            yield (argument,), None, ""


def _address_argument(address: Mapping[str, tuple[str, str]], raws: Sequence[_Raw]) -> _Raw:
    """``urls`` from ``--host`` and ``--port`` (``address``: each one's value and the
    argument as written), refused beside a ``--urls`` in ``raws``."""
    written = " ".join(argument for _, argument in address.values())
    urls = next((raw for raw in raws if raw.key.strip().lower() == "urls"), None)
    if urls is not None:
        raise ConfigurationError(
            f"command-line arguments {written} and {urls.source.name}: both set urls "
            "(--host and --port are a shorthand for urls = [\"http://HOST:PORT\"]); "
            "give one or the other")
    port = address.get("port", (ADDRESS_SHORTHANDS["port"], ""))[0].strip()
    if not port.isdigit() or int(port) > 65535:
        raise ConfigurationError(f"command-line argument {address['port'][1]}: invalid port "
                                 f"{port!r}; allowed: a whole number from 0 to 65535")
    name = address.get("host", (ADDRESS_SHORTHANDS["host"], ""))[0].strip().strip("[]")
    url = f"http://[{name}]:{int(port)}" if ":" in name else f"http://{name}:{int(port)}"
    try:
        if not _HOST_NAME.fullmatch(name):
            ipaddress.ip_address(name)
        parse_url(url)
    except (ValueError, ConfigurationError):
        raise ConfigurationError(
            f"command-line argument {address['host'][1]}: invalid host {name!r}; allowed: "
            "a host name or an IP address (0.0.0.0 or :: for every interface)") from None
    return _Raw("urls", [url], Source("argument", written), is_text=False)


def configuration_files(content_root: Path, environment: str) -> tuple[Path, Path]:
    """The files the configuration of ``environment`` is read from, lowest precedence first:
    ``hostkit.toml`` and ``hostkit.{environment}.toml`` in ``content_root``.

    Called by the loader, which skips a file that does not exist, and by whatever watches
    the files for changes (a missing one may appear later). The environment file is matched
    case-insensitively on case-sensitive disks: for Development an existing
    ``hostkit.development.toml`` is the one returned.
    """
    wanted = f"hostkit.{environment}.toml"
    exact = content_root / wanted
    if not exact.is_file():
        try:
            for candidate in content_root.iterdir():
                if candidate.name.lower() == wanted.lower() and candidate.is_file():
                    return content_root / CONFIG_FILE, candidate
        except OSError:
            pass
    return content_root / CONFIG_FILE, exact


# -- merging --------------------------------------------------------------------------------


def _merge(raws: Iterable[_Raw], schema: Schema
           ) -> tuple[dict[KeyPath, Entry], tuple[tuple[str, str], ...]]:
    """Validate ``raws`` in order against ``schema``, later ones winning.

    Returns the entries, and the environment variables that name no setting, ignored: each
    with the schema's suggestion (``"did you mean 'urls'?"``, or ``""``). An unknown key
    from a file or an argument is a :class:`ConfigurationError`.
    """
    entries: dict[KeyPath, Entry] = {}
    ignored: dict[str, str] = {}
    for raw in raws:
        try:
            path, field = schema.resolve(raw.key)
        except UnknownKey as error:
            if raw.source.kind == "environment":
                suggestion = _SUGGESTION.search(str(error))
                ignored[raw.source.name] = suggestion.group(0) if suggestion else ""
                continue
            raise ConfigurationError(f"{raw.source}: {error}") from None
        value = raw.value
        if field is not None:
            value = _convert(field, raw.value, raw.source, ".".join(path), raw.is_text)
        else:
            # An app value set as a whole table replaces what an earlier source set below it.
            for existing in [p for p in entries if p[:len(path)] == path and p != path]:
                del entries[existing]
        display = ".".join(path) if field is not None else raw.key
        entries[path] = Entry(display, value, raw.source, _is_secret(path, field))
    return entries, tuple(sorted(ignored.items()))


# What schema.did_you_mean puts in an UnknownKey's message.
_SUGGESTION = re.compile(r"did you mean \S+\?")
# The variables Kubernetes sets for every Service in the namespace (enableServiceLinks):
# {NAME}_SERVICE_HOST, {NAME}_SERVICE_PORT[_{PORT NAME}], {NAME}_PORT[_{N}_{PROTO}[_…]].
_SERVICE_LINK = re.compile(
    r"_(SERVICE_HOST|SERVICE_PORT(_\w+)?|PORT(_\d+_(TCP|UDP|SCTP)(_\w+)?)?)$")


def _ignored_variables_warning(ignored: Sequence[tuple[str, str]]) -> tuple[str, ...]:
    """One warning naming every ignored ``HOSTKIT_*`` variable (with a suggestion when one
    is close to a setting), and saying where Kubernetes' come from; ``()`` for none."""
    if not ignored:
        return ()
    links = {name: match for name, _ in ignored if (match := _SERVICE_LINK.search(name))}
    names = ", ".join(f"{name} ({suggestion})" if suggestion and name not in links else name
                      for name, suggestion in ignored)
    plural = len(ignored) > 1
    warning = (f"ignored environment variable{'s' if plural else ''} {names}: "
               f"{'they name' if plural else 'it names'} no hostkit setting "
               "(HOSTKIT_KEY and HOSTKIT_TABLE__KEY set settings)")
    services = sorted({name[:match.start()].lower().replace("_", "-")
                       for name, match in links.items()})
    if services:
        warning += (f"; Kubernetes sets such variables for every Service in the namespace, "
                    f"these for one named {', '.join(services)}: enableServiceLinks: false "
                    "in the pod spec turns them off")
    return (warning,)


def _app_tables(raws: Iterable[_Raw], schema: Schema) -> dict[str, _AppTable]:
    """Every top-level table of ``raws`` that ``schema`` does not know, by lower-case name,
    where it is first written."""
    tables: dict[str, _AppTable] = {}
    for raw in raws:
        parts = raw.key.split(".")
        name = parts[0].strip()
        if len(parts) > 1 and schema.table(name) is None:
            tables.setdefault(name.lower(), _AppTable(name, raw.table_source or raw.source))
    return tables


def _is_secret(path: KeyPath, field: dataclasses.Field[Any] | None) -> bool:
    if field is not None:
        return bool(field.metadata.get("secret"))
    return any(word in part for part in path for word in _SECRET_WORDS)


def _default_entry(path: KeyPath, field: dataclasses.Field[Any]) -> Entry:
    return Entry(".".join(path), field_default(field), DEFAULT_SOURCE,
                 bool(field.metadata.get("secret")))


def _health_paths_check(options: HostOptions, entries: Mapping[KeyPath, Entry]) -> None:
    """Each health path has one purpose: ``liveness_path``, ``readiness_path`` and
    ``app_path`` differ (hostkit answers the first two itself, so an app_path equal to one
    would never reach the app)."""
    seen: dict[str, str] = {}
    for key, path in options.health.paths().items():
        other = seen.get(path)
        if other is not None:
            entry = entries.get(("health", key))
            where = f"{entry.source}: " if entry is not None else ""
            other_entry = entries.get(("health", other))
            other_where = f" (set by {other_entry.source})" if other_entry is not None else ""
            raise ConfigurationError(
                f"{where}health.{key} = {path!r} is also health.{other}{other_where}; each "
                "health path must be different: liveness_path and readiness_path are "
                "answered by hostkit itself, app_path by the app")
        seen[path] = key


def _event_loop_check(options: HostOptions, entries: Mapping[KeyPath, Entry]) -> None:
    """``event_loop`` names a loop this process can run with ``async_backend``: not uvloop
    with trio, nor uvloop when it cannot be imported (:func:`choose_event_loop` decides)."""
    try:
        choose_event_loop(options.async_backend, options.event_loop)
    except EventLoopError as error:
        entry = entries.get(("event_loop",))
        where = entry.source if entry is not None else DEFAULT_SOURCE
        if options.async_backend == "trio":
            backend = entries.get(("async_backend",))
            backend_where = f" (set by {backend.source})" if backend is not None else ""
            raise ConfigurationError(
                f"{where}: event_loop = {options.event_loop!r} cannot run with async_backend "
                f"= 'trio'{backend_where}: {error}; with trio use \"auto\" or \"asyncio\" "
                "(both run trio), or set async_backend = \"asyncio\"") from None
        raise ConfigurationError(
            f"{where}: invalid value {options.event_loop!r} for 'event_loop'; {error}") from None


def _https_check(options: HostOptions, entries: Mapping[KeyPath, Entry],
                 content_root: Path) -> None:
    """With an ``https://`` url: the [tls] files must be set and exist, and client
    certificates need ``client_ca`` (trusting every CA of the system for client
    authentication would let any public CA vouch for a user)."""
    if not any(url.lower().startswith("https://") for url in options.urls):
        return
    tls = options.tls
    missing = [name for name in ("certificate", "private_key") if not getattr(tls, name)]
    if missing:
        source = entries.get(("urls",))
        where = f"{source.source}: " if source else ""
        raise ConfigurationError(
            f"{where}urls contains an https:// address but "
            f"{' and '.join('tls.' + name for name in missing)} "
            f"{'is' if len(missing) == 1 else 'are'} not set; add a [tls] table with "
            "certificate and private_key")
    if tls.client_certificate_mode != "none" and not tls.client_ca:
        entry = entries[("tls", "client_certificate_mode")]
        raise ConfigurationError(
            f"{entry.source}: tls.client_certificate_mode = {tls.client_certificate_mode!r} "
            "needs tls.client_ca, the CA certificates client certificates must chain to")
    for name in ("certificate", "private_key", "client_ca"):
        value = getattr(tls, name)
        if value and not resolve_path(content_root, value).is_file():
            entry = entries[("tls", name)]
            raise ConfigurationError(
                f"{entry.source}: tls.{name} = {value!r}: no such file "
                f"({resolve_path(content_root, value)})")


def resolve_path(content_root: Path, value: str) -> Path:
    """A path from a setting: relative paths are relative to the content root."""
    path = Path(value).expanduser()
    return path if path.is_absolute() else content_root / path


def reload_configuration(configuration: Configuration) -> Configuration | None:
    """``configuration`` with its files read again, or ``None`` when they no longer load: the
    error is logged and the reload refused, so the running processes keep serving.

    What every reload reads (SIGHUP, a change of a configuration file): the host's, the
    supervisor's and the module's.
    """
    try:
        return configuration.reloaded()
    except ConfigurationError as error:
        logger.error("reload refused, the running processes keep serving: %s", error)
        return None


def load_configuration(
    args: Sequence[str] = (),
    environ: Mapping[str, str] | None = None,
    *,
    content_root: str | os.PathLike[str] | None = None,
    overrides: Mapping[str, Any] | None = None,
) -> Configuration:
    """Read every source in precedence order and return the configuration, validated against
    hostkit's own tables (the plugins' are added by :meth:`Configuration.with_tables`).

    ``overrides`` are values set in code (e.g. by the module for its child); they win over
    every other source. Raises :class:`ConfigurationError` for any bad file, key or value.
    """
    environ = os.environ if environ is None else environ
    # Taken before any worker or child can start: they must not take systemd's for theirs.
    inherited = systemd.inherited()
    activated = inherited.listen_fds if environ is os.environ else systemd.listen_fds(environ)
    host_arguments, argument_raws = split_arguments(args)

    root = Path(host_arguments.get("content_root")
                or content_root or environ.get("HOSTKIT_CONTENT_ROOT") or os.getcwd())
    root = root.resolve()
    if not root.is_dir():
        raise ConfigurationError(f"content root {root} is not a directory")
    environment = (host_arguments.get("environment")
                   or environ.get("HOSTKIT_ENVIRONMENT") or DEFAULT_ENVIRONMENT)

    documents = [_read_file(path) for path in configuration_files(root, environment)
                 if path.is_file()]
    raws = [*_read_environment(environ), *argument_raws]
    raws += [_Raw(key, value, CODE_SOURCE, is_text=False)
             for key, value in (overrides or {}).items()]
    configuration = Configuration(root, environment, documents, raws)
    if activated and configuration.source_of("urls") is None:
        # As gunicorn does: the activated sockets are what to serve, unless a source says
        # otherwise (fd://N entries, or other addresses).
        configuration = configuration.with_values(
            {"urls": [f"fd://{fd}" for fd in activated]}, SOCKET_ACTIVATION_SOURCE)
    return configuration
