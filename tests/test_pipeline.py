"""The shared pipeline, the server stage and the lifespan runner, driven by in-memory ASGI calls."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import anyio
import pytest

import hostkit
from hostkit import HttpContext, Pipeline, Stage
from hostkit.asgi import ASGIApp, Message
from hostkit.claims import claims_transformation_middleware
from hostkit.lifespan import Lifespan
from hostkit.pipeline import as_terminal_app
from hostkit.plugin_manager import Plugins
from tests.support.asgi import FEATURES, Exchange, call, http_scope, stage

pytestmark = pytest.mark.anyio


# -- use_app / use / use_asgi_middleware -----------------------------------------------------


async def handler(context: HttpContext) -> None:
    await context.response.write("hi")


def test_use_app_tells_asgi_apps_from_handlers() -> None:
    async def asgi(scope: Any, receive: Any, send: Any) -> None: ...

    assert as_terminal_app(asgi) is asgi
    assert as_terminal_app(handler) is not handler


@pytest.mark.parametrize("wrong", [42, lambda: None, lambda a, b: None, print])
def test_use_app_rejects_anything_else_saying_what_was_expected(wrong: Any) -> None:
    with pytest.raises(TypeError, match=r"ASGI 3 app .* or a handler"):
        as_terminal_app(wrong)


def test_use_rejects_non_middleware() -> None:
    with pytest.raises(TypeError, match=r"middleware\(context, call_next\)"):
        Pipeline().use(handler)  # type: ignore[arg-type]


def recording_middleware(log: list[str], name: str) -> Callable[..., Any]:
    async def middleware(context: HttpContext, call_next: Callable[[], Any]) -> None:
        log.append(f"{name} in")
        await call_next()
        log.append(f"{name} out")
    return middleware


def recording_asgi(log: list[str], name: str) -> Callable[[ASGIApp], ASGIApp]:
    def factory(app: ASGIApp, **options: Any) -> ASGIApp:
        async def wrapped(scope: Any, receive: Any, send: Any) -> None:
            log.append(f"{name} in {options}")
            await app(scope, receive, send)
            log.append(f"{name} out")
        return wrapped
    return factory


async def test_layers_run_in_stage_order_then_in_the_order_added() -> None:
    log: list[str] = []
    pipeline = Pipeline()
    pipeline.use(recording_middleware(log, "app1"))
    pipeline.use_asgi_middleware(recording_asgi(log, "asgi2"), flag=True)
    pipeline.use(recording_middleware(log, "auth"), Stage.AUTHENTICATION)
    pipeline.use(recording_middleware(log, "integration"), Stage.INTEGRATION)

    async def terminal(context: HttpContext) -> None:
        log.append("app")
        await context.response.write("ok")

    exchange = await call(pipeline.build(as_terminal_app(terminal)))
    assert log == ["integration in", "auth in", "app1 in", "asgi2 in {'flag': True}", "app",
                   "asgi2 out", "app1 out", "auth out", "integration out"]
    assert exchange.status == 200 and exchange.body == b"ok"


async def test_middleware_can_answer_without_calling_next() -> None:
    async def gate(context: HttpContext, call_next: Any) -> None:
        context.response.status_code = 403
        await context.response.write("no")

    pipeline = Pipeline()
    pipeline.use(gate)
    exchange = await call(pipeline.build(as_terminal_app(handler)))
    assert exchange.status == 403 and exchange.body == b"no"


async def test_headers_set_before_call_next_reach_the_response_and_status_is_seen() -> None:
    seen: list[int] = []

    async def decorate(context: HttpContext, call_next: Any) -> None:
        context.response.headers["x-frame-options"] = "deny"
        await call_next()
        seen.append(context.response.status_code)

    async def teapot(context: HttpContext) -> None:
        context.response.status_code = 418
        await context.response.write("short and stout")

    pipeline = Pipeline()
    pipeline.use(decorate)
    exchange = await call(pipeline.build(as_terminal_app(teapot)))
    assert exchange.headers[b"x-frame-options"] == b"deny"
    assert seen == [418]


async def test_body_read_by_middleware_is_replayed_to_the_app() -> None:
    async def peek(context: HttpContext, call_next: Any) -> None:
        assert await context.request.body() == b"abcdef"
        await call_next()

    async def echo(context: HttpContext) -> None:
        await context.response.write(await context.request.body())

    pipeline = Pipeline()
    pipeline.use(peek)
    exchange = await call(pipeline.build(as_terminal_app(echo)), http_scope(method="POST"),
                          Exchange([b"abc", b"def"]))
    assert exchange.body == b"abcdef"


async def test_context_mirrors_the_scope() -> None:
    facts: dict[str, Any] = {}

    async def inspect_context(context: HttpContext) -> None:
        request, connection = context.request, context.connection
        facts.update(method=request.method, scheme=request.scheme, host=request.host,
                     path=request.path, path_base=request.path_base, query=request.query_string,
                     header=request.headers["HOST"], remote=(connection.remote_ip,
                                                             connection.remote_port),
                     local=(connection.local_ip, connection.local_port),
                     cert=connection.client_certificate, anonymous=not context.user.identity
                     .is_authenticated, model=context.features.hosting_model)
        context.items["k"] = "v"
        await context.response.write("done")

    scope = http_scope("/app/orders")
    scope["root_path"] = "/app"
    await call(stage(inspect_context), scope)
    assert facts == {"method": "GET", "scheme": "http", "host": "example.test",
                     "path": "/orders", "path_base": "/app", "query": "q=1",
                     "header": "example.test", "remote": ("10.0.0.7", 5555),
                     "local": ("127.0.0.1", 8000), "cert": None, "anonymous": True,
                     "model": "InProcess"}


async def test_headers_are_case_insensitive_and_multi_valued() -> None:
    headers = hostkit.Headers([(b"accept", b"a"), (b"Accept", b"b")])
    assert headers["ACCEPT"] == "a"
    assert headers.get_all("accept") == ["a", "b"]
    headers["accept"] = "c"
    headers.add("X-One", "1")
    assert headers.get_all("Accept") == ["c"]
    assert "x-one" in headers and len(headers) == 2
    del headers["x-one"]
    assert "x-one" not in headers


# -- the server stage ------------------------------------------------------------------------


async def test_asgi_scope_gets_features_user_and_lifespan_state() -> None:
    seen: dict[str, Any] = {}

    async def app(scope: Any, receive: Any, send: Any) -> None:
        seen.update(hostkit=scope["hostkit"], user=scope["user"], state=scope["state"])
        await send({"type": "http.response.start", "status": 204, "headers": []})
        await send({"type": "http.response.body", "body": b""})

    request_stage = stage(app, lifespan_state={"db": "connected"})
    await call(request_stage)
    assert seen["hostkit"] is FEATURES
    assert isinstance(seen["user"], hostkit.ClaimsPrincipal)
    assert seen["state"] == {"db": "connected"}
    assert seen["state"] is not request_stage.lifespan_state  # a copy per request


async def test_declared_length_over_limit_fails_the_first_read_before_anything_is_read() -> None:
    read: list[bytes] = []

    async def app(context: HttpContext) -> None:
        read.append(await context.request.body())
        await context.response.write("read it all")  # never reached

    exchange = Exchange([b"x" * 101])
    await call(stage(app), http_scope(method="POST", headers=[(b"content-length", b"101")]),
               exchange)
    assert exchange.status == 413 and read == []
    assert exchange.inbox == []  # the body the app never saw was read and dropped


async def test_declared_length_over_limit_is_no_error_for_an_app_that_never_reads() -> None:
    async def app(context: HttpContext) -> None:
        await context.response.write("did not read it")  # as ASP.NET Core: checked on read

    exchange = await call(stage(app), http_scope(method="POST", headers=[
        (b"content-length", b"101")]), Exchange([b"x" * 101]))
    assert (exchange.status, exchange.body) == (200, b"did not read it")


async def test_undeclared_body_over_limit_is_413_when_read() -> None:
    async def app(context: HttpContext) -> None:
        await context.request.body()
        await context.response.write("read it all")  # never reached

    exchange = await call(stage(app), http_scope(method="POST"), Exchange([b"x" * 60] * 2))
    assert exchange.status == 413
    assert b"read it all" not in exchange.body


async def test_limit_zero_means_no_limit() -> None:
    async def app(context: HttpContext) -> None:
        await context.response.write(str(len(await context.request.body())))

    exchange = await call(stage(app, max_request_body_size=0), http_scope(method="POST"),
                          Exchange([b"x" * 500]))
    assert exchange.body == b"500"


async def test_exception_before_response_is_500(caplog: pytest.LogCaptureFixture) -> None:
    async def app(context: HttpContext) -> None:
        raise ValueError("kaput")

    exchange = await call(stage(app))
    assert exchange.status == 500 and exchange.body == b""
    assert "kaput" in caplog.text


async def test_exception_after_response_started_is_logged_once_and_leaves_the_body_unfinished(
        caplog: pytest.LogCaptureFixture) -> None:
    async def app(context: HttpContext) -> None:
        await context.response.write("partial")
        raise ValueError("mid-stream")

    exchange = await call(stage(app))  # returns: a raise would be logged again by the server
    assert exchange.status == 200 and exchange.body == b"partial"
    assert exchange.sent[-1].get("more_body") is True  # no made-up end: the server closes
    (record,) = [r for r in caplog.records if r.exc_info]
    assert record.name == "hostkit.request" and "mid-stream" in caplog.text


async def test_app_returning_without_response_is_500() -> None:
    async def app(scope: Any, receive: Any, send: Any) -> None:
        return

    assert (await call(stage(app))).status == 500


async def test_request_aborted_is_seen_while_the_app_does_not_read() -> None:
    observed: list[bool] = []
    exchange = Exchange()

    async def app(context: HttpContext) -> None:
        assert not context.request_aborted.is_set()  # starts watching, costs nothing before
        exchange.disconnect.set()  # the client goes away while the app is busy
        with anyio.fail_after(2):
            await context.request_aborted.wait()
        observed.append(context.request_aborted.is_set())

    async with anyio.create_task_group() as task_group:
        await call(stage(app, task_group=task_group), exchange=exchange)
    assert observed == [True]


async def test_synchronous_io_is_refused_unless_allowed() -> None:
    errors: list[BaseException] = []

    async def app(context: HttpContext) -> None:
        try:
            await anyio.to_thread.run_sync(context.response.write_sync, "x")
        except hostkit.InvalidOperationError as error:
            errors.append(error)
        await context.response.write("async is fine")

    await call(stage(app))
    assert "server.allow_synchronous_io" in str(errors[0])

    async def allowed(context: HttpContext) -> None:
        body = await anyio.to_thread.run_sync(context.request.body_sync)
        await anyio.to_thread.run_sync(context.response.write_sync, body)

    exchange = await call(stage(allowed, allow_synchronous_io=True), http_scope(method="POST"),
                          Exchange([b"sync"]))
    assert exchange.body == b"sync"


async def test_start_failure_page_with_details_only_when_asked() -> None:
    from hostkit.lifespan import AppStartFailure

    request_stage = stage(handler, show_details=True,
                         start_failure=AppStartFailure("boom", "Traceback: <boom>"))
    detailed = await call(request_stage)
    assert detailed.status == 500
    assert b"500.30 In-Process Start Failure" in detailed.body
    assert b"Traceback: &lt;boom&gt;" in detailed.body  # escaped
    request_stage.show_details = False
    assert b"Traceback" not in (await call(request_stage)).body
    request_stage.bare_error_pages = True
    assert (await call(request_stage)).body == b""


async def test_websocket_scope_reaches_asgi_app_unchanged() -> None:
    seen: list[str] = []

    async def app(scope: Any, receive: Any, send: Any) -> None:
        seen.append(scope["type"])
        await send({"type": "websocket.close", "code": 1000})

    sent: list[Message] = []

    async def send(message: Message) -> None:
        sent.append(message)

    async def receive() -> Message:
        return {"type": "websocket.connect"}

    await stage(app)({"type": "websocket", "path": "/ws", "headers": []}, receive, send)
    assert seen == ["websocket"] and sent == [{"type": "websocket.close", "code": 1000}]


# -- lifespan --------------------------------------------------------------------------------


async def test_lifespan_startup_and_shutdown_with_state() -> None:
    events: list[str] = []

    async def app(scope: Any, receive: Any, send: Any) -> None:
        assert scope["type"] == "lifespan"
        while True:
            message = await receive()
            events.append(message["type"])
            if message["type"] == "lifespan.startup":
                scope["state"]["ready"] = True
                await send({"type": "lifespan.startup.complete"})
            else:
                await send({"type": "lifespan.shutdown.complete"})
                return

    async with anyio.create_task_group() as task_group:
        lifespan = Lifespan(app)
        assert await lifespan.startup(task_group) is None
        assert lifespan.state == {"ready": True}
        await lifespan.shutdown()
    assert events == ["lifespan.startup", "lifespan.shutdown"]


async def test_lifespan_failure_after_startup_message_is_reported() -> None:
    async def app(scope: Any, receive: Any, send: Any) -> None:
        await receive()
        raise ConnectionError("no database")

    async with anyio.create_task_group() as task_group:
        failure = await Lifespan(app).startup(task_group)
    assert failure is not None
    assert failure.message == "ConnectionError: no database"
    assert "Traceback" in failure.detail


async def test_lifespan_startup_failed_message_is_reported() -> None:
    async def app(scope: Any, receive: Any, send: Any) -> None:
        await receive()
        await send({"type": "lifespan.startup.failed", "message": "bad config"})

    async with anyio.create_task_group() as task_group:
        failure = await Lifespan(app).startup(task_group)
    assert failure is not None and failure.message == "bad config"


async def test_app_without_lifespan_support_is_fine() -> None:
    async def app(scope: Any, receive: Any, send: Any) -> None:
        assert scope["type"] == "http"  # raises before reading anything: not supported

    async with anyio.create_task_group() as task_group:
        assert await Lifespan(app).startup(task_group) is None
    async with anyio.create_task_group() as task_group:
        assert await Lifespan(as_terminal_app(handler)).startup(task_group) is None


# -- claims transformation -------------------------------------------------------------------


async def test_claims_transformations_run_in_documented_order_each_getting_the_last() -> None:
    order: list[str] = []

    def add(name: str) -> Callable[..., Any]:
        def transform(principal: hostkit.ClaimsPrincipal, context: HttpContext) -> Any:
            order.append(name)
            principal.identity.add_claim(hostkit.Claim(hostkit.ClaimTypes.ROLE, name))
            return principal
        return transform

    class Early:
        hostkit_transform_claims = staticmethod(hostkit.hookimpl(add("hook-first-registered")))

    class Late:
        hostkit_transform_claims = staticmethod(hostkit.hookimpl(add("hook-last-registered")))

    async def replace(principal: hostkit.ClaimsPrincipal, context: HttpContext) -> Any:
        order.append("async-function")
        roles = [c.value for c in principal.claims]
        return hostkit.ClaimsPrincipal(hostkit.ClaimsIdentity(
            [hostkit.Claim(hostkit.ClaimTypes.ROLE, r) for r in roles]
            + [hostkit.Claim(hostkit.ClaimTypes.NAME, "alice")], "Test"))

    plugins = Plugins({})
    plugins.register(Early(), "early")
    plugins.register(Late(), "late")
    middleware = claims_transformation_middleware(plugins.manager, [add("function"), replace])
    assert middleware is not None
    seen: list[hostkit.ClaimsPrincipal] = []

    async def app(context: HttpContext) -> None:
        seen.append(context.user)
        await context.response.write("ok")

    pipeline = Pipeline()
    pipeline.use(middleware, Stage.AUTHENTICATION)
    await call(pipeline.build(as_terminal_app(app)))
    assert order == ["hook-last-registered", "hook-first-registered", "function",
                     "async-function"]
    user = seen[0]
    assert user.identity.name == "alice" and user.identity.is_authenticated
    assert user.is_in_role("function") and user.is_in_role("hook-first-registered")


def test_no_transformations_means_no_layer() -> None:
    assert claims_transformation_middleware(Plugins({}).manager, []) is None
