"""hostkit's built-in embedded server: hypercorn, on asyncio and trio.

Serves the shared pipeline InProcess on the public ``urls``, and in an out-of-process child on
its loopback port. Registered through the ``hostkit`` entry-point group like any third-party
plugin, and uses only public hostkit names.
"""

from __future__ import annotations

import hostkit
from hostkit import HostingModel

from hostkit_inprocess.server import HypercornServer

__version__ = hostkit.__version__
SERVER_NAME = "hypercorn"
SERVER_INFO = hostkit.ServerInfo(
    name=SERVER_NAME,
    hosting_models=(HostingModel.IN_PROCESS, HostingModel.OUT_OF_PROCESS),
    async_backends=("asyncio", "trio"),
    url_schemes=("http", "https", "unix"),
)


@hostkit.hookimpl
def hostkit_declare_servers() -> list[hostkit.ServerInfo]:
    """hypercorn: both hosting models (OutOfProcess as the child's server), both backends."""
    return [SERVER_INFO]


@hostkit.hookimpl
def hostkit_create_server(hosting_model: HostingModel, server_name: str,
                          configuration: hostkit.Configuration,
                          behind_module: bool) -> hostkit.Server | None:
    """Answer for ``server = "hypercorn"``: InProcess, or OutOfProcess behind the module."""
    if not SERVER_INFO.serves(hosting_model, server_name, behind_module):
        return None  # another server, or the public side of OutOfProcess (the module's)
    return HypercornServer(configuration)
