"""TLS on the public listener (SPEC §3 ``[tls]``): the one place that builds the server's
SSL context, and describes a TLS connection in the ASGI ``tls`` extension.

Every server that owns a public ``https://`` address uses :func:`server_context` (the
embedded server InProcess, the module OutOfProcess), so the same settings mean the same
handshake in both models.

Client certificates are verified during the handshake, against ``client_ca`` only: the
standard library cannot accept a certificate it failed to verify and reject it later, so an
expired or untrusted certificate ends the handshake with a TLS alert naming the reason
(``certificate expired``, ``unknown ca``) instead of an HTTP 403.
"""

from __future__ import annotations

import ssl
from collections.abc import Sequence
from typing import Any, Literal, Protocol

from hostkit.configuration import Configuration

VERIFY_MODES = {"none": ssl.CERT_NONE, "optional": ssl.CERT_OPTIONAL,
                "required": ssl.CERT_REQUIRED}

#: The TLS 1.2 cipher suites of Mozilla's "intermediate" server profile: forward-secret AEAD
#: suites only (no CBC, so nothing for LUCKY13-style padding oracles). TLS 1.3's suites are
#: all AEAD and OpenSSL's defaults are the profile's.
INTERMEDIATE_TLS12_CIPHERS = ":".join((
    "ECDHE-ECDSA-AES128-GCM-SHA256", "ECDHE-RSA-AES128-GCM-SHA256",
    "ECDHE-ECDSA-AES256-GCM-SHA384", "ECDHE-RSA-AES256-GCM-SHA384",
    "ECDHE-ECDSA-CHACHA20-POLY1305", "ECDHE-RSA-CHACHA20-POLY1305",
    "DHE-RSA-AES128-GCM-SHA256", "DHE-RSA-AES256-GCM-SHA384", "DHE-RSA-CHACHA20-POLY1305",
))


def server_context(configuration: Configuration,
                   alpn_protocols: Sequence[str] = ("http/1.1",)) -> ssl.SSLContext:
    """The SSL context for the public listener, from ``[tls]``: Mozilla's "intermediate"
    profile (TLS 1.2 and 1.3, :data:`INTERMEDIATE_TLS12_CIPHERS` for TLS 1.2, no
    compression, no renegotiation).

    Called once when a server starts listening on an ``https://`` address. Configuration
    loading has already checked that the files are set and exist.
    """
    tls = configuration.options.tls
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    context.set_ciphers(INTERMEDIATE_TLS12_CIPHERS)
    context.options |= ssl.OP_NO_COMPRESSION | ssl.OP_NO_RENEGOTIATION
    context.load_cert_chain(configuration.path(tls.certificate),
                            configuration.path(tls.private_key))
    context.verify_mode = VERIFY_MODES[tls.client_certificate_mode]
    if tls.client_ca:
        context.load_verify_locations(configuration.path(tls.client_ca))
    context.set_alpn_protocols(list(alpn_protocols))
    return context


class TLSConnection(Protocol):
    """What :func:`tls_extension` reads: an ``ssl.SSLObject``, ``ssl.SSLSocket`` or a
    ``trio.SSLStream`` (which forwards these to its SSLObject)."""

    def getpeercert(self, binary_form: Literal[True]) -> bytes | None: ...

    def version(self) -> str | None: ...


def tls_extension(ssl_object: TLSConnection) -> dict[str, Any]:
    """The ASGI ``tls`` scope extension for a connection whose handshake is done.

    ``client_cert_chain`` holds the client's certificate (PEM) when it presented one, else is
    empty; the standard library exposes only the leaf of the chain.
    """
    return tls_extension_of(ssl_object.getpeercert(binary_form=True),
                            _TLS_VERSIONS.get(ssl_object.version() or ""))


def tls_extension_of(client_certificate: bytes | None,
                     tls_version: int | None = None) -> dict[str, Any]:
    """The ASGI ``tls`` scope extension from its facts: the client's certificate (DER, or
    ``None`` when it presented none) and the TLS version number, when known."""
    return {
        "server_cert": None,
        "client_cert_chain": ([ssl.DER_cert_to_PEM_cert(client_certificate)]
                              if client_certificate else []),
        "client_cert_name": None,
        "client_cert_error": None,
        "tls_version": tls_version,
        "cipher_suite": None,
    }


_TLS_VERSIONS = {"TLSv1.2": 0x0303, "TLSv1.3": 0x0304}
