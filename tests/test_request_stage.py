"""The server stage's own bookkeeping: no reference cycle per request, and a 413 the client
can read (bounded drain of the body first, then ``Connection: close``)."""

from __future__ import annotations

import gc
from typing import Any

import anyio
import pytest

from hostkit import HttpContext
from hostkit.asgi import Message
from tests.support.asgi import Exchange, ServerCycle, call, http_scope, stage

pytestmark = pytest.mark.anyio


async def reads_the_body(context: HttpContext) -> None:
    await context.response.write(b"%d" % len(await context.request.body()))


async def test_requests_leave_no_reference_cycles_for_the_collector() -> None:
    served = stage(reads_the_body)
    gc.collect()
    gc.disable()
    try:
        for _ in range(50):
            scope = http_scope(method="POST")
            await call(served, scope, ServerCycle(scope, [b"abc"]))
        assert gc.collect() == 0
    finally:
        gc.enable()


async def test_declared_body_over_the_limit_is_drained_before_the_413() -> None:
    exchange = Exchange([b"x" * 60, b"x" * 60])
    scope = http_scope(method="POST", headers=[(b"content-length", b"120")])
    await call(stage(reads_the_body), scope, exchange)
    assert (exchange.status, exchange.headers[b"connection"]) == (413, b"close")
    assert exchange.inbox == []  # read and dropped, so closing does not reset the connection


async def test_expect_100_continue_gets_the_413_without_reading_the_body() -> None:
    exchange = Exchange([b"x" * 120])
    scope = http_scope(method="POST", headers=[(b"content-length", b"120"),
                                               (b"expect", b"100-continue")])
    await call(stage(reads_the_body), scope, exchange)
    assert exchange.status == 413
    assert len(exchange.inbox) == 1


async def test_counted_body_over_the_limit_is_drained_before_the_413() -> None:
    exchange = Exchange([b"y" * 80, b"y" * 80, b"y" * 80])
    await call(stage(reads_the_body), http_scope(method="POST"), exchange)
    assert (exchange.status, exchange.headers[b"connection"]) == (413, b"close")
    assert exchange.inbox == []


async def test_after_the_request_the_app_cannot_reach_the_server() -> None:
    kept: list[Any] = []

    async def keeps_its_callables(scope: Any, receive: Any, send: Any) -> None:
        kept[:] = [receive, send]
        await send({"type": "http.response.start", "status": 204, "headers": []})
        await send({"type": "http.response.body", "body": b""})

    exchange = await call(stage(keeps_its_callables))
    receive, send = kept
    with anyio.fail_after(5):
        assert await receive() == {"type": "http.disconnect"}
        message: Message = {"type": "http.response.body", "body": b"late"}
        with pytest.raises(RuntimeError, match="after the request was over"):
            await send(message)
    assert exchange.status == 204


async def test_the_disconnect_watcher_ends_with_the_request() -> None:
    exchange = Exchange()  # the client never goes away

    async def app(context: HttpContext) -> None:
        assert not context.request_aborted.is_set()  # starts the watcher
        await anyio.sleep(0)  # it runs, and waits on the server's receive
        await context.response.write("done")

    with anyio.fail_after(5):
        async with anyio.create_task_group() as task_group:
            await call(stage(app, task_group=task_group), exchange=exchange)
    assert exchange.body == b"done"


async def answers(context: HttpContext) -> None:
    await context.response.write(b"ok")


async def test_once_the_host_stops_http1_responses_close_their_connection() -> None:
    served = stage(answers)
    before = (await call(served)).sent[0]
    assert (b"connection", b"close") not in before["headers"]
    served.close_connections()
    after = (await call(served)).sent[0]
    assert after["headers"][-1] == (b"connection", b"close")
    http2 = (await call(served, {**http_scope(), "http_version": "2"})).sent[0]
    assert all(name != b"connection" for name, _ in http2["headers"])
