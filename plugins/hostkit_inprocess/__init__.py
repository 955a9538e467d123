"""hostkit's built-in embedded server: hypercorn, on asyncio and trio.

Serves the shared pipeline InProcess on the public ``urls``, and in an out-of-process child on
its loopback port. Registered through the ``hostkit`` entry-point group like any third-party
plugin, and uses only public hostkit names.
"""

from __future__ import annotations

import hostkit
from hostkit import HostingModel
from hostkit.plugin import HostRole, Server, ServerInfo, ServerRequest, hookimpl

from hostkit_inprocess.server import HypercornServer

__version__ = hostkit.__version__
SERVER_NAME = "hypercorn"
SERVER_INFO = ServerInfo(
    name=SERVER_NAME,
    hosting_models=(HostingModel.IN_PROCESS, HostingModel.OUT_OF_PROCESS),
    async_backends=("asyncio", "trio"),
    url_schemes=("http", "https", "unix"),
)


@hookimpl
def hostkit_declare_servers() -> list[ServerInfo]:
    """hypercorn: both hosting models (OutOfProcess as the child's server), both backends."""
    return [SERVER_INFO]


@hookimpl
def hostkit_create_server(request: ServerRequest) -> Server | None:
    """Answer for ``server = "hypercorn"`` in the roles that run the pipeline (``SERVE``,
    ``CHILD``); a ``FRONT`` is another plugin's (the module's)."""
    if request.server_name != SERVER_NAME or request.role is HostRole.FRONT:
        return None
    return HypercornServer(request.configuration, request.role)
