"""WSGI apps (PEP 3333) through hostkit's adapter, hostkit/wsgi.py, on asyncio and trio.

In memory, through the request stage a server calls: the environ (checked by the stdlib's
``wsgiref.validate.validator``, whose warnings are errors here), the body limit, the thread
limit, ``close()`` on a disconnect, the bad apps, and how ``use_app`` and ``hostkit run``
tell a WSGI app apart. Over real sockets, in both hosting models: tests/programs/wsgi_probe.py
(the validator around every well-behaved path), streaming, ``wsgi.file_wrapper``,
``write()``, a client leaving a streaming response, the bad apps, 413 and the forwarded
values.
"""

from __future__ import annotations

import hashlib
import io
import json
import logging
import threading
import time
import warnings
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any
from wsgiref.validate import WSGIWarning, validator

import anyio
import httpx
import pytest

import hostkit
from hostkit import Claim, ClaimsIdentity, ClaimsPrincipal, ClaimTypes
from hostkit.cli import load_target
from hostkit.testing import Program
from hostkit.wsgi import WsgiApp, is_wsgi_app
from tests.support.asgi import Exchange, call, http_scope, stage
from tests.support.fronts import child_log
from tests.support.models import MODELS, serve_in
from tests.support.paths import PROGRAMS

pytestmark = pytest.mark.anyio

TIMEOUT = 10


@pytest.fixture(autouse=True)
def wsgi_warnings_are_errors() -> Iterator[None]:
    """The validator's WSGIWarning raises in the app's thread (the filters are global)."""
    with warnings.catch_warnings():
        warnings.simplefilter("error", WSGIWarning)
        yield


def facts_app(environ: dict[str, Any], start_response: Any) -> list[bytes]:
    """The environ's plain values as JSON, and the body it read."""
    body = environ["wsgi.input"].read(int(environ.get("CONTENT_LENGTH") or 0))
    facts = {key: value for key, value in environ.items()
             if isinstance(value, (str, bool, int))}
    facts["body"] = body.decode()
    data = json.dumps(facts).encode()
    start_response("200 OK", [("Content-Type", "application/json"),
                              ("Content-Length", str(len(data)))])
    return [data]


def served(app: Any, **options: Any) -> Any:
    """``app`` as the request stage serves it (body limit 100 unless ``options`` say)."""
    return stage(WsgiApp(app, threads=options.pop("threads", 10)), **options)


# -- the environ, checked by the validator -----------------------------------------------------

async def test_the_environ_satisfies_the_validator_and_pep_3333() -> None:
    scope = http_scope("/app/caf\u00e9/x", method="POST", headers=[
        (b"host", b"shop.example:8443"), (b"content-type", b"text/plain"),
        (b"content-length", b"5"), (b"x-many", b"1"), (b"x-many", b"2"),
        (b"cookie", b"a=1"), (b"cookie", b"b=2"), (b"x_sneaky", b"dropped")])
    scope.update(root_path="/app", http_version="2", scheme="https", query_string=b"q=%20")
    exchange = await call(served(validator(facts_app)), scope, Exchange([b"hel", b"lo"]))
    assert exchange.status == 200, exchange.body
    facts = json.loads(exchange.body)
    assert facts["REQUEST_METHOD"] == "POST"
    assert facts["SCRIPT_NAME"] == "/app"
    assert facts["PATH_INFO"] == "/caf\u00e9/x".encode().decode("latin-1")  # PEP 3333 bytes
    assert facts["QUERY_STRING"] == "q=%20"
    assert facts["SERVER_PROTOCOL"] == "HTTP/2"
    assert (facts["SERVER_NAME"], facts["SERVER_PORT"]) == ("shop.example", "8443")
    assert facts["wsgi.url_scheme"] == "https" and facts["HTTPS"] == "on"
    assert (facts["REMOTE_ADDR"], facts["REMOTE_PORT"]) == ("10.0.0.7", "5555")
    assert facts["CONTENT_TYPE"] == "text/plain" and facts["CONTENT_LENGTH"] == "5"
    assert "HTTP_CONTENT_TYPE" not in facts and "HTTP_CONTENT_LENGTH" not in facts
    assert facts["HTTP_X_MANY"] == "1,2"
    assert facts["HTTP_COOKIE"] == "a=1; b=2"
    assert "HTTP_X_SNEAKY" not in facts  # `_` in a name could pose as another header's `-`
    assert facts["wsgi.multithread"] is True and facts["wsgi.multiprocess"] is False
    assert facts["wsgi.run_once"] is False and facts["wsgi.input_terminated"] is True
    assert facts["body"] == "hello"
    assert "REMOTE_USER" not in facts and "AUTH_TYPE" not in facts  # anonymous


async def test_the_validator_is_seen_when_something_breaks_pep_3333(
        caplog: pytest.LogCaptureFixture) -> None:
    """The control: a violation inside the validator reaches the test as a logged 500."""
    def no_server_name(environ: dict[str, Any], start_response: Any) -> Any:
        del environ["SERVER_NAME"]
        return validator(facts_app)(environ, start_response)

    def warned(environ: dict[str, Any], start_response: Any) -> Any:
        environ["REQUEST_METHOD"] = "BREW"  # the validator only warns about this one
        return validator(facts_app)(environ, start_response)

    for app, reason in ((no_server_name, "AssertionError"), (warned, "WSGIWarning")):
        caplog.clear()
        exchange = await call(served(app))
        assert exchange.status == 500
        assert reason in caplog.text


async def test_remote_user_and_auth_type_come_from_the_principal() -> None:
    principal = ClaimsPrincipal(ClaimsIdentity([Claim(ClaimTypes.NAME, "alice")], "Basic"))
    wsgi = WsgiApp(validator(facts_app))

    async def authenticated(scope: dict[str, Any], receive: Any, send: Any) -> None:
        scope["user"] = principal  # as the authentication layer sets it, inside the stage
        await wsgi(scope, receive, send)

    exchange = await call(stage(authenticated), http_scope("/"))
    facts = json.loads(exchange.body)
    assert (facts["REMOTE_USER"], facts["AUTH_TYPE"]) == ("alice", "Basic")


async def test_wsgi_input_is_a_raw_binary_stream() -> None:
    """``wsgi.input`` works as an ``io.RawIOBase``: ``readinto``, lines by ``next``, a context
    manager, and ``io.BufferedReader`` around it reads the rest."""
    seen: dict[str, Any] = {}

    def app(environ: dict[str, Any], start_response: Any) -> list[bytes]:
        stream = environ["wsgi.input"]
        seen["kind"] = (isinstance(stream, io.RawIOBase), stream.readable(), stream.seekable(),
                        stream.writable())
        target = bytearray(3)
        seen["readinto"] = (stream.readinto(target), bytes(target))
        seen["line"] = next(stream)
        with stream:
            seen["rest"] = io.BufferedReader(stream).read()
        seen["closed"] = stream.closed
        with pytest.raises(io.UnsupportedOperation):
            stream.fileno()
        start_response("200 OK", [("Content-Type", "text/plain")])
        return [b"ok"]

    scope = http_scope("/", "POST", [(b"host", b"x"), (b"content-length", b"16")])
    exchange = await call(served(app), scope, Exchange([b"abcdef\n", b"ghi", b"jklmno"]))
    assert exchange.status == 200, exchange.body
    assert seen == {"kind": (True, True, False, False), "readinto": (3, b"abc"),
                    "line": b"def\n", "rest": b"ghijklmno", "closed": True}


async def test_a_response_header_sent_again_is_treated_the_same(
        caplog: pytest.LogCaptureFixture) -> None:
    """The checked headers are remembered: the second response with the same headers is sent
    the same (hop-by-hop left out, a list pair taken), a bad one refused every time."""
    def app(environ: dict[str, Any], start_response: Any) -> list[bytes]:
        if environ["PATH_INFO"] == "/bad":
            start_response("200 OK", [("X-Echo", "a\r\nSet-Cookie: session=stolen")])
        else:
            start_response("201 Created", [("Content-Type", "text/plain"), ("Connection", "close"),
                                           ["X-List", "yes"], ("Content-Length", "2")])
        return [b"ok"]

    under_test = served(app)
    for _ in range(3):
        exchange = await call(under_test)
        assert exchange.status == 201 and exchange.body == b"ok"
        headers = exchange.headers
        assert (headers[b"content-type"], headers[b"x-list"], headers[b"content-length"]) == (
            b"text/plain", b"yes", b"2")
        assert b"connection" not in headers
    for _ in range(2):
        caplog.clear()
        assert (await call(under_test, http_scope("/bad"))).status == 500
        assert "cannot be sent" in caplog.text


def test_one_app_serves_one_event_loop_after_another_on_either_backend() -> None:
    """The threads keep the last event loop's inbox and token; another loop (a new run, the
    other backend) gets its own, and the requests of each come back to it."""
    app = WsgiApp(facts_app, threads=2)

    async def serve_some() -> list[int]:
        async def one() -> None:
            statuses.append((await call(app, http_scope("/"))).status)

        statuses: list[int] = []
        async with anyio.create_task_group() as group:
            for _ in range(5):
                group.start_soon(one)
        return statuses

    for backend in ("asyncio", "trio", "asyncio", "trio"):
        assert anyio.run(serve_some, backend=backend) == [200] * 5


# -- the body limit ----------------------------------------------------------------------------

async def test_a_declared_body_over_the_limit_gets_413_before_the_app_runs() -> None:
    calls = []

    def app(environ: dict[str, Any], start_response: Any) -> Any:
        calls.append(environ)
        return facts_app(environ, start_response)

    scope = http_scope("/", "POST", [(b"host", b"x"), (b"content-length", b"101")])
    exchange = await call(served(app), scope, Exchange([b"x" * 101]))
    assert exchange.status == 413
    assert calls == []


async def test_a_counted_body_over_the_limit_gets_413_whatever_the_app_answers() -> None:
    """Chunked, no length: the read that passes the limit raises in the app; an app that
    catches it and answers 200 with half a body still gets 413 sent instead."""
    read: list[int] = []

    def app(environ: dict[str, Any], start_response: Any) -> Any:
        total = 0
        try:
            while chunk := environ["wsgi.input"].read(1000):
                total += len(chunk)
        except hostkit.HostkitError:
            pass
        read.append(total)
        start_response("200 OK", [("Content-Type", "text/plain")])
        return [b"half a body read: %d" % total]

    scope = http_scope("/", "POST", [(b"host", b"x"), (b"transfer-encoding", b"chunked")])
    # More than the pre-read takes: the limit is passed in the app's thread.
    big = served(app, max_request_body_size=100_000)
    exchange = await call(big, scope, Exchange([b"y" * 40_000] * 3))
    assert exchange.status == 413
    assert read and read[0] <= 100_000
    small = served(app)  # passed while the event loop reads ahead: the app never runs
    read.clear()
    exchange = await call(small, scope,
                          Exchange([b"y" * 60, b"y" * 60]))
    assert exchange.status == 413 and read == []


# -- threads, close, disconnects ---------------------------------------------------------------

async def test_at_most_wsgi_threads_requests_run_at_once() -> None:
    running, peak = 0, 0
    lock = threading.Lock()

    def app(environ: dict[str, Any], start_response: Any) -> Any:
        nonlocal running, peak
        with lock:
            running += 1
            peak = max(peak, running)
        time.sleep(0.05)
        with lock:
            running -= 1
        start_response("200 OK", [("Content-Length", "2")])
        return [b"ok"]

    app_under_test = served(app, threads=2)
    statuses = []

    async def one() -> None:
        statuses.append((await call(app_under_test)).status)

    async with anyio.create_task_group() as group:
        for _ in range(6):
            group.start_soon(one)
    assert statuses == [200] * 6
    assert peak == 2


class Counted:
    """A response iterable that records its ``close()``."""

    def __init__(self, chunks: Iterator[bytes]):
        self.chunks = chunks
        self.closed = threading.Event()

    def __iter__(self) -> Iterator[bytes]:
        return self.chunks

    def close(self) -> None:
        self.closed.set()


async def test_close_is_called_when_the_client_leaves_a_streaming_response() -> None:
    produced = []

    def forever() -> Iterator[bytes]:
        while True:
            produced.append(1)
            yield b"x"
            time.sleep(0.01)

    body = Counted(forever())

    def app(environ: dict[str, Any], start_response: Any) -> Any:
        start_response("200 OK", [("Content-Type", "text/plain")])
        return body

    exchange = Exchange()
    async with anyio.create_task_group() as group:
        app_under_test = served(app)
        app_under_test.task_group = group  # what lets the stage watch for a disconnect
        group.start_soon(call, app_under_test, http_scope("/"), exchange)
        with anyio.fail_after(TIMEOUT):
            while len(exchange.sent) < 5:
                await anyio.sleep(0.01)
        exchange.disconnect.set()
        with anyio.fail_after(TIMEOUT):
            while not body.closed.is_set():
                await anyio.sleep(0.01)
    count = len(produced)
    time.sleep(0.05)
    assert len(produced) == count  # the iteration stopped


async def test_close_is_called_when_the_app_iterable_fails(
        caplog: pytest.LogCaptureFixture) -> None:
    def failing() -> Iterator[bytes]:
        yield b"part"
        raise ValueError("the iterable failed")

    body = Counted(failing())

    def app(environ: dict[str, Any], start_response: Any) -> Any:
        start_response("200 OK", [])
        return body

    exchange = await call(served(app))
    assert body.closed.is_set()
    assert exchange.status == 200 and exchange.body == b"part"
    assert exchange.sent[-1].get("more_body") is True  # no made-up end of the body
    (record,) = [r for r in caplog.records if r.levelno >= logging.ERROR]
    assert "the iterable failed" in caplog.text


# -- bad apps ----------------------------------------------------------------------------------

def _raises(environ: dict[str, Any], start_response: Any) -> Any:
    raise RuntimeError("raised before start_response")


def _twice(environ: dict[str, Any], start_response: Any) -> Any:
    start_response("200 OK", [])
    try:
        start_response("201 Created", [])
    except Exception:
        pass  # an app that swallows the error still gets its 500
    return [b"never sent"]


def _non_iterable(environ: dict[str, Any], start_response: Any) -> Any:
    start_response("200 OK", [])
    return 42


def _bytes(environ: dict[str, Any], start_response: Any) -> Any:
    start_response("200 OK", [])
    return b"bytes, not a list of bytes"


def _text(environ: dict[str, Any], start_response: Any) -> Any:
    start_response("200 OK", [])
    return ["text"]


def _no_start(environ: dict[str, Any], start_response: Any) -> Any:
    return [b"body"]


def _bad_status(environ: dict[str, Any], start_response: Any) -> Any:
    start_response(200, [])
    return [b"body"]


def _header_injection(environ: dict[str, Any], start_response: Any) -> Any:
    start_response("200 OK", [("X-Echo", "a\r\nSet-Cookie: session=stolen")])
    return [b"body"]


@pytest.mark.parametrize("app, reason", [
    (_raises, "raised before start_response"),
    (_twice, "start_response() was called a second time without exc_info"),
    (_non_iterable, "returned 42, which is not iterable"),
    (_bytes, "returned bytes, not an iterable of bytes"),
    (_text, "a body chunk of type str"),
    (_no_start, "returned without calling start_response()"),
    (_bad_status, "got the status 200"),
    (_header_injection, "cannot be sent"),
])
async def test_a_bad_app_gets_500_logged_once_with_the_reason(
        app: Any, reason: str, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO)
    app_under_test = served(app)
    exchange = await call(app_under_test)
    assert exchange.status == 500
    assert b"never sent" not in exchange.body
    (record,) = [r for r in caplog.records if r.levelno >= logging.ERROR]  # logged once
    assert reason in caplog.text
    assert (await call(app_under_test)).status == 500  # and it goes on serving


async def test_exc_info_replaces_the_head_before_it_is_sent() -> None:
    def app(environ: dict[str, Any], start_response: Any) -> Any:
        start_response("200 OK", [("Content-Type", "text/plain"), ("X-First", "1")])
        try:
            raise ValueError("late trouble")
        except ValueError as error:
            start_response("503 Service Unavailable", [("Content-Type", "text/plain"),
                                                       ("Content-Length", "4")],
                           (ValueError, error, error.__traceback__))
        return [b"busy"]

    exchange = await call(served(validator(app)))
    assert exchange.status == 503 and exchange.body == b"busy"
    assert b"x-first" not in exchange.headers


async def test_write_and_file_wrapper() -> None:
    def writer(environ: dict[str, Any], start_response: Any) -> Any:
        write = start_response("200 OK", [("Content-Type", "text/plain")])
        write(b"one;")
        write(b"two;")
        return [b"three;"]

    exchange = await call(served(validator(writer)))
    assert exchange.body == b"one;two;three;"
    chunks = [m["body"] for m in exchange.sent if m["type"] == "http.response.body"]
    assert chunks[:2] == [b"one;", b"two;"]  # sent when written

    data = bytes(range(256)) * 1000
    closed = []

    class File:
        def __init__(self) -> None:
            self.offset = 0

        def read(self, size: int) -> bytes:
            chunk = data[self.offset:self.offset + size]
            self.offset += len(chunk)
            return chunk

        def close(self) -> None:
            closed.append(True)

    def files(environ: dict[str, Any], start_response: Any) -> Any:
        start_response("200 OK", [("Content-Length", str(len(data)))])
        return environ["wsgi.file_wrapper"](File(), 4096)

    exchange = await call(served(files))
    assert exchange.body == data and closed == [True]
    assert max(len(m.get("body", b"")) for m in exchange.sent) == 4096  # in blocks


# -- telling a WSGI app apart ------------------------------------------------------------------

def test_use_app_tells_wsgi_asgi_and_handlers_apart() -> None:
    async def asgi(scope: Any, receive: Any, send: Any) -> None: ...

    async def handler(context: Any) -> None: ...

    class Callable2:
        def __call__(self, environ: Any, start_response: Any) -> list[bytes]:
            return []

    assert is_wsgi_app(facts_app) and is_wsgi_app(Callable2())
    assert not is_wsgi_app(asgi) and not is_wsgi_app(handler)
    for app in (asgi, handler, facts_app, Callable2()):
        hostkit.Host.create_default_builder([]).use_app(app)

    def one(a: Any) -> None: ...

    async def two(a: Any, b: Any) -> None: ...

    for wrong, kind in ((one, "a non-async callable of 1"), (two, "an async callable of 2"),
                        (42, "not callable")):
        with pytest.raises(TypeError) as caught:
            hostkit.Host.create_default_builder([]).use_app(wrong)
        assert "a WSGI app `def app(environ, start_response)`" in str(caught.value)
        assert repr(wrong) in str(caught.value) and kind in str(caught.value)


def test_build_wraps_a_wsgi_app_with_the_configured_threads() -> None:
    builder = hostkit.Host.create_default_builder(["--server:wsgi_threads=3"])
    assert builder.use_app(facts_app)._terminal_app().threads == 3  # noqa: SLF001
    workers = hostkit.Host.create_default_builder(["--workers:processes=2"]).use_app(facts_app)
    assert workers._terminal_app().multiprocess is True  # noqa: SLF001


def test_hostkit_run_takes_a_wsgi_function_and_a_flask_app(tmp_path: Path,
                                                            monkeypatch: pytest.MonkeyPatch
                                                            ) -> None:
    (tmp_path / "wsgi_target.py").write_text(
        "from flask import Flask\n"
        "flask_app = Flask(__name__)\n"
        "def plain(environ, start_response):\n"
        "    start_response('200 OK', [])\n"
        "    return [b'']\n"
        "not_an_app = 42\n")
    monkeypatch.chdir(tmp_path)
    for attribute in ("plain", "flask_app"):
        builder = load_target(f"wsgi_target:{attribute}", [])
        assert isinstance(builder._terminal_app(), WsgiApp)  # noqa: SLF001
    with pytest.raises(hostkit.HostkitError, match="not_an_app is not a HostBuilder.*got 42"):
        load_target("wsgi_target:not_an_app", [])


# -- over real sockets, in both models ---------------------------------------------------------

def app_log(model: str, program: Program, root: Path) -> str:
    """What the process that runs the app logged: the program InProcess, its children
    OutOfProcess."""
    return program.output if model == "InProcess" else child_log(root)


@pytest.fixture(scope="module", params=MODELS)
def probe(request: pytest.FixtureRequest, anyio_backend: str,
          tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, Program, Path]]:
    model = request.param
    root = tmp_path_factory.mktemp(f"wsgi-{model}")
    module = {"path_base": "/app"} if model == "OutOfProcess" else {}
    with serve_in(model, PROGRAMS / "wsgi_probe.py", anyio_backend, root,
                  server={"max_request_body_size": 1_000_000}, module=module) as program:
        yield model, program, root


def _base(probe: tuple[str, Program, Path]) -> str:
    model, program, _ = probe
    return program.urls[0] + ("/app" if model == "OutOfProcess" else "")


async def test_environ_over_a_socket(probe: tuple[str, Program, Path]) -> None:
    model, program, root = probe
    async with httpx.AsyncClient(timeout=TIMEOUT) as client:
        response = await client.get(_base(probe) + "/environ?x=1",
                                    headers={"X-Forwarded-For": "203.0.113.9"})
    assert response.status_code == 200, app_log(model, program, root)
    facts = response.json()
    port = program.urls[0].rsplit(":", 1)[1]
    assert facts["REMOTE_ADDR"] == "127.0.0.1"  # the client; an untrusted X-Forwarded-For
    assert int(facts["REMOTE_PORT"]) > 0
    assert (facts["SERVER_NAME"], facts["SERVER_PORT"]) == ("127.0.0.1", port)
    assert facts["wsgi.url_scheme"] == "http" and facts["SERVER_PROTOCOL"] == "HTTP/1.1"
    assert facts["QUERY_STRING"] == "x=1" and facts["PATH_INFO"] == "/environ"
    assert facts["SCRIPT_NAME"] == ("/app" if model == "OutOfProcess" else "")
    assert facts["has_file_wrapper"] is True


async def test_the_body_streams_in_and_the_response_out(
        probe: tuple[str, Program, Path]) -> None:
    base = _base(probe)
    body = bytes(range(256)) * 2000  # 512 000 bytes: more than the pre-read
    body = body.replace(b"\n", b"")

    async def upload() -> AsyncIterator[bytes]:  # chunked, no length
        for offset in range(0, len(body), 50_000):
            yield body[offset:offset + 50_000]

    async with httpx.AsyncClient(timeout=TIMEOUT) as client:
        echoed = await client.post(base + "/echo", content=upload())
        assert echoed.status_code == 200
        assert echoed.json() == {"size": len(body), "sha256": hashlib.sha256(body).hexdigest()}
        arrivals = []
        async with client.stream("GET", base + "/stream?chunks=4&pause=0.2") as response:
            async for chunk in response.aiter_raw():
                arrivals.append((time.monotonic(), chunk))
        assert b"".join(c for _, c in arrivals) == b"chunk 0;chunk 1;chunk 2;chunk 3;"
        assert arrivals[-1][0] - arrivals[0][0] > 0.4  # chunk by chunk, not all at the end
        files = await client.get(base + "/file")
        assert files.content == b"f" * 300_000  # wsgi_probe.FILE_BYTE, FILE_SIZE
        written = await client.get(base + "/write")
        assert written.text == "written;returned;"


async def test_a_client_leaving_a_streaming_response_closes_the_iterable(
        probe: tuple[str, Program, Path]) -> None:
    base = _base(probe)
    async with httpx.AsyncClient(timeout=TIMEOUT) as client:
        before = (await client.get(base + "/closed")).json()["forever"]
        for _ in range(2):
            async with client.stream("GET", base + "/forever") as response:
                async for _chunk in response.aiter_raw():
                    break
        with anyio.fail_after(TIMEOUT):
            while (await client.get(base + "/closed")).json()["forever"] < before + 2:
                await anyio.sleep(0.05)


@pytest.mark.parametrize("path, reason", [
    ("/raise", "raised before start_response"),
    ("/twice", "start_response() was called a second time without exc_info"),
    ("/noniter", "returned 42, which is not iterable"),
    ("/text", "a body chunk of type str"),
    ("/nostart", "returned without calling start_response()"),
])
async def test_a_bad_app_over_a_socket(probe: tuple[str, Program, Path], path: str,
                                       reason: str) -> None:
    model, program, root = probe
    base = _base(probe)
    line = f"unhandled exception while serving GET {base.removeprefix(program.urls[0])}{path}"
    async with httpx.AsyncClient(timeout=TIMEOUT) as client:
        before = app_log(model, program, root).count(line)
        assert (await client.get(base + path)).status_code == 500
        assert (await client.get(base + "/environ")).status_code == 200  # still serving
    with anyio.fail_after(TIMEOUT):
        while app_log(model, program, root).count(line) == before:
            await anyio.sleep(0.05)
    await anyio.sleep(0.2)
    log = app_log(model, program, root)
    assert log.count(line) == before + 1 and reason in log


async def test_over_the_body_limit_over_a_socket(probe: tuple[str, Program, Path]) -> None:
    base = _base(probe)
    async with httpx.AsyncClient(timeout=TIMEOUT) as client:
        declared = await client.post(base + "/echo", content=b"z" * 1_000_001)
        assert declared.status_code == 413

        async def chunked() -> AsyncIterator[bytes]:
            for _ in range(30):
                yield b"z" * 50_000

        counted = await client.post(base + "/echo", content=chunked())
        assert counted.status_code == 413
        assert (await client.get(base + "/environ")).status_code == 200


async def test_wsgi_errors_reaches_the_log(probe: tuple[str, Program, Path]) -> None:
    model, program, root = probe
    async with httpx.AsyncClient(timeout=TIMEOUT) as client:
        assert (await client.get(_base(probe) + "/errors")).status_code == 200
    with anyio.fail_after(TIMEOUT):
        while "a line for wsgi.errors" not in app_log(model, program, root):
            await anyio.sleep(0.05)


async def test_the_threads_serve_bursts_and_end_when_idle(monkeypatch: pytest.MonkeyPatch
                                                          ) -> None:
    """No call is lost as threads start, wait, wake and end (hostkit/wsgi_threads.py)."""
    from hostkit import wsgi_threads

    monkeypatch.setattr(wsgi_threads, "IDLE_SECONDS", 0.2)
    pool = wsgi_threads.WorkerThreads(3)
    results: list[int] = []

    async def burst(size: int) -> None:
        async def one(index: int) -> None:
            results.append(await pool.run(lambda: (time.sleep(0.001), index)[1]))

        async with anyio.create_task_group() as group:
            for index in range(size):
                group.start_soon(one, index)

    with anyio.fail_after(TIMEOUT):
        await burst(200)
        assert sorted(results) == list(range(200)) and pool.threads <= 3
        while pool.threads:  # every thread ends once idle
            await anyio.sleep(0.05)
        results.clear()
        await burst(50)  # and new ones start for the next burst
    assert sorted(results) == list(range(50))
    with pytest.raises(ZeroDivisionError):
        await pool.run(lambda: 1 // 0)


async def test_a_cancelled_call_is_dropped_when_queued_and_awaited_when_running() -> None:
    from hostkit.wsgi_threads import WorkerThreads

    pool = WorkerThreads(1)
    ran: list[str] = []
    release = threading.Event()
    cancelled_while_running: list[bool] = []

    def slow() -> None:
        release.wait(TIMEOUT)
        ran.append("slow")

    async with anyio.create_task_group() as group:
        async def first() -> None:
            with anyio.move_on_after(0.2):
                await pool.run(slow, on_cancel=lambda: cancelled_while_running.append(True))
            ran.append("first returned")

        group.start_soon(first)
        await anyio.sleep(0.05)
        with anyio.move_on_after(0.05):  # queued behind `slow`: dropped
            await pool.run(lambda: ran.append("queued"))
        await anyio.sleep(0.3)
        assert ran == [] and cancelled_while_running == [True]  # first still waits for slow
        release.set()
    assert ran == ["slow", "first returned"]  # the queued call never ran


async def test_calls_finishing_together_in_many_threads_all_return() -> None:
    """Calls that finish while the loop is busy share its wake-ups (wsgi_threads._Inbox):
    none is lost, each returns its own result."""
    from hostkit.wsgi_threads import WorkerThreads

    pool = WorkerThreads(8)
    start = threading.Barrier(8, timeout=TIMEOUT)
    results: list[int] = []

    def together(index: int) -> int:
        if index < 8:
            start.wait()  # the first eight finish at the same moment
        return index

    async def one(index: int) -> None:
        results.append(await pool.run(lambda: together(index)))

    with anyio.fail_after(TIMEOUT):
        async with anyio.create_task_group() as group:
            for index in range(100):
                group.start_soon(one, index)
    assert sorted(results) == list(range(100))


async def test_wsgi_input_kept_past_the_request_cannot_read_and_no_cycle_is_left() -> None:
    """Once the response is sent, ``wsgi.input`` no longer reaches the event loop (an app
    that keeps it gets RuntimeError), and the request's objects are freed by their reference
    counts alone, without the garbage collector."""
    import gc
    import weakref

    kept: list[Any] = []
    inputs: list[weakref.ref[Any]] = []

    def keeping_app(environ: dict[str, Any], start_response: Any) -> list[bytes]:
        if environ["REQUEST_METHOD"] == "POST":
            kept.append(environ["wsgi.input"])
        inputs.append(weakref.ref(environ["wsgi.input"]))
        start_response("200 OK", [("Content-Type", "text/plain")])
        return [b"ok"]

    app = WsgiApp(keeping_app, threads=2)
    scope = http_scope("/", method="POST", headers=[(b"content-length", b"200000")])
    exchange = await call(app, scope, Exchange([b"x" * 100000, b"x" * 100000]))
    assert exchange.status == 200
    with pytest.raises(RuntimeError, match="outside its request"):
        await anyio.to_thread.run_sync(kept[0].read)

    inputs.clear()
    gc.disable()
    try:
        for _ in range(20):
            assert (await call(app, http_scope("/"), Exchange())).status == 200
        alive = [ref for ref in inputs if ref() is not None]
    finally:
        gc.enable()
    assert len(inputs) == 20 and alive == []
