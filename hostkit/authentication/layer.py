"""The authentication layer: outermost in ``Stage.AUTHENTICATION`` of the pipeline.

InProcess it runs the :class:`Authenticator` on every HTTP and WebSocket request. In an
out-of-process child it takes the principal the module authenticated and forwarded (the
integration layer verified it and left it in the scope under :data:`FORWARDED_RESULT_KEY`).
Then, in both:

- wrong or malformed credentials → 401 with ``WWW-Authenticate``, the app is not called;
- ``automatic_authentication = true`` → ``scope["user"]`` (``context.user``) is the
  principal; false → the user stays anonymous until ``await context.authenticate()``;
- ``await context.challenge()`` answers 401 naming the configured schemes.
"""

from __future__ import annotations

import logging

from hostkit.asgi import ASGIApp, Receive, Scope, Send, send_refusal
from hostkit.authentication.authenticator import NO_SCHEME, Authenticator
from hostkit.authentication.scheme import AuthenticateResult
from hostkit.context import HttpContext, request_state
from hostkit.identity import ClaimsPrincipal

logger = logging.getLogger("hostkit.authentication")

#: Scope key where the out-of-process integration puts the module's verified result.
FORWARDED_RESULT_KEY = "hostkit.forwarded_identity"


class AuthenticationMiddleware:
    """ASGI layer; see the module docstring. ``forwarded`` is true in an out-of-process child."""

    def __init__(self, app: ASGIApp, *, authenticator: Authenticator, automatic: bool,
                 forwarded: bool):
        self.app = app
        self.authenticator = authenticator
        self.automatic = automatic
        self.forwarded = forwarded

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        kind = scope["type"]
        if kind != "http" and kind != "websocket":
            await self.app(scope, receive, send)
            return
        if self.forwarded:
            result = (scope.pop(FORWARDED_RESULT_KEY, None)
                      or AuthenticateResult.no_result(NO_SCHEME))
        else:
            result = await self.authenticator.authenticate(HttpContext(scope, receive, send))
        if result.failure is not None:
            await send_refusal(scope, send, 401, [
                (b"www-authenticate", value.encode("latin-1"))
                for value in self.authenticator.challenges()])
            return
        if self.automatic and result.principal is not None:
            scope["user"] = result.principal
        state = request_state(scope)
        state.authenticate = _Explicit(result).authenticate
        state.challenge = self._challenge
        await self.app(scope, receive, send)

    async def _challenge(self, context: HttpContext, scheme: str | None) -> None:
        response = context.response
        response.status_code = 401
        for value in self.authenticator.challenges(scheme):
            response.headers.add("www-authenticate", value)
        await response.complete()


class _Explicit:
    """``context.authenticate(scheme)`` for one request: the result the layer already has."""

    __slots__ = ("result",)

    def __init__(self, result: AuthenticateResult):
        self.result = result

    async def authenticate(self, context: HttpContext, scheme: str | None) -> ClaimsPrincipal:
        principal = self.result.principal
        if principal is None or (scheme is not None and scheme.lower() != self.result.scheme):
            return ClaimsPrincipal.anonymous()
        return principal
