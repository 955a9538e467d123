"""An unchanged Starlette app hosted by hostkit: routes, lifespan state, and a WebSocket echo.

    python app.py            # from this folder; hostkit.toml chooses the hosting model
"""

from __future__ import annotations

import contextlib
import os
import sys
from collections.abc import AsyncIterator

from starlette.applications import Starlette
from starlette.middleware.base import BaseHTTPMiddleware
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse
from starlette.routing import Route, WebSocketRoute
from starlette.websockets import WebSocket

import hostkit


@contextlib.asynccontextmanager
async def lifespan(app: Starlette) -> AsyncIterator[dict[str, str]]:
    yield {"greeting": "Hello from Starlette"}


async def home(request: Request) -> PlainTextResponse:
    return PlainTextResponse(f"{request.state.greeting} ({request.scope['hostkit'].hosting_model})\n")


async def whoami(request: Request) -> JSONResponse:
    """What the ASGI scope says about this request: the same facts as HttpContext."""
    features = request.scope["hostkit"]
    user = request.scope["user"]
    return JSONResponse({
        "hosting_model": features.hosting_model,
        "process_id": features.process_id,
        "server": features.server,
        "client": list(request.scope["client"] or []),
        "scheme": request.scope["scheme"],
        "root_path": request.scope.get("root_path", ""),
        "authenticated": user.identity.is_authenticated,
        "pid_matches": features.process_id == os.getpid(),
    })


async def echo(websocket: WebSocket) -> None:
    await websocket.accept()
    async for message in websocket.iter_text():
        await websocket.send_text(f"echo: {message}")


class ServedBy(BaseHTTPMiddleware):
    """A Starlette middleware, added through HostBuilder.use_asgi_middleware."""

    async def dispatch(self, request, call_next):  # type: ignore[no-untyped-def]
        response = await call_next(request)
        response.headers["x-served-by"] = "hostkit"
        return response


app = Starlette(
    routes=[Route("/", home), Route("/whoami", whoami), WebSocketRoute("/ws", echo)],
    lifespan=lifespan,
)


def create_host_builder(args: list[str]) -> hostkit.HostBuilder:
    return (hostkit.Host.create_default_builder(args)
            .use_asgi_middleware(ServedBy)
            .use_app(app))


if __name__ == "__main__":
    create_host_builder(sys.argv[1:]).build().run()
