"""The gateway (``hostkit/gateway.py``) and its InProcess layer (``hostkit/gateway_stage.py``):
readiness, request ids on every answer and in the access log, trusted proxies, the limit
under load. In memory where the parts are checked, end to end with real programs where the
whole InProcess host is."""

from __future__ import annotations

import base64
import json
import logging
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import anyio
import pytest

from hostkit import HttpContext
from hostkit.asgi import Message
from hostkit.authentication.passwords import hash_password
from hostkit.authentication.users_file import set_user
from hostkit.configuration import load_configuration
from hostkit.gateway import DRAINING, READY, START_FAILED, Gateway, Readiness, gateway_for
from hostkit.gateway_stage import GatewayStage
from hostkit.metrics import Metrics
from hostkit.testing import Program, python, write_settings
from tests.support.asgi import Exchange, call, http_scope, stage
from tests.support.http import Response, build, request_once
from tests.support.paths import PROGRAMS

pytestmark = pytest.mark.anyio

TIMEOUT = 10.0
ID = rb"0[0-9A-V]{13}:[1-9A-F][0-9A-F]*"


# -- readiness --------------------------------------------------------------------------------

def ready_metric(metrics: Metrics) -> float | None:
    return metrics.registry.get_sample_value("hostkit_ready")


def test_readiness_follows_its_state_and_the_servers_checks() -> None:
    metrics = Metrics()
    readiness = Readiness(metrics)
    assert readiness.unready_reason == "starting" and ready_metric(metrics) == 0
    readiness.set_state(READY)
    assert readiness.unready_reason is None and ready_metric(metrics) == 1
    offline: list[str] = []
    readiness.add_check(lambda: offline[0] if offline else None)
    assert readiness.unready_reason is None
    offline.append("offline")
    assert readiness.unready_reason == "offline"
    readiness.refresh()
    assert ready_metric(metrics) == 0
    offline.clear()
    readiness.refresh()
    assert ready_metric(metrics) == 1
    for state in (DRAINING, START_FAILED):
        readiness.set_state(state)
        assert readiness.unready_reason == state and ready_metric(metrics) == 0
    with pytest.raises(ValueError, match="unknown readiness state 'stopped'"):
        readiness.set_state("stopped")


def gateway(tmp_path: Path, *args: str) -> Gateway:
    return gateway_for(load_configuration(list(args), {}, content_root=tmp_path), None)


def test_health_answers(tmp_path: Path) -> None:
    health = gateway(tmp_path, "--health:liveness_path=/live", "--health:readiness_path=/ready")
    assert health.health_answer("/live") == (200, b"ok\n")
    assert health.health_answer("/ready") == (503, b"not ready: starting\n")
    health.readiness.set_state(READY)
    assert health.health_answer("/ready") == (200, b"ready\n")
    assert health.health_answer("/") is None and health.health_answer("/live/") is None
    assert gateway(tmp_path).health_answer("/live") is None
    assert not gateway(tmp_path).has_health_paths


@pytest.mark.parametrize("args, clash", [
    (["--health:liveness_path=/h", "--health:readiness_path=/h"],
     r"argument --health:readiness_path=/h: health.readiness_path = '/h' is also "
     r"health.liveness_path \(set by command-line argument --health:liveness_path=/h\)"),
    (["--health:app_path=/ok", "--health:liveness_path=/ok"],
     r"health.liveness_path = '/ok' is also health.app_path"),
])
def test_one_path_for_two_purposes_is_a_configuration_error(tmp_path: Path, args: list[str],
                                                            clash: str) -> None:
    from hostkit import ConfigurationError

    with pytest.raises(ConfigurationError, match=clash):
        load_configuration(args, {}, content_root=tmp_path)


# -- the layer, in memory ---------------------------------------------------------------------

class AccessLines(logging.Handler):
    """The access log's lines, as its logger hands them on."""

    def __init__(self) -> None:
        super().__init__()
        self.lines: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append(record.getMessage())


@pytest.fixture
def access_lines() -> Iterator[AccessLines]:
    handler = AccessLines()
    logger = logging.getLogger("hostkit.access")
    level = logger.level
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    try:
        yield handler
    finally:
        logger.removeHandler(handler)
        logger.setLevel(level)


def layer(tmp_path: Path, app: Any, *args: str, opened: bool = True) -> GatewayStage:
    served = GatewayStage(gateway(tmp_path, *args))
    if opened:
        served.open(stage(app))
    return served


async def hello(context: HttpContext) -> None:
    await context.response.write(f"id {context.trace_identifier}")


async def boom(context: HttpContext) -> None:
    raise RuntimeError("boom (on purpose)")


async def reads_the_body(context: HttpContext) -> None:
    await context.request.body()


async def test_every_answer_carries_the_request_id_the_access_log_and_the_app_see(
        tmp_path: Path, access_lines: AccessLines) -> None:
    served = layer(tmp_path, hello)
    answered = await call(served)
    request_id = answered.headers[b"x-request-id"]
    assert re.fullmatch(ID, request_id)
    assert answered.body == b"id " + request_id
    failed = await call(layer(tmp_path, boom))
    assert failed.status == 500 and re.fullmatch(ID, failed.headers[b"x-request-id"])
    too_large = await call(layer(tmp_path, reads_the_body),
                           http_scope(method="POST"), Exchange([b"x" * 200]))
    assert too_large.status == 413 and b"x-request-id" in too_large.headers
    assert len(access_lines.lines) == 3
    assert access_lines.lines[0].endswith(request_id.decode())
    assert '"GET /?q=1 HTTP/1.1" 200 ' in access_lines.lines[0]
    assert '"GET /?q=1 HTTP/1.1" 500 ' in access_lines.lines[1]
    assert access_lines.lines[0].startswith("10.0.0.7 - - [")


async def test_an_id_the_app_sets_is_replaced_so_a_response_carries_one(
        tmp_path: Path) -> None:
    async def app(context: HttpContext) -> None:
        context.response.headers["X-Request-Id"] = "the-apps-own"
        await context.response.write("hello")

    answered = await call(layer(tmp_path, app, "--logging:access_log=false"))
    start = next(m for m in answered.sent if m["type"] == "http.response.start")
    ids = [value for name, value in start["headers"] if name.lower() == b"x-request-id"]
    assert len(ids) == 1 and re.fullmatch(ID, ids[0])


async def test_the_id_reaches_the_log_lines_written_while_the_request_is_served(
        tmp_path: Path) -> None:
    from hostkit.logs import REQUEST_ID

    seen: list[str | None] = []

    async def app(context: HttpContext) -> None:
        seen.append(REQUEST_ID.get())
        context.trace_identifier = "set-by-the-app"
        seen.append(REQUEST_ID.get())

    answered = await call(layer(tmp_path, app, "--logging:access_log=false"))
    assert seen == [answered.headers[b"x-request-id"].decode(), "set-by-the-app"]
    assert REQUEST_ID.get() is None  # only for the request's task


async def test_until_the_stage_opens_health_paths_answer_and_requests_wait(
        tmp_path: Path) -> None:
    served = layer(tmp_path, hello, "--health:liveness_path=/live",
                   "--health:readiness_path=/ready", opened=False)
    assert (await call(served, http_scope("/ready"))).status == 503
    assert (await call(served, http_scope("/live"))).body == b"ok\n"
    exchanges: list[Exchange] = []

    async def waiting() -> None:
        exchanges.append(await call(served))

    async with anyio.create_task_group() as task_group:
        task_group.start_soon(waiting)
        await anyio.sleep(0.05)
        assert exchanges == []
        served.open(stage(hello))
    assert exchanges[0].status == 200


async def until(condition: Any) -> None:
    with anyio.fail_after(5):
        while not condition():
            await anyio.sleep(0.01)


async def test_a_queued_request_whose_client_goes_away_leaves_the_queue(
        tmp_path: Path, access_lines: AccessLines) -> None:
    release = anyio.Event()
    called: list[str] = []

    async def app(context: HttpContext) -> None:
        called.append(context.request.path)
        await release.wait()
        await context.response.write(await context.request.body())

    served = layer(tmp_path, app, "--server:max_concurrent_requests=1",
                   "--server:request_queue_length=1")
    limit = served.gateway.limit
    assert limit is not None
    first, gone, third = Exchange([b"1"]), Exchange([b"2"]), Exchange([b"3"])
    async with anyio.create_task_group() as task_group:
        task_group.start_soon(call, served, http_scope("/first", "POST"), first)
        await until(lambda: called == ["/first"])
        task_group.start_soon(call, served, http_scope("/gone", "POST"), gone)
        await until(lambda: limit.waiting == 1)
        gone.disconnect.set()
        await until(lambda: limit.waiting == 0)  # it left: the queue has room again
        task_group.start_soon(call, served, http_scope("/third", "POST"), third)
        await until(lambda: limit.waiting == 1)
        release.set()
    assert called == ["/first", "/third"]
    assert gone.sent == []
    assert (first.body, third.body) == (b"1", b"3")  # what was read while queued is replayed
    assert '"POST /gone?q=1 HTTP/1.1" 499 ' in access_lines.lines[0]  # logged as it left
    assert limit.in_use == 0


async def test_a_websocket_gets_an_id_and_one_access_line_at_its_close(
        tmp_path: Path, access_lines: AccessLines) -> None:
    async def chat(scope: Any, receive: Any, send: Any) -> None:
        await receive()
        await send({"type": "websocket.accept"})
        await send({"type": "websocket.send", "text": "hé"})
        await send({"type": "websocket.close", "code": 1000})

    scope = {**http_scope("/chat"), "type": "websocket", "scheme": "ws"}
    sent: list[Message] = []

    async def receive() -> Message:
        return {"type": "websocket.connect"}

    async def send(message: Message) -> None:
        sent.append(message)

    await layer(tmp_path, chat)(scope, receive, send)
    accept = sent[0]
    assert accept["type"] == "websocket.accept"
    assert re.fullmatch(ID, dict(accept["headers"])[b"x-request-id"])
    assert len(access_lines.lines) == 1
    assert '"GET /chat?q=1 HTTP/1.1" 101 3 ' in access_lines.lines[0]


# -- end to end ------------------------------------------------------------------------------

PROBE = PROGRAMS / "probe.py"


def start(root: Path, backend: str, settings: dict[str, Any]) -> Program:
    write_settings(root, settings)
    program = Program(python(str(PROBE), "--urls=http://127.0.0.1:0",
                             f"--async_backend={backend}"), cwd=root)
    program.wait_started(TIMEOUT + 10)
    return program


def port_of(program: Program) -> int:
    return int(program.urls[0].rpartition(":")[2])


async def get(port: int, path: str, *headers: tuple[str, str]) -> Response:
    return await request_once(port, build("GET", path, [("Connection", "close"), *headers]),
                              TIMEOUT)


def access_line(program: Program, request_id: bytes) -> str:
    return program.wait_for_line(request_id.decode(), TIMEOUT)


async def test_x_request_id_on_every_response_and_in_its_access_log_line(
        anyio_backend: str, tmp_path: Path) -> None:
    users = tmp_path / "users.txt"
    set_user(users, "alice", hash_password("wonderland", 1000))
    alice = ("Authorization", "Basic " + base64.b64encode(b"alice:wonderland").decode())
    with start(tmp_path, anyio_backend, {"authentication": {"schemes": ["basic"]}}) as program:
        port = port_of(program)
        ids = []
        for path, status in (("/features", 200), ("/nowhere", 404), ("/boom", 500)):
            response = await get(port, path, alice, ("X-Request-Id", "client-chosen"))
            assert response.status == status
            request_id = response.header(b"x-request-id") or b""
            assert re.fullmatch(ID, request_id), response.headers  # not a known proxy's
            line = access_line(program, request_id)
            assert line.startswith("127.0.0.1 - alice [")
            assert f'"GET {path} HTTP/1.1" {status} ' in line
            ids.append(request_id)
        assert len(set(ids)) == 3


async def test_a_known_proxys_client_address_and_request_id_are_believed(
        anyio_backend: str, tmp_path: Path) -> None:
    with start(tmp_path, anyio_backend,
               {"forwarded_headers": {"known_networks": ["127.0.0.0/8"]}}) as program:
        port = port_of(program)
        response = await get(port, "/features", ("X-Forwarded-For", "203.0.113.9"),
                             ("X-Forwarded-Proto", "https"),
                             ("X-Forwarded-Host", "shop.example"),
                             ("X-Request-Id", "from-the-proxy-7"))
        seen = json.loads(bytes(response.body))
        assert (seen["remote_ip"], seen["scheme"], seen["host"]) == (
            "203.0.113.9", "https", "shop.example")
        assert response.header(b"x-request-id") == b"from-the-proxy-7"
        line = access_line(program, b"from-the-proxy-7")
        assert line.startswith("203.0.113.9 - - [")


async def test_past_the_limit_and_the_queue_requests_get_503_with_retry_after_at_once(
        anyio_backend: str, tmp_path: Path) -> None:
    with start(tmp_path, anyio_backend, {"server": {"max_concurrent_requests": 2,
                                                    "request_queue_length": 2}}) as program:
        port = port_of(program)
        answers: list[tuple[float, Response]] = []
        began = anyio.current_time()

        async def client() -> None:
            response = await get(port, "/slow?1.5")
            answers.append((anyio.current_time() - began, response))

        async with anyio.create_task_group() as task_group:
            for _ in range(10):
                task_group.start_soon(client)
        served = [response for _, response in answers if response.status == 200]
        refused = [(at, response) for at, response in answers if response.status == 503]
        assert (len(served), len(refused)) == (4, 6), [r.status for _, r in answers]
        for at, response in refused:
            assert at < 1.0, at  # at once, not after a wait
            assert response.header(b"retry-after") == b"1"
            assert response.header(b"x-request-id")
        assert max(at for at, _ in answers) >= 3.0  # the queued two waited for a slot
        assert program.output.count('"GET /slow?1.5 HTTP/1.1" 503 ') == 6
