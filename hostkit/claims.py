"""Claims transformation (SPEC §6): runs once per request, after authentication, in the process
that runs the pipeline (InProcess: the server; OutOfProcess: the child).

With ``automatic_authentication`` false the user is anonymous when this layer runs; the
principal ``await context.authenticate()`` returns is transformed then, once.

Order: the ``hostkit_transform_claims`` hook implementations first, in pluggy's call order
(last registered first; ``tryfirst``/``trylast`` respected), then the functions given to
``HostBuilder.add_claims_transformation`` in the order they were added. Each receives the
principal the previous one returned.
"""

from __future__ import annotations

import inspect
from collections.abc import Awaitable, Callable, Sequence
from typing import Union, cast

import pluggy

from hostkit.context import HttpContext, request_state
from hostkit.identity import ClaimsPrincipal
from hostkit.pipeline import CallNext, Middleware

ClaimsTransformation = Callable[
    [ClaimsPrincipal, HttpContext],
    Union[ClaimsPrincipal, None, Awaitable[Union[ClaimsPrincipal, None]]],
]


def _hook_transformations(manager: pluggy.PluginManager) -> list[ClaimsTransformation]:
    caller = manager.hook.hostkit_transform_claims
    # pluggy calls implementations from the end of this list to its start.
    return [cast(ClaimsTransformation, impl.function)
            for impl in reversed(caller.get_hookimpls())]


def claims_transformation_middleware(
    manager: pluggy.PluginManager, functions: Sequence[ClaimsTransformation]
) -> Middleware | None:
    """The pipeline layer that applies every transformation, or ``None`` when there is none."""
    transformations = _hook_transformations(manager) + list(functions)
    if not transformations:
        return None

    async def transform(principal: ClaimsPrincipal, context: HttpContext) -> ClaimsPrincipal:
        for transformation in transformations:
            result = transformation(principal, context)
            if inspect.isawaitable(result):
                result = await result
            if result is not None:
                principal = result
        return principal

    async def transform_claims(context: HttpContext, call_next: CallNext) -> None:
        once = _TransformOnce(transform, context)
        context.user = await once(context.user)
        state = request_state(context.scope)
        explicit = state.authenticate
        if explicit is not None:
            # With automatic_authentication false the user is anonymous here; the principal
            # the app asks for with authenticate() is transformed when it asks.
            async def authenticate(context: HttpContext, scheme: str | None) -> ClaimsPrincipal:
                return await once(await explicit(context, scheme))

            state.authenticate = authenticate
        await call_next()

    return transform_claims


class _TransformOnce:
    """Transforms each principal of one request at most once, however often it is asked."""

    __slots__ = ("transform", "context", "done")

    def __init__(self, transform: Callable[[ClaimsPrincipal, HttpContext],
                                           Awaitable[ClaimsPrincipal]], context: HttpContext):
        self.transform = transform
        self.context = context
        self.done: list[tuple[ClaimsPrincipal, ClaimsPrincipal]] = []

    async def __call__(self, principal: ClaimsPrincipal) -> ClaimsPrincipal:
        for original, transformed in self.done:
            if principal is original or principal is transformed:
                return transformed
        transformed = await self.transform(principal, self.context)
        self.done.append((principal, transformed))
        return transformed
