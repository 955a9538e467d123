"""hostkit: host a Python web app InProcess or OutOfProcess, chosen in hostkit.toml.

Everything a program, a plugin author or a test needs is importable from here (SPEC §2).
"""

from __future__ import annotations

from hostkit.builder import HostBuilder
from hostkit.configuration import Configuration, ConfigurationError
from hostkit.context import ClientDisconnected, Connection, Features, HttpContext, Request, Response
from hostkit.environment import HostEnvironment
from hostkit.errors import (
    AddressInUseError,
    HostkitError,
    InvalidOperationError,
    RequestBodyTooLargeError,
    ServerSelectionError,
)
from hostkit.headers import Headers
from hostkit.hookspecs import hookimpl
from hostkit.host import Host
from hostkit.identity import Claim, ClaimsIdentity, ClaimsPrincipal, ClaimTypes
from hostkit.pipeline import Pipeline, Stage
from hostkit.server_contract import Server
from hostkit.server_contract import ServerInfo
from hostkit.configuration.tables import HostingModel, SettingsTable, setting

__version__ = "0.1.0"

__all__ = [
    "AddressInUseError", "Claim", "ClaimTypes", "ClaimsIdentity", "ClaimsPrincipal",
    "ClientDisconnected", "Configuration", "ConfigurationError", "Connection", "Features",
    "Headers", "Host", "HostBuilder", "HostEnvironment", "HostingModel", "HostkitError",
    "HttpContext", "InvalidOperationError", "Pipeline", "Request", "RequestBodyTooLargeError",
    "Response", "Server", "ServerInfo", "ServerSelectionError", "SettingsTable", "Stage",
    "hookimpl", "setting",
]
