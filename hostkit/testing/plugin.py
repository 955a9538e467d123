"""hostkit's pytest plugin: the ``--hostkit-server=NAME`` option of the conformance suite.

Registered with pytest through the ``pytest11`` entry point of the ``hostkit`` distribution,
so it is active wherever hostkit is installed (with ``PYTEST_DISABLE_PLUGIN_AUTOLOAD`` set,
pass ``-p hostkit.testing.plugin``). It only adds the option and the ``integration``
marker; the suite itself is :class:`hostkit.testing.conformance.ServerConformance`, run with
``pytest --pyargs hostkit.testing.suite --hostkit-server=NAME`` or subclassed.

Importing this module stays cheap: the suite's own imports happen when a suite is collected.
"""

from __future__ import annotations

import pytest


def pytest_addoption(parser: pytest.Parser) -> None:
    """Called once by pytest at startup: adds ``--hostkit-server``."""
    group = parser.getgroup("hostkit", "hostkit server conformance")
    group.addoption(
        "--hostkit-server", dest="hostkit_server", metavar="NAME", default=None,
        help="the server plugin the hostkit conformance suite tests (its `server` name, "
             "e.g. uvicorn; default: the suite class's `server`, else hypercorn)")


def pytest_configure(config: pytest.Config) -> None:
    """Called once by pytest after the command line is parsed: declares the marker."""
    config.addinivalue_line(
        "markers",
        "integration: starts real programs as subprocesses and talks HTTP over real sockets")
