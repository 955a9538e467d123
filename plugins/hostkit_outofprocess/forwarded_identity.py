"""What the module forwards to its child about the client, besides ``X-Forwarded-For`` and
``-Proto``: ``Hostkit-Identity``, ``Hostkit-Client-Cert`` and ``Hostkit-Client-Port``.

``Hostkit-Identity`` is ``PAYLOAD.MAC``: the principal as JSON (base64url), and an
HMAC-SHA256 of it keyed by the child's token. Only the module and that child start know the
token, so a value cannot be forged, and one made for an earlier child start does not verify
(every start has a new token). ``Hostkit-Client-Cert`` is the client's certificate, base64
DER. ``Hostkit-Client-Port`` is the client's port (after trusted forwarding), in decimal, sent
whenever it is known. Clients cannot send any of them (the module strips the whole
``hostkit-`` namespace).
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
from typing import Any

from hostkit import Claim, ClaimsIdentity, ClaimsPrincipal
from hostkit.plugin import AuthenticateResult

#: The client's port, from the module to its child (lower case, as ASGI has it).
CLIENT_PORT_HEADER = b"hostkit-client-port"

# Keeps a MAC over an identity from ever being valid for another use of the same token.
_PURPOSE = b"hostkit-identity\n"


def encode_identity(result: AuthenticateResult, token: bytes) -> bytes:
    """The header value for a successful ``result``, MAC'd with ``token``."""
    assert result.principal is not None
    document = {
        "scheme": result.scheme,
        "identities": [
            {"authentication_type": identity.authentication_type,
             "name_type": identity.name_type, "role_type": identity.role_type,
             "claims": [[claim.type, claim.value] for claim in identity.claims]}
            for identity in result.principal.identities],
    }
    payload = base64.urlsafe_b64encode(json.dumps(document, separators=(",", ":")).encode())
    return payload + b"." + base64.urlsafe_b64encode(_mac(payload, token))


def decode_identity(value: bytes, token: bytes) -> AuthenticateResult | None:
    """The result the module sent, or ``None`` when the value is malformed or its MAC does not
    verify with ``token`` (compared in constant time)."""
    payload, dot, mac = value.partition(b".")
    try:
        if not dot or not hmac.compare_digest(base64.urlsafe_b64decode(mac), _mac(payload, token)):
            return None
        document: Any = json.loads(base64.urlsafe_b64decode(payload))
        identities = [
            ClaimsIdentity([Claim(str(kind), str(text)) for kind, text in entry["claims"]],
                           entry["authentication_type"], entry["name_type"], entry["role_type"])
            for entry in document["identities"]]
        return AuthenticateResult.success(str(document["scheme"]), ClaimsPrincipal(identities))
    except (binascii.Error, ValueError, KeyError, TypeError):
        return None


def encode_client_certificate(der: bytes) -> bytes:
    return base64.b64encode(der)


def decode_client_certificate(value: bytes) -> bytes | None:
    """The DER certificate, or ``None`` when the value is not base64."""
    try:
        return base64.b64decode(value, validate=True) or None
    except binascii.Error:
        return None


def decode_client_port(value: bytes) -> int | None:
    """The port a ``Hostkit-Client-Port`` value names, or ``None`` when it names none."""
    if not value.isdigit() or len(value) > 5:
        return None
    port = int(value)
    return port if 0 < port < 65536 else None


def _mac(payload: bytes, token: bytes) -> bytes:
    return hmac.new(token, _PURPOSE + payload, hashlib.sha256).digest()
