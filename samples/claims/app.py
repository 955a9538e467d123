"""The claims sample: basic authentication plus role claims from a mapping in hostkit.toml.

The server authenticates users from ``users.txt``; a claims transformation then adds a role
claim for every role ``[roles]`` gives the user. It runs once per request, in both hosting
models (OutOfProcess: in the child, on the identity the module forwarded).

Run it from this folder::

    hostkit users add alice          # asks for a password, writes users.txt
    python app.py
    curl -u alice http://127.0.0.1:5000/          # → alice, roles: admin, editor
    curl http://127.0.0.1:5000/admin              # → 401 with WWW-Authenticate: Basic …
"""

from __future__ import annotations

import json
import sys
from collections.abc import Mapping

import hostkit
from hostkit import Claim, ClaimsPrincipal, ClaimTypes, HttpContext
from hostkit.claims import ClaimsTransformation


def role_claims(roles: Mapping[str, list[str]]) -> ClaimsTransformation:
    """A claims transformation adding the roles ``roles`` maps the user's name to."""

    def add_roles(principal: ClaimsPrincipal, context: HttpContext) -> ClaimsPrincipal:
        identity = principal.identity
        if identity.is_authenticated and identity.name is not None:
            for role in roles.get(identity.name, []):
                identity.add_claim(Claim(ClaimTypes.ROLE, role))
        return principal

    return add_roles


async def app(context: HttpContext) -> None:
    user = context.user
    if context.request.path == "/admin" and not user.is_in_role("admin"):
        # Anonymous: ask for credentials. Signed in without the role: 403.
        if not user.identity.is_authenticated:
            await context.challenge()
            return
        context.response.status_code = 403
        return
    context.response.headers["content-type"] = "application/json"
    await context.response.write(json.dumps({
        "name": user.identity.name,
        "authenticated": user.identity.is_authenticated,
        "roles": [claim.value for claim in user.claims if claim.type == ClaimTypes.ROLE],
        "model": context.features.hosting_model,
    }))


def create_host_builder(args: list[str]) -> hostkit.HostBuilder:
    builder = hostkit.Host.create_default_builder(args)
    roles = builder.configuration.get("roles") or {}
    return builder.use_app(app).add_claims_transformation(role_claims(roles))


if __name__ == "__main__":
    create_host_builder(sys.argv[1:]).build().run()
