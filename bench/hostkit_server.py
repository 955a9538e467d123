"""Serve :data:`bench.trivial_app.app` with hostkit, its arguments passed straight to hostkit.

Usage: ``python -m bench.hostkit_server [HOSTKIT ARGUMENTS...]``, e.g.::

    python -m bench.hostkit_server --hosting_model=OutOfProcess --urls=http://127.0.0.1:PORT

It runs ``hostkit.Host.create_default_builder(sys.argv[1:]).use_app(app).build().run()``.

With ``--hosting_model=OutOfProcess`` this process becomes the module (the front): the child
it starts on the first request runs this same command line (``sys.orig_argv``) with the
child contract in its environment (``HOSTKIT_PORT``, ``HOSTKIT_TOKEN``, ``HOSTKIT_PATH_BASE``),
which turns the child role on. Run with that contract set by hand, this program *is* such a
child, which is how ``bench.outofprocess`` puts nginx in front of one. ``bench`` must be
importable from the working directory (the benchmarks put the repository root on
``PYTHONPATH``), since the child imports it again.

hostkit logs ``Now listening on: http://127.0.0.1:PORT`` on stderr when ready.
"""

from __future__ import annotations

import sys

import hostkit

from bench.trivial_app import app


def main(argv: list[str] | None = None) -> None:
    """Build the default host with ``argv`` (default: this program's arguments) and run it."""
    args = sys.argv[1:] if argv is None else argv
    hostkit.Host.create_default_builder(args).use_app(app).build().run()


if __name__ == "__main__":
    main()
