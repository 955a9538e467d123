"""The schema a configuration is validated against: hostkit's own tables, then the tables the
plugins contributed through ``hostkit_add_settings_tables``.

A :class:`Schema` answers what the loader asks about a key: which setting it is (or that no
table declares it, and which valid name is closest), whether its value is itself a table, and
what the typed options of each table are once the values are validated. hostkit's tables and
a plugin's are alike to it, so a plugin's table gets the same validation, errors, defaults,
secrets and place in ``hostkit config`` and ``hostkit.toml.example`` as hostkit's own.
"""

from __future__ import annotations

import dataclasses
import difflib
from collections.abc import Iterable, Mapping, Sequence
from typing import TYPE_CHECKING, Any

from hostkit.configuration.key_lines import KeyPath
from hostkit.configuration.tables import HOST_TABLES, HostOptions, SettingsTable, TextTable
from hostkit.errors import ConfigurationError

if TYPE_CHECKING:
    from hostkit.plugin_manager import Plugins

# ``server = "NAME"`` and a ``[server]`` table cannot share one TOML file, so the table may
# also carry the name as ``[server] name``.
_ALIASES: dict[KeyPath, KeyPath] = {("server", "name"): ("server",)}


class UnknownKey(ValueError):
    """A key in one of the schema's tables that the table does not declare, or an unknown
    top-level key; the message says what is allowed (the loader adds where it was written)."""


class Schema:
    """hostkit's own tables (:data:`HOST_TABLES`), then ``plugin_tables`` in the order given.

    Immutable: :meth:`with_tables` returns a larger schema. Raises :class:`ConfigurationError`
    when a plugin's table takes the name of one of hostkit's tables or keys, or of another
    plugin's table, and :class:`ValueError` for a plugin table without a name.
    """

    def __init__(self, plugin_tables: Iterable[SettingsTable] = ()):
        self._tables: dict[str | None, SettingsTable] = {
            table.name and table.name.lower(): table for table, _ in HOST_TABLES}
        #: The plugins' tables, in the order given (without repeats).
        self.plugin_tables: tuple[SettingsTable, ...] = ()
        for table in plugin_tables:
            self._add(table)
        self._fields: dict[KeyPath, dataclasses.Field[Any]] = {
            _path(table, field): field for table in self._tables.values()
            for field in table.fields()}

    def _add(self, table: SettingsTable) -> None:
        if table.name is None:
            raise ValueError(f"a plugin's settings table needs a name: {table!r}")
        name = table.name.lower()
        known = self._tables.get(name)
        if known == table:
            return
        if known is not None:
            whose = "another plugin's" if known in self.plugin_tables else "hostkit's own"
            raise ConfigurationError(
                f"plugin settings table [{table.name}] ({table.options.__qualname__}) has the "
                f"name of {whose} table [{known.name}] ({known.options.__qualname__})")
        if any(field.name.lower() == name for field in self._tables[None].fields()):
            raise ConfigurationError(
                f"plugin settings table [{table.name}] has the name of hostkit's top-level "
                f"key {name!r}")
        self._tables[name] = table
        self.plugin_tables += (table,)

    def with_tables(self, tables: Iterable[SettingsTable]) -> Schema:
        """This schema with ``tables`` added after its own; tables it already has are skipped.
        Returns ``self`` when none is new."""
        new = [table for table in tables
               if table.name is None or self._tables.get(table.name.lower()) != table]
        return Schema([*self.plugin_tables, *new]) if new else self

    # -- what the loader asks -----------------------------------------------------------------

    def tables(self) -> list[SettingsTable]:
        """Every table, in documentation order: the top level, hostkit's tables, the plugins'."""
        return list(self._tables.values())

    def table(self, name: str) -> SettingsTable | None:
        """The table called ``name`` (any case), or None when it belongs to the app."""
        return self._tables.get(name.lower())

    def fields(self) -> Mapping[KeyPath, dataclasses.Field[Any]]:
        """Every setting by its key path, in documentation order."""
        return self._fields

    def is_table_valued(self, path: Sequence[str]) -> bool:
        """True for a setting whose value is itself a table (a :class:`TextTable`), so a file's
        sub-table at ``path`` is one value, not a table of settings."""
        field = self._fields.get(tuple(part.lower() for part in path))
        return field is not None and isinstance(field.metadata["kind"], TextTable)

    def resolve(self, key: str) -> tuple[KeyPath, dataclasses.Field[Any] | None]:
        """The key path of the dotted ``key`` (any case, aliases applied) and its setting;
        None for a key of an app table.

        Raises :class:`UnknownKey` for a key a table of the schema does not declare and for an
        unknown top-level key, suggesting the closest valid name.
        """
        path = tuple(part.strip().lower() for part in key.split("."))
        path = _ALIASES.get(path, path)
        field = self._fields.get(path)
        if field is not None:
            return path, field
        if len(path) == 1:
            if path[0] in self._tables:
                raise UnknownKey(f"{key!r} is a table, not a value")
            keys = [p[0] for p in self._fields if len(p) == 1]
            tables = [name for name in self._tables if name is not None]
            shown = {**{name: repr(name) for name in keys},
                     **{name: f"[{name}]" for name in tables}}
            raise UnknownKey(
                f"unknown key {key!r}; {did_you_mean(path[0], shown)}"
                f"hostkit's top-level keys are "
                f"{', '.join([*keys, *(f'[{name}]' for name in tables)])} "
                "(app settings belong in a table of their own)")
        if path[0] in self._tables:
            names = sorted(p[1] for p in self._fields if len(p) == 2 and p[0] == path[0])
            raise UnknownKey(
                f"unknown key {key!r} in table [{path[0]}]; "
                f"{did_you_mean(path[1], {name: repr(name) for name in names})}"
                f"allowed: {', '.join(names)}")
        return path, None

    # -- typed options --------------------------------------------------------------------------

    def host_options(self, values: Mapping[KeyPath, Any]) -> HostOptions:
        """hostkit's own options from validated ``values`` (by key path), defaults elsewhere."""
        tables = {attribute: self.options(table, values)
                  for table, attribute in HOST_TABLES if table.name is not None}
        return HostOptions(**self._arguments(self._tables[None], values), **tables)

    def options(self, table: SettingsTable, values: Mapping[KeyPath, Any]) -> Any:
        """An instance of ``table.options`` from validated ``values``, defaults elsewhere."""
        return table.options(**self._arguments(table, values))

    @staticmethod
    def _arguments(table: SettingsTable, values: Mapping[KeyPath, Any]) -> dict[str, Any]:
        paths = {field.name: _path(table, field) for field in table.fields()}
        return {name: values[path] for name, path in paths.items() if path in values}


def contributed_tables(plugins: Plugins) -> list[SettingsTable]:
    """The settings tables ``plugins`` contribute (``hostkit_add_settings_tables``), in the
    order the hook returns them.

    Called by ``HostBuilder`` and by the ``hostkit.toml.example`` renderer. Raises
    :class:`TypeError` for a result that is not a :class:`SettingsTable`.
    """
    contributed = []
    for tables in plugins.hook.hostkit_add_settings_tables():
        for table in tables or ():
            if not isinstance(table, SettingsTable):
                raise TypeError(f"hostkit_add_settings_tables returned {table!r}, "
                                "expected SettingsTable instances")
            contributed.append(table)
    return contributed


def did_you_mean(name: str, candidates: Mapping[str, str]) -> str:
    """``"did you mean X? "`` for the candidate closest to ``name`` (keys are lower-case
    names, values how to show them), or ``""`` when none is close."""
    close = difflib.get_close_matches(name.lower(), list(candidates), n=1)
    return f"did you mean {candidates[close[0]]}? " if close else ""


def _path(table: SettingsTable, field: dataclasses.Field[Any]) -> KeyPath:
    name = field.name.lower()
    return (name,) if table.name is None else (table.name.lower(), name)


#: hostkit's own tables only: what a configuration is validated against until the plugins'
#: tables are known.
HOST_SCHEMA = Schema()
