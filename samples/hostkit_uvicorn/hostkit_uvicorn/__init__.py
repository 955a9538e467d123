"""hostkit-uvicorn: serve hostkit's pipeline with uvicorn (httptools), ``server = "uvicorn"``.

A third-party hostkit plugin: one entry point in the ``hostkit`` group (``pyproject.toml``)
makes hostkit load this module, and its two hooks do the rest:

- :func:`hostkit_declare_servers` says what the server supports: both hosting models
  (InProcess on the public ``urls``, OutOfProcess as the child's server behind the module),
  asyncio only (uvicorn is built on asyncio's protocols), ``http://`` and ``unix:`` addresses
  (TLS belongs to hypercorn, or to the module in front of an out-of-process child). hostkit
  refuses anything else with a clear ``ServerSelectionError`` before asking for a server;
- :func:`hostkit_create_server` makes the :class:`UvicornServer`.

It uses public hostkit names only.
"""

from __future__ import annotations

from importlib.metadata import PackageNotFoundError, version

from hostkit import HostingModel
from hostkit.plugin import HostRole, Server, ServerInfo, ServerRequest, hookimpl

from hostkit_uvicorn.server import UvicornServer

try:
    __version__ = version("hostkit-uvicorn")
except PackageNotFoundError:  # imported from a source tree that is not installed
    __version__ = "0.0.0"

SERVER_NAME = "uvicorn"
SERVER_INFO = ServerInfo(
    name=SERVER_NAME,
    hosting_models=(HostingModel.IN_PROCESS, HostingModel.OUT_OF_PROCESS),
    async_backends=("asyncio",),
    url_schemes=("http", "unix"),
)

__all__ = ["SERVER_INFO", "SERVER_NAME", "UvicornServer", "hostkit_create_server",
           "hostkit_declare_servers"]


@hookimpl
def hostkit_declare_servers() -> list[ServerInfo]:
    """Called once per host when it is built: what ``server = "uvicorn"`` supports."""
    return [SERVER_INFO]


@hookimpl
def hostkit_create_server(request: ServerRequest) -> Server | None:
    """Called once per host when it is built: the server for ``server = "uvicorn"``.

    hostkit has already checked the configuration against :data:`SERVER_INFO`. Returns
    ``None`` for another server name, and for a ``FRONT`` (the OutOfProcess module's job);
    ``SERVE`` (InProcess) and ``CHILD`` (an out-of-process child, on its loopback port) get
    a uvicorn server.
    """
    if request.server_name != SERVER_NAME or request.role is HostRole.FRONT:
        return None
    return UvicornServer(request.configuration)
