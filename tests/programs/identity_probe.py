"""Identity probe: answers with what the app sees of who the client is, as JSON.

Paths: ``/whoami`` (``context.user``), ``/explicit`` (``await context.authenticate()``),
``/challenge`` (``await context.challenge()``). A claims transformation adds one
``transformed`` claim per request, so tests can see it ran, and ran once.
"""

from __future__ import annotations

import base64
import json
import sys

import hostkit
from hostkit import Claim, ClaimsPrincipal, HttpContext

TRANSFORMED = "transformed"
_SHOWN_HEADERS = ("hostkit", "forwarded", "x-real-ip", "authorization")


def describe(principal: ClaimsPrincipal, context: HttpContext) -> dict[str, object]:
    certificate = context.connection.client_certificate
    return {
        "authenticated": principal.identity.is_authenticated,
        "authentication_type": principal.identity.authentication_type,
        "name": principal.identity.name,
        "claims": [[claim.type, claim.value] for claim in principal.claims],
        "certificate": base64.b64encode(certificate).decode() if certificate else None,
        "model": context.features.hosting_model,
        "pid": context.features.process_id,
        "remote_ip": context.connection.remote_ip,
        "scheme": context.request.scheme,
        "headers": [[name, value] for name, value in context.request.headers.items_all()
                    if any(word in name.lower().replace("_", "-") for word in _SHOWN_HEADERS)],
    }


async def handler(context: HttpContext) -> None:
    path = context.request.path
    if path == "/challenge":
        await context.challenge()
        return
    principal = await context.authenticate() if path == "/explicit" else context.user
    context.response.headers["content-type"] = "application/json"
    await context.response.write(json.dumps(describe(principal, context)))


def mark_transformed(principal: ClaimsPrincipal, context: HttpContext) -> ClaimsPrincipal:
    principal.identity.add_claim(Claim(TRANSFORMED, "yes"))
    return principal


if __name__ == "__main__":
    (hostkit.Host.create_default_builder(sys.argv[1:])
     .use_app(handler)
     .add_claims_transformation(mark_transformed)
     .build()
     .run())
