"""Renders ``hostkit.toml.example`` from the settings schema (``hostkit/configuration/tables.py``).

    python -m hostkit.configuration.reference > hostkit.toml.example

A test checks the committed file equals this output, so the example never drifts.
"""

from __future__ import annotations

from hostkit.configuration.tables import HOST_TABLES, field_default, toml_literal

HEADER = """\
# hostkit.toml: every setting hostkit reads, with its default (generated from hostkit/configuration/tables.py
# by `python -m hostkit.configuration.reference`; do not edit by hand).
#
# Sources, later ones winning: hostkit.toml, hostkit.{environment}.toml (HOSTKIT_ENVIRONMENT,
# default Production), HOSTKIT_* environment variables (HOSTKIT_MODULE__STARTUP_TIME_LIMIT=5),
# command-line arguments (--module:startup_time_limit=5). Keys are case-insensitive.
# Tables hostkit does not know belong to your app and are passed through untouched.
#
# TOML cannot hold both `server = "NAME"` and a [server] table in one file: when you need both,
# write the name inside the table as `name = "NAME"`.
"""


def render_example() -> str:
    """The text of ``hostkit.toml.example``: every key commented out at its default."""
    lines = [HEADER]
    for table, _ in HOST_TABLES:
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
