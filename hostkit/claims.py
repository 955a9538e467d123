"""Claims transformation (SPEC §6): runs once per request, after authentication, in the process
that runs the pipeline (InProcess: the server; OutOfProcess: the child).

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

from hostkit.context import HttpContext
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

    async def transform_claims(context: HttpContext, call_next: CallNext) -> None:
        principal = context.user
        for transformation in transformations:
            result = transformation(principal, context)
            if inspect.isawaitable(result):
                result = await result
            if result is not None:
                principal = result
        context.user = principal
        await call_next()

    return transform_claims
