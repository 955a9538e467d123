"""Which server the conformance suite tests, what it declares, and building hosts with it.

Plugins come from the ``hostkit`` entry-point group, as in a program made with
``Host.create_default_builder``: the server under test must be installed.
"""

from __future__ import annotations

import functools
import tempfile

import pytest

from hostkit.builder import HostBuilder
from hostkit.configuration import load_configuration
from hostkit.errors import HostkitError
from hostkit.plugin_manager import Plugins
from hostkit.server_contract import ServerInfo, declared_servers

#: The server the suite tests when neither the class nor ``--hostkit-server`` names one.
DEFAULT_SERVER = "hypercorn"


def server_under_test(config: pytest.Config, suite: type) -> str:
    """The suite class's ``server``, else ``--hostkit-server``, else :data:`DEFAULT_SERVER`."""
    name = getattr(suite, "server", None) or config.getoption("hostkit_server", default=None)
    return str(name or DEFAULT_SERVER).lower()


def _installed_plugins() -> Plugins:
    plugins = Plugins(environ={})
    plugins.load_entry_points()
    return plugins


@functools.cache
def declaration(name: str) -> ServerInfo:
    """The :class:`ServerInfo` an installed plugin declares for ``name``.

    Fails the test (or its collection) with what is declared when nothing declares it.
    """
    plugins = _installed_plugins()
    servers = declared_servers(plugins)
    if name not in servers:
        pytest.fail(
            f"no installed plugin declares server {name!r} (hostkit_declare_servers); "
            f"declared: {', '.join(sorted(servers)) or 'none'}; plugins: "
            f"{', '.join(plugins.names())}. Install the plugin (pip install -e .) and declare "
            "its server: the suite runs what the declaration lists", pytrace=False)
    return servers[name]


def try_build(server: str, *args: str) -> str | HostkitError:
    """Build a host with ``--server=SERVER`` and ``args`` in an empty content root.

    Returns the name of the server the host got (``"module"`` for an out-of-process front),
    or the :class:`hostkit.HostkitError` that ``build()`` raised. Nothing is bound or run.
    """
    with tempfile.TemporaryDirectory(prefix="hostkit-build-") as root:
        configuration = load_configuration([f"--server={server}", *args], environ={},
                                           content_root=root)
        try:
            return HostBuilder(configuration, _installed_plugins()).build().server.name
        except HostkitError as error:
            return error
