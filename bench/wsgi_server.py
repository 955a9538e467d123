"""Serve :func:`bench.wsgi.app` (the WSGI hello) with hostkit, its arguments passed straight
to hostkit, as :mod:`bench.hostkit_server` serves the ASGI one.

Usage: ``python -m bench.wsgi_server [HOSTKIT ARGUMENTS...]``, e.g.
``python -m bench.wsgi_server --urls=http://127.0.0.1:PORT``; used by :mod:`bench.wsgi`, and by
``python -m bench.instructions inprocess --program bench.wsgi_server`` for the instructions
per request of a WSGI app. hostkit logs ``Now listening on: http://127.0.0.1:PORT`` when ready.
"""

from __future__ import annotations

import sys

import hostkit

from bench.wsgi import app


def main(argv: list[str] | None = None) -> None:
    """Build the default host with ``argv`` (default: this program's arguments) and run it."""
    args = sys.argv[1:] if argv is None else argv
    hostkit.Host.create_default_builder(args).use_app(app).build().run()


if __name__ == "__main__":
    main()
