"""The module's contract with its child process: the one place that knows it (SPEC §4).

The module starts each child with three environment variables; with all three present,
``create_default_builder`` turns the child role on (the out-of-process integration plugin reads
them through :meth:`ChildContract.from_environ`). Every forwarded request carries the token in
the ``Hostkit-Token`` header; ``Hostkit-Client-Cert`` and ``Hostkit-Identity`` carry the
client's TLS certificate and the principal the module authenticated.
"""

from __future__ import annotations

import dataclasses
import secrets
from collections.abc import Mapping

PORT_VARIABLE = "HOSTKIT_PORT"
TOKEN_VARIABLE = "HOSTKIT_TOKEN"
PATH_BASE_VARIABLE = "HOSTKIT_PATH_BASE"
VARIABLES = frozenset({PORT_VARIABLE, TOKEN_VARIABLE, PATH_BASE_VARIABLE})

#: The request header that carries the pairing token (lower case, as ASGI has it).
TOKEN_HEADER = b"hostkit-token"
#: The client's TLS certificate, base64 DER, only when the client presented one.
CLIENT_CERT_HEADER = b"hostkit-client-cert"
#: The principal the module authenticated, integrity-protected with the token.
IDENTITY_HEADER = b"hostkit-identity"
#: The client's HTTP version as the front received it (``2`` for HTTP/2, ``1.1``, ``1.0``):
#: the child serves ``scope["http_version"]`` from it, though the front speaks HTTP/1.1 to it.
HTTP_VERSION_HEADER = b"hostkit-http-version"
#: Every header the module itself sets on a forwarded request starts with this.
RESERVED_HEADER_PREFIX = "hostkit-"

TOKEN_BYTES = 32


@dataclasses.dataclass(frozen=True)
class ChildContract:
    """What one child start gets: its loopback port, a fresh token, and the path base."""

    port: int
    token: str
    path_base: str = "/"

    @classmethod
    def new(cls, port: int, path_base: str) -> ChildContract:
        """A contract with a fresh secret token, for one child start."""
        return cls(port, secrets.token_urlsafe(TOKEN_BYTES), path_base)

    @classmethod
    def from_environ(cls, environ: Mapping[str, str]) -> ChildContract | None:
        """The contract in ``environ``, or ``None`` unless all three variables are present.

        Raises ``ValueError`` when the port is not a port number.
        """
        if not VARIABLES <= environ.keys():
            return None
        port = int(environ[PORT_VARIABLE])
        if not 0 < port < 65536:
            raise ValueError(f"{PORT_VARIABLE}={port} is not a port number")
        return cls(port, environ[TOKEN_VARIABLE], environ[PATH_BASE_VARIABLE] or "/")

    def to_environ(self) -> dict[str, str]:
        """The variables to put in the child's environment."""
        return {PORT_VARIABLE: str(self.port), TOKEN_VARIABLE: self.token,
                PATH_BASE_VARIABLE: self.path_base}

    def __repr__(self) -> str:  # the token never reaches a log through a repr
        return f"ChildContract(port={self.port}, token=<redacted>, path_base={self.path_base!r})"
