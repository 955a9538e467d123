"""A Starlette app whose views fail and log, for the logging tests (tests/test_logging.py).

- ``/boom``: the view raises; Starlette's error middleware answers 500 and raises again;
- ``/partial``: the response starts, part of its body is sent, then the app raises;
- ``/shop``: logs "order placed" on the logger ``shop``, which has its own stderr handler
  and propagates to the root, as an app that configured one logger of its own does.
"""

from __future__ import annotations

import logging
import sys

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import PlainTextResponse
from starlette.routing import Route

import hostkit

shop = logging.getLogger("shop")
shop.addHandler(logging.StreamHandler(sys.stderr))
shop.setLevel(logging.INFO)


async def boom(request: Request) -> PlainTextResponse:
    raise RuntimeError("boom in a view")


async def order(request: Request) -> PlainTextResponse:
    shop.info("order placed")
    return PlainTextResponse("ordered\n")


starlette_app = Starlette(routes=[Route("/boom", boom), Route("/shop", order)])


async def app(scope, receive, send):  # type: ignore[no-untyped-def]
    if scope["type"] == "http" and scope["path"] == "/partial":
        await send({"type": "http.response.start", "status": 200,
                    "headers": [(b"content-length", b"100")]})
        await send({"type": "http.response.body", "body": b"first part", "more_body": True})
        raise RuntimeError("boom after the response started")
    await starlette_app(scope, receive, send)


if __name__ == "__main__":
    hostkit.Host.create_default_builder(sys.argv[1:]).use_app(app).build().run()
