"""A third-party authentication scheme, as a plugin module (``plugins = ["apikey_scheme"]``).

The example of docs/authentication.md: ``X-Api-Key: <key>`` authenticates as the client the
key belongs to.
"""

from __future__ import annotations

import hmac

import hostkit
from hostkit import Claim, ClaimsIdentity, ClaimsPrincipal, HttpContext
from hostkit.authentication import AuthenticateResult

KEYS = {"k-123": "reporting-service"}


class ApiKeyScheme:
    name = "apikey"

    async def authenticate(self, context: HttpContext) -> AuthenticateResult:
        key = context.request.headers.get("x-api-key")
        if key is None:
            return AuthenticateResult.no_result(self.name)
        for known, client in KEYS.items():
            if hmac.compare_digest(key.encode(), known.encode()):
                identity = ClaimsIdentity([Claim("name", client)], "ApiKey")
                return AuthenticateResult.success(self.name, ClaimsPrincipal(identity))
        return AuthenticateResult.fail(self.name, "unknown API key")

    def challenge(self, display_name: str) -> str:
        return "ApiKey"


@hostkit.hookimpl
def hostkit_add_authentication_schemes(
        configuration: hostkit.Configuration) -> list[ApiKeyScheme]:
    return [ApiKeyScheme()]
