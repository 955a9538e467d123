"""The configured schemes, run together: the one place that decides who a request is.

Used by the authentication layer of the pipeline (InProcess) and by the out-of-process
module (which then forwards the principal to its child).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import TYPE_CHECKING

from hostkit.authentication.scheme import AuthenticateResult, AuthenticationScheme

if TYPE_CHECKING:
    from hostkit.context import HttpContext

logger = logging.getLogger("hostkit.authentication")

NO_SCHEME = "none"


class Authenticator:
    """Runs ``schemes`` (in the order of ``[authentication] schemes``) on a request."""

    def __init__(self, schemes: Sequence[AuthenticationScheme], display_name: str = ""):
        self.schemes = list(schemes)
        self.display_name = display_name

    async def authenticate(self, context: HttpContext) -> AuthenticateResult:
        """Called once per request. The first failure wins (wrong credentials are refused even
        when another scheme would succeed), then the first success; else no result."""
        success: AuthenticateResult | None = None
        for scheme in self.schemes:
            result = await scheme.authenticate(context)
            if result.failure is not None:
                logger.debug("%s authentication failed: %s", scheme.name, result.failure)
                return result
            if result.succeeded and success is None:
                success = result
        return success or AuthenticateResult.no_result(NO_SCHEME)

    def challenges(self, scheme: str | None = None) -> list[str]:
        """The ``WWW-Authenticate`` values of a 401: every scheme's, or only ``scheme``'s."""
        values = []
        for candidate in self.schemes:
            if scheme is None or candidate.name == scheme.lower():
                value = candidate.challenge(self.display_name)
                if value:
                    values.append(value)
        return values
