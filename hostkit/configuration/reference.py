"""Renders ``hostkit.toml.example`` from the settings schema: hostkit's own tables
(``hostkit/configuration/tables.py``), then the tables of the plugins every host loads.

    python -m hostkit.configuration.reference > hostkit.toml.example

A test checks the committed file equals this output, so the example never drifts.
"""

from __future__ import annotations

from collections.abc import Sequence

from hostkit.configuration.schema import Schema, contributed_tables
from hostkit.configuration.tables import SettingsTable, field_default, toml_literal
from hostkit.plugin_manager import Plugins

HEADER = """\
# hostkit.toml: every setting hostkit and its built-in plugins read, with its default (generated
# from their settings tables by `python -m hostkit.configuration.reference`; do not edit by hand).
#
# Sources, later ones winning: hostkit.toml, hostkit.{environment}.toml (HOSTKIT_ENVIRONMENT,
# default Production), HOSTKIT_* environment variables (HOSTKIT_MODULE__STARTUP_TIME_LIMIT=5),
# command-line arguments (--module:startup_time_limit=5). Keys are case-insensitive.
# Tables hostkit does not know belong to your app and are passed through untouched.
#
# TOML cannot hold both `server = "NAME"` and a [server] table in one file: when you need both,
# write the name inside the table as `name = "NAME"`.
"""


def builtin_plugin_tables() -> list[SettingsTable]:
    """The tables contributed by the plugins every host loads: the ``hostkit`` entry points as
    with ``HOSTKIT_DISABLE_PLUGIN_AUTOLOAD=1`` (hostkit's built-in plugins, no third party)."""
    plugins = Plugins({"HOSTKIT_DISABLE_PLUGIN_AUTOLOAD": "1"})
    plugins.load_entry_points()
    return contributed_tables(plugins)


def render_example(plugin_tables: Sequence[SettingsTable] | None = None) -> str:
    """The text of ``hostkit.toml.example``: every key commented out at its default, hostkit's
    tables first, then ``plugin_tables`` (default: :func:`builtin_plugin_tables`)."""
    if plugin_tables is None:
        plugin_tables = builtin_plugin_tables()
    lines = [HEADER]
    for table in Schema(plugin_tables).tables():
        if table.name is not None:
            lines.append(f"\n# {table.doc}\n[{table.name}]")
        for field in table.fields():
            kind = field.metadata["kind"]
            lines.append(f"# {field.metadata['doc']}")
            lines.append(f"#   allowed: {kind.allowed}")
            lines.append(f"# {field.name} = {toml_literal(field_default(field))}")
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    print(render_example(), end="")
