"""Request bodies read by three kinds of apps, for tests of ``server.max_request_body_size``.

One ASGI app sends each request by its first path segment to an unchanged app of its own:

- ``/context``: a hostkit handler, ``await context.request.body()``;
- ``/starlette/stream`` and ``/starlette/body``: a Starlette app reading the body with
  ``async for chunk in request.stream()`` and ``await request.body()``;
- ``/fastapi/stream`` and ``/fastapi/body``: the same routes in a FastAPI app.

Every route answers ``200`` with the number of body bytes it read; every request is written
to stdout as ``app called for PATH?QUERY`` as it reaches the app.
"""

from __future__ import annotations

import sys

from fastapi import FastAPI
from fastapi import Request as FastApiRequest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import PlainTextResponse
from starlette.routing import Route

import hostkit
from hostkit.asgi import Receive, Scope, Send
from hostkit.pipeline import handler_app


async def read_context(context: hostkit.HttpContext) -> None:
    body = await context.request.body()
    await context.response.write(str(len(body)))


async def stream(request: Request) -> PlainTextResponse:
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
    return PlainTextResponse(str(size))


async def body(request: Request) -> PlainTextResponse:
    return PlainTextResponse(str(len(await request.body())))


starlette_app = Starlette(routes=[Route("/starlette/stream", stream, methods=["POST"]),
                                  Route("/starlette/body", body, methods=["POST"])])
fastapi_app = FastAPI()


@fastapi_app.post("/fastapi/stream")
async def fastapi_stream(request: FastApiRequest) -> PlainTextResponse:
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
    return PlainTextResponse(str(size))


@fastapi_app.post("/fastapi/body")
async def fastapi_body(request: FastApiRequest) -> PlainTextResponse:
    return PlainTextResponse(str(len(await request.body())))


context_app = handler_app(read_context)


async def app(scope: Scope, receive: Receive, send: Send) -> None:
    path = scope.get("path", "")
    if scope["type"] == "http":
        print(f"app called for {path}?{scope['query_string'].decode()}", flush=True)
    if scope["type"] == "lifespan" or path.startswith("/starlette/"):
        await starlette_app(scope, receive, send)
    elif path.startswith("/fastapi/"):
        await fastapi_app(scope, receive, send)
    else:
        await context_app(scope, receive, send)


def create_host_builder(args: list[str]) -> hostkit.HostBuilder:
    return hostkit.Host.create_default_builder(args).use_app(app)


if __name__ == "__main__":
    create_host_builder(sys.argv[1:]).build().run()
