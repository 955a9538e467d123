"""The shared request pipeline: the one place that builds it.

Every request, in both hosting models and under every server plugin, goes through::

    server plugin → RequestStage (hostkit/request_stage.py)
                  → Stage.INTEGRATION layers   (the child side of OutOfProcess)
                  → Stage.AUTHENTICATION layers (server authentication, claims transformation)
                  → Stage.APP layers            (HostBuilder.use / use_asgi_middleware, in order)
                  → the terminal app            (HostBuilder.use_app)

The order comes from the stages, never from plugin registration order. Within a stage,
layers run in the order they were added, the first added being the outermost.
"""

from __future__ import annotations

import enum
import inspect
from collections.abc import Awaitable, Callable
from typing import Any

from hostkit.asgi import ASGIApp, Message, Receive, Scope, Send
from hostkit.context import HttpContext

Handler = Callable[[HttpContext], Awaitable[None]]
CallNext = Callable[[], Awaitable[None]]
Middleware = Callable[[HttpContext, CallNext], Awaitable[None]]
AsgiMiddlewareFactory = Callable[..., ASGIApp]


class Stage(enum.IntEnum):
    """Where in the pipeline a layer sits; lower values are further out."""

    INTEGRATION = 100
    AUTHENTICATION = 200
    APP = 300


def _positional_parameters(obj: Any) -> int | None:
    """How many positional parameters ``obj`` takes, or ``None`` when it is not callable."""
    if not callable(obj):
        return None
    try:
        signature = inspect.signature(obj)
    except (TypeError, ValueError):
        return None
    kinds = (inspect.Parameter.POSITIONAL_ONLY, inspect.Parameter.POSITIONAL_OR_KEYWORD)
    return sum(1 for p in signature.parameters.values() if p.kind in kinds)


def is_async_callable(obj: Any) -> bool:
    """Whether calling ``obj`` gives a coroutine (an ``async def``, or an instance whose
    ``__call__`` is one): how an ASGI app or handler is told from a WSGI app."""
    call = getattr(obj, "__call__", None)  # noqa: B004 - instances with async __call__
    return inspect.iscoroutinefunction(obj) or inspect.iscoroutinefunction(call)


def as_terminal_app(app: Any) -> ASGIApp:
    """The terminal ASGI app for ``use_app``: an ASGI 3 app as it is, or a wrapped handler.

    Raises ``TypeError`` for anything else, saying what was expected.
    """
    count = _positional_parameters(app)
    if count == 3:
        return app  # type: ignore[no-any-return]
    if count == 1 and is_async_callable(app):
        return handler_app(app)
    kind = ("not callable" if not callable(app) else "no signature" if count is None else
            f"{'an async' if is_async_callable(app) else 'a non-async'} callable of {count} positional "
            "parameter(s)")
    raise TypeError(
        f"use_app() expected an ASGI 3 app `async def app(scope, receive, send)` or a handler "
        f"`async def handler(context)`, or a WSGI app `def app(environ, start_response)`; got "
        f"{app!r} ({kind})")


def check_middleware(middleware: Any) -> Middleware:
    """``middleware`` if it is ``async def middleware(context, call_next)``; else TypeError."""
    if _positional_parameters(middleware) == 2 and is_async_callable(middleware):
        return middleware  # type: ignore[no-any-return]
    raise TypeError(
        "use() expected a middleware `async def middleware(context, call_next)`, "
        f"got {middleware!r}")


def handler_app(handler: Handler) -> ASGIApp:
    """Serve ``async def handler(context)`` as an ASGI app (HTTP only)."""

    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        kind = scope["type"]
        if kind == "http":
            context = HttpContext(scope, receive, send)
            await handler(context)
            await context.response.complete()
        elif kind == "websocket":
            # A handler speaks HTTP only: refuse the handshake (the server answers 403).
            await send({"type": "websocket.close", "code": 1000})
        # lifespan: returning at once tells the host this app has no lifespan.

    app.__qualname__ = f"handler_app({getattr(handler, '__qualname__', handler)!r})"
    return app


def middleware_app(middleware: Middleware, next_app: ASGIApp) -> ASGIApp:
    """One native middleware as an ASGI layer around ``next_app`` (HTTP only)."""

    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await next_app(scope, receive, send)
            return
        context = HttpContext(scope, receive, send)
        response = context.response

        async def call_next() -> None:
            body = context.request.buffered_body
            inner_receive = receive if body is None else _replay(body, receive)
            await next_app(scope, inner_receive, response.inner_send)

        await middleware(context, call_next)
        await response.complete()

    return app


def _replay(body: bytes, receive: Receive) -> Receive:
    """``receive`` for inner layers after a middleware read the whole body: it comes again."""
    replayed = False

    async def replay() -> Message:
        nonlocal replayed
        if replayed:
            return await receive()
        replayed = True
        return {"type": "http.request", "body": body, "more_body": False}

    return replay


class Pipeline:
    """The layers of the pipeline, collected while the host is built, then built once."""

    def __init__(self) -> None:
        self._layers: list[tuple[Stage, int, Callable[[ASGIApp], ASGIApp]]] = []

    def use(self, middleware: Middleware, stage: Stage = Stage.APP) -> None:
        """Add ``async def middleware(context, call_next)`` at ``stage``."""
        checked = check_middleware(middleware)
        self._add(stage, lambda next_app: middleware_app(checked, next_app))

    def use_asgi_middleware(self, factory: AsgiMiddlewareFactory, stage: Stage = Stage.APP,
                            **options: Any) -> None:
        """Add an ASGI middleware, ``factory(app, **options) -> app``, at ``stage``."""
        if not callable(factory):
            raise TypeError(f"use_asgi_middleware() expected a callable factory, got {factory!r}")
        self._add(stage, lambda next_app: factory(next_app, **options))

    def _add(self, stage: Stage, wrap: Callable[[ASGIApp], ASGIApp]) -> None:
        self._layers.append((stage, len(self._layers), wrap))

    def build(self, terminal: ASGIApp) -> ASGIApp:
        """Wrap ``terminal`` in every layer, outermost stage first. Returns the ASGI app."""
        app = terminal
        for _, _, wrap in sorted(self._layers, key=lambda layer: layer[:2], reverse=True):
            app = wrap(app)
        return app
