"""Serve :data:`bench.trivial_app.app` with hostkit InProcess on 127.0.0.1.

Usage: ``python -m bench.hostkit_inprocess_server PORT``. The benchmark runs it with
``HOSTKIT_DISABLE_PLUGIN_AUTOLOAD=1`` in an empty working directory, so only hostkit's
defaults apply. hostkit logs ``Now listening on: http://127.0.0.1:PORT`` on stderr when ready.
"""

from __future__ import annotations

import sys

import hostkit

from bench.trivial_app import app


def main(argv: list[str] | None = None) -> None:
    """Build the default host for ``argv[0]`` (the port) and run it until SIGTERM/SIGINT."""
    args = sys.argv[1:] if argv is None else argv
    if len(args) != 1 or not args[0].isdigit():
        raise SystemExit("usage: python -m bench.hostkit_inprocess_server PORT")
    urls = f"--urls=http://127.0.0.1:{int(args[0])}"
    hostkit.Host.create_default_builder([urls]).use_app(app).build().run()


if __name__ == "__main__":
    main()
