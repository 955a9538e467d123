"""What an authentication scheme is: the interface built-in and plugin schemes share."""

from __future__ import annotations

import dataclasses
from typing import TYPE_CHECKING, Protocol, runtime_checkable

from hostkit.identity import ClaimsPrincipal

if TYPE_CHECKING:
    from hostkit.context import HttpContext


@dataclasses.dataclass(frozen=True)
class AuthenticateResult:
    """What one scheme made of one request.

    Exactly one of three outcomes: ``principal`` set (the request is authenticated),
    ``failure`` set (credentials for this scheme were presented and are wrong or malformed:
    the request gets 401), or neither (no credentials for this scheme: anonymous so far).
    Build them with :meth:`success`, :meth:`fail` and :meth:`no_result`.
    """

    scheme: str
    principal: ClaimsPrincipal | None = None
    failure: str | None = None

    @classmethod
    def success(cls, scheme: str, principal: ClaimsPrincipal) -> AuthenticateResult:
        return cls(scheme, principal=principal)

    @classmethod
    def fail(cls, scheme: str, reason: str) -> AuthenticateResult:
        """``reason`` is logged at debug level, never sent to the client."""
        return cls(scheme, failure=reason)

    @classmethod
    def no_result(cls, scheme: str) -> AuthenticateResult:
        return cls(scheme)

    @property
    def succeeded(self) -> bool:
        return self.principal is not None


@runtime_checkable
class AuthenticationScheme(Protocol):
    """A server-level authentication scheme (SPEC §3 ``[authentication] schemes``).

    Run by the process that owns the public listener: the embedded server InProcess, the
    module OutOfProcess (which forwards the principal to the child). Plugins contribute
    schemes through the ``hostkit_add_authentication_schemes`` hook.
    """

    #: the name users list in ``[authentication] schemes``, lower case, e.g. ``"basic"``.
    name: str

    async def authenticate(self, context: HttpContext) -> AuthenticateResult:
        """Called once per request, before the app. Read only the head of the request
        (``context.request.headers``, ``context.connection``); never the body."""
        ...

    def challenge(self, display_name: str) -> str | None:
        """The ``WWW-Authenticate`` value this scheme answers a 401 with, or ``None`` for no
        header. ``display_name`` is ``[authentication] authentication_display_name``."""
        ...
