"""Layered configuration: the one place that reads and validates settings.

Sources, later ones winning (SPEC §3):

1. ``hostkit.toml`` in the content root;
2. ``hostkit.{environment}.toml``;
3. environment variables ``HOSTKIT_*`` (prefix stripped, ``__`` separates tables);
4. command-line arguments ``--key=value`` / ``--table:key=value``.

Keys are case-insensitive. Every value of hostkit's own tables is validated as it is read, so
an error names the source it came from. Top-level tables hostkit does not know belong to the
app and pass through unvalidated; a plugin can claim one later with :meth:`Configuration.bind`.
"""

from __future__ import annotations

import dataclasses
import functools
import os
import re
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any, TypeVar

from hostkit import child_contract
from hostkit._compat import tomllib
from hostkit.errors import ConfigurationError
from hostkit.configuration.tables import (
    HOST_TABLES,
    HostOptions,
    InvalidValue,
    SettingsTable,
    TextTable,
    field_default,
)

T = TypeVar("T")

ENVIRONMENT_PREFIX = "HOSTKIT_"
DEFAULT_ENVIRONMENT = "Production"
CONFIG_FILE = "hostkit.toml"

# HOSTKIT_* variables that are not configuration keys: they choose where configuration comes
# from, control plugin loading, or carry the module's contract with its child.
NON_CONFIGURATION_VARIABLES = frozenset({
    "HOSTKIT_ENVIRONMENT", "HOSTKIT_CONTENT_ROOT", "HOSTKIT_DISABLE_PLUGIN_AUTOLOAD",
    "HOSTKIT_TRACE_PLUGINS",
}) | child_contract.VARIABLES

# Settings that choose the content root and environment are arguments, not keys.
HOST_ARGUMENTS = ("content_root", "environment")

# ``server = "NAME"`` and a ``[server]`` table cannot share one TOML file, so the table may
# also carry the name as ``[server] name``.
_ALIASES = {("server", "name"): (None, "server")}

_SECRET_WORDS = ("password", "secret", "token", "private")


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


@dataclasses.dataclass(frozen=True)
class Entry:
    """One effective value: its dotted key as written, the value, and where it came from."""

    key: str
    value: Any
    source: Source
    secret: bool = False


@dataclasses.dataclass
class _Raw:
    key: str
    value: Any
    source: Source
    is_text: bool


@functools.cache
def _table_index() -> dict[str | None, tuple[SettingsTable, str]]:
    return {table.name: (table, attribute) for table, attribute in HOST_TABLES}


@functools.cache
def _host_fields() -> dict[tuple[str, ...], dataclasses.Field[Any]]:
    """Every hostkit setting by its lower-case path: ("urls",), ("module", "eager_start"), …"""
    return {
        ((field.name,) if table.name is None else (table.name, field.name)): field
        for table, _ in HOST_TABLES for field in table.fields()
    }


class Configuration(Mapping[str, Any]):
    """The merged configuration of one host.

    ``options`` holds hostkit's own settings, typed and validated. Item access and :meth:`get`
    reach any key case-insensitively with dotted paths (``"module.startup_time_limit"``,
    ``"myapp.greeting"``); values of app tables from environment variables or arguments are
    strings, as in ASP.NET Core.
    """

    def __init__(self, options: HostOptions, entries: Mapping[tuple[str, ...], Entry],
                 content_root: Path, environment_name: str, files: Sequence[Path]):
        self.options = options
        self._entries = dict(entries)
        self.content_root = content_root
        self.environment_name = environment_name
        self.files = tuple(files)

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
        """Every hostkit setting (set or default) in schema order, then the app's values."""
        result = [self._entries.get(tuple(entry.key.split(".")), entry)
                  for entry in default_entries()]
        result += [entry for path, entry in self._entries.items() if path not in _host_fields()]
        return result

    def with_values(self, values: Mapping[str, Any], source: Source) -> Configuration:
        """A copy with ``values`` (dotted keys) set from ``source``, validated like any other.

        Used when code, not a file, decides a value: e.g. the out-of-process integration
        pointing a child's ``urls`` at its loopback port.
        """
        raws = [_Raw(key, value, source, is_text=False) for key, value in values.items()]
        entries = _merge(raws, dict(self._entries))
        options = _build_options(entries)
        _https_check(options, entries, self.content_root)
        return Configuration(options, entries, self.content_root, self.environment_name,
                             self.files)

    def bind(self, table: SettingsTable) -> Any:
        """Validate the app-level table ``table.name`` against a plugin's schema.

        Called by a plugin that contributed a settings table. Returns an instance of
        ``table.options``; keys the table does not declare raise :class:`ConfigurationError`.
        """
        if table.name is None:
            raise ValueError("a plugin table needs a name")
        prefix = (table.name.lower(),)
        fields = {f.name.lower(): f for f in table.fields()}
        values: dict[str, Any] = {}
        for path, entry in self._entries.items():
            if path[:1] != prefix:
                continue
            if len(path) != 2 or path[1] not in fields:
                raise ConfigurationError(
                    f"{entry.source}: unknown key {entry.key!r} in table [{table.name}]; "
                    f"allowed: {', '.join(sorted(fields))}")
            field = fields[path[1]]
            values[field.name] = _convert(field, entry.value, entry.source, entry.key,
                                          isinstance(entry.value, str))
        return table.options(**values)


_MISSING = object()


def _convert(field: dataclasses.Field[Any], value: Any, source: Source, key: str,
             is_text: bool) -> Any:
    kind = field.metadata["kind"]
    try:
        return kind.from_text(value) if is_text and isinstance(value, str) else kind.convert(value)
    except InvalidValue as error:
        raise ConfigurationError(f"{source}: invalid value {value!r} for {key!r}; {error}") from None


# -- reading the sources ---------------------------------------------------------------------


def _line_of(text: str, name: str) -> int | None:
    """The first line of a TOML file that assigns ``name`` (case-insensitive), if any."""
    pattern = re.compile(rf"^\s*(\"?){re.escape(name)}\1\s*=", re.IGNORECASE)
    for number, line in enumerate(text.splitlines(), start=1):
        if pattern.match(line):
            return number
    return None


def _read_file(path: Path) -> list[_Raw]:
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as error:
        raise ConfigurationError(f"cannot read {path}: {error.strerror}") from None
    try:
        document = tomllib.loads(text)
    except tomllib.TOMLDecodeError as error:
        raise ConfigurationError(f"file {path}: malformed TOML: {error}") from None

    raws: list[_Raw] = []

    def walk(prefix: tuple[str, ...], table: Mapping[str, Any]) -> None:
        for name, value in table.items():
            key = prefix + (name,)
            # Leaves are scalars and arrays; hostkit's own keys that take tables are leaves too.
            if isinstance(value, dict) and not _is_table_valued(key):
                walk(key, value)
            else:
                source = Source("file", str(path), _line_of(text, name))
                raws.append(_Raw(".".join(key), value, source, is_text=False))

    walk((), document)
    return raws


def _is_table_valued(key: tuple[str, ...]) -> bool:
    """True for hostkit settings whose value is itself a table (module.environment_variables)."""
    field = _host_fields().get(tuple(part.lower() for part in key))
    return field is not None and isinstance(field.metadata["kind"], TextTable)


def _read_environment(environ: Mapping[str, str]) -> list[_Raw]:
    raws = []
    for name, value in environ.items():
        upper = name.upper()
        if not upper.startswith(ENVIRONMENT_PREFIX) or upper in NON_CONFIGURATION_VARIABLES:
            continue
        key = ".".join(name[len(ENVIRONMENT_PREFIX):].split("__"))
        raws.append(_Raw(key, value, Source("environment", name), is_text=True))
    return raws


def split_arguments(args: Sequence[str]) -> tuple[dict[str, str], list[_Raw]]:
    """Parse ``--key=value``, ``--key value`` and ``--table:key=value`` arguments.

    Returns the host arguments (``content_root``, ``environment``) and the configuration
    values. Anything else is a :class:`ConfigurationError` naming the argument.
    """
    host: dict[str, str] = {}
    raws: list[_Raw] = []
    items = list(args)
    index = 0
    while index < len(items):
        argument = items[index]
        index += 1
        if not argument.startswith("--") or len(argument) <= 2:
            raise ConfigurationError(
                f"command-line argument {argument!r}: expected --key=value or --table:key=value")
        body = argument[2:]
        if "=" in body:
            name, value = body.split("=", 1)
        elif index < len(items) and not items[index].startswith("--"):
            name, value = body, items[index]
            argument = f"{argument} {value}"
            index += 1
        else:
            raise ConfigurationError(
                f"command-line argument {argument!r}: expected --key=value or --table:key=value")
        normalized = name.replace("-", "_").lower()
        if normalized in HOST_ARGUMENTS:
            host[normalized] = value
            continue
        key = ".".join(name.replace("__", ":").split(":"))
        raws.append(_Raw(key, value, Source("argument", argument), is_text=True))
    return host, raws


def _environment_file(content_root: Path, environment: str) -> Path | None:
    """``hostkit.{environment}.toml``, matched case-insensitively on case-sensitive disks."""
    wanted = f"hostkit.{environment}.toml"
    exact = content_root / wanted
    if exact.is_file():
        return exact
    try:
        for candidate in content_root.iterdir():
            if candidate.name.lower() == wanted.lower() and candidate.is_file():
                return candidate
    except OSError:
        return None
    return None


# -- merging --------------------------------------------------------------------------------


def _resolve(raw: _Raw) -> tuple[tuple[str, ...], dataclasses.Field[Any] | None]:
    """The canonical lower-case path of a raw value and its hostkit field, if it has one.

    Raises :class:`ConfigurationError` for unknown keys in hostkit's own tables.
    """
    parts = tuple(part.strip().lower() for part in raw.key.split("."))
    if parts in _ALIASES:
        table_name, field_name = _ALIASES[parts]  # type: ignore[misc]
        parts = (field_name,) if table_name is None else (table_name, field_name)
    field = _host_fields().get(parts)
    if field is not None:
        return parts, field
    index = _table_index()
    if len(parts) == 1:
        if parts[0] in index:
            raise ConfigurationError(f"{raw.source}: {raw.key!r} is a table, not a value")
        allowed = [p[0] for p in _host_fields() if len(p) == 1]
        allowed += [f"[{name}]" for name in index if name]
        raise ConfigurationError(
            f"{raw.source}: unknown key {raw.key!r}; hostkit's top-level keys are "
            f"{', '.join(allowed)} (app settings belong in a table of their own)")
    if parts[0] in index:
        fields = sorted(p[1] for p in _host_fields() if len(p) == 2 and p[0] == parts[0])
        raise ConfigurationError(
            f"{raw.source}: unknown key {raw.key!r} in table [{parts[0]}]; "
            f"allowed: {', '.join(fields)}")
    return parts, None


def _is_secret(path: tuple[str, ...], field: dataclasses.Field[Any] | None) -> bool:
    if field is not None:
        return bool(field.metadata.get("secret"))
    return any(word in part for part in path for word in _SECRET_WORDS)


def _https_check(options: HostOptions, entries: Mapping[tuple[str, ...], Entry],
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


def load_configuration(
    args: Sequence[str] = (),
    environ: Mapping[str, str] | None = None,
    *,
    content_root: str | os.PathLike[str] | None = None,
    overrides: Mapping[str, Any] | None = None,
) -> Configuration:
    """Read every source in precedence order and return the validated configuration.

    ``overrides`` are values set in code (e.g. by the module for its child); they win over
    every other source. Raises :class:`ConfigurationError` for any bad file, key or value.
    """
    environ = os.environ if environ is None else environ
    host_arguments, argument_raws = split_arguments(args)

    root = Path(host_arguments.get("content_root")
                or content_root or environ.get("HOSTKIT_CONTENT_ROOT") or os.getcwd())
    root = root.resolve()
    if not root.is_dir():
        raise ConfigurationError(f"content root {root} is not a directory")
    environment = (host_arguments.get("environment")
                   or environ.get("HOSTKIT_ENVIRONMENT") or DEFAULT_ENVIRONMENT)

    files: list[Path] = []
    raws: list[_Raw] = []
    for path in (root / CONFIG_FILE, _environment_file(root, environment)):
        if path is not None and path.is_file():
            files.append(path)
            raws.extend(_read_file(path))
    raws.extend(_read_environment(environ))
    raws.extend(argument_raws)
    for key, value in (overrides or {}).items():
        raws.append(_Raw(key, value, CODE_SOURCE, is_text=False))

    entries = _merge(raws, {})
    options = _build_options(entries)
    _https_check(options, entries, root)
    return Configuration(options, entries, root, environment, files)


def _merge(raws: Sequence[_Raw], entries: dict[tuple[str, ...], Entry]
           ) -> dict[tuple[str, ...], Entry]:
    """Validate ``raws`` in order into ``entries``, later ones winning. Returns ``entries``."""
    for raw in raws:
        path, field = _resolve(raw)
        value = raw.value
        if field is not None:
            value = _convert(field, raw.value, raw.source, ".".join(path), raw.is_text)
        else:
            # An app value set as a whole table replaces what an earlier source set below it.
            for existing in [p for p in entries if p[:len(path)] == path and p != path]:
                del entries[existing]
        display = ".".join(path) if field is not None else raw.key
        entries[path] = Entry(display, value, raw.source, _is_secret(path, field))
    return entries


def _build_options(entries: Mapping[tuple[str, ...], Entry]) -> HostOptions:
    values: dict[str | None, dict[str, Any]] = {table.name: {} for table, _ in HOST_TABLES}
    for path, field in _host_fields().items():
        if path in entries:
            values[path[0] if len(path) == 2 else None][field.name] = entries[path].value
    tables = {attribute: table.options(**values[table.name])
              for table, attribute in HOST_TABLES if table.name is not None}
    return HostOptions(**values[None], **tables)


def default_entries() -> list[Entry]:
    """Every hostkit setting at its default, in schema order."""
    result = []
    for path, field in _host_fields().items():
        result.append(Entry(".".join(path), field_default(field), DEFAULT_SOURCE,
                            bool(field.metadata.get("secret"))))
    return result
