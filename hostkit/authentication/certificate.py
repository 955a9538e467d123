"""The ``certificate`` scheme: the principal of a verified TLS client certificate.

The TLS handshake verified the certificate against ``tls.client_ca`` (``hostkit/tls.py``);
this scheme turns it into claims: the subject's fields (``cn``, ``o``, ``ou``, ``c``,
``email``, …), the whole subject as ``x500distinguishedname``, the ``thumbprint`` (SHA-1,
upper-case hex, as Windows shows it) and the ``serialnumber``. The name is the subject's
common name. Certificates are parsed with ``cryptography``, imported on first use (it takes a
noticeable part of a process's start).
"""

from __future__ import annotations

import hashlib
from typing import TYPE_CHECKING

from hostkit.authentication.scheme import AuthenticateResult
from hostkit.identity import Claim, ClaimsIdentity, ClaimsPrincipal, ClaimTypes

if TYPE_CHECKING:
    from hostkit.context import HttpContext

AUTHENTICATION_TYPE = "Certificate"
# Subject fields by their OID (dotted string), with the claim type each becomes; other fields
# become a claim named by their RFC 4514 short name.
_SUBJECT_CLAIMS = {
    "2.5.4.3": ClaimTypes.COMMON_NAME,
    "2.5.4.10": ClaimTypes.ORGANIZATION,
    "2.5.4.11": ClaimTypes.ORGANIZATIONAL_UNIT,
    "2.5.4.6": ClaimTypes.COUNTRY,
    "1.2.840.113549.1.9.1": ClaimTypes.EMAIL,
}
_COMMON_NAME = "2.5.4.3"


def certificate_principal(der: bytes) -> ClaimsPrincipal:
    """The principal a client certificate (DER) stands for. Raises ``ValueError`` when the
    bytes are not a certificate."""
    from cryptography import x509

    certificate = x509.load_der_x509_certificate(der)
    claims: list[Claim] = []
    common_name: str | None = None
    for attribute in certificate.subject:
        value = attribute.value if isinstance(attribute.value, str) else \
            attribute.value.decode("utf-8", "replace")
        oid = attribute.oid.dotted_string
        claim_type = _SUBJECT_CLAIMS.get(oid, attribute.rfc4514_attribute_name.lower())
        claims.append(Claim(claim_type, value))
        if oid == _COMMON_NAME and common_name is None:
            common_name = value
    claims.append(Claim(ClaimTypes.X500_DISTINGUISHED_NAME, certificate.subject.rfc4514_string()))
    claims.append(Claim(ClaimTypes.THUMBPRINT, hashlib.sha1(der).hexdigest().upper()))
    claims.append(Claim(ClaimTypes.SERIAL_NUMBER, format(certificate.serial_number, "X")))
    name = common_name or certificate.subject.rfc4514_string()
    claims.insert(0, Claim(ClaimTypes.NAME, name))
    return ClaimsPrincipal(ClaimsIdentity(claims, AUTHENTICATION_TYPE))


class CertificateScheme:
    """Authenticates a request whose connection presented a client certificate."""

    name = "certificate"

    def challenge(self, display_name: str) -> str:
        # No registered HTTP scheme asks for a certificate; naming it tells the client what
        # the server wants (ASP.NET Core's certificate handler answers 403 instead).
        return "Certificate"

    async def authenticate(self, context: HttpContext) -> AuthenticateResult:
        der = context.connection.client_certificate
        if der is None:
            return AuthenticateResult.no_result(self.name)
        try:
            principal = certificate_principal(der)
        except ValueError:
            return AuthenticateResult.fail(self.name, "the client certificate cannot be parsed")
        return AuthenticateResult.success(self.name, principal)
