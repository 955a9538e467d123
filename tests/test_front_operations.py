"""The OutOfProcess front's gateway duties (SPEC §9), end to end: health paths, request ids,
trusted proxies and the client's port, the limit, the access log, and what the child leaves
to its front.

Real fronts and children in subprocesses, real sockets; every test runs with the front and
the client on asyncio and on trio. The app, ``tests/programs/operations_app.py``, answers
with what it was told about the client and the request.
"""

from __future__ import annotations

import json
import os
import socket
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import anyio
import httpx
import pytest

from hostkit.testing import Program, python, raw_exchange, write_settings
from tests.support.fronts import child_log, child_program, front_settings
from tests.support.paths import PROGRAMS, SAMPLES
from tests.support.websocket import WebSocket

pytestmark = [pytest.mark.anyio, pytest.mark.integration]

TIMEOUT = 15
APP = PROGRAMS / "operations_app.py"
HEALTH = {"liveness_path": "/healthz", "readiness_path": "/ready"}


def start(root: Path, backend: str, *, module: dict[str, object] | None = None,
          server: dict[str, object] | None = None, program: Path = APP,
          **top: object) -> Program:
    """The app as a front in ``root``, running ``program`` as its child, with ``module``,
    ``server`` and ``top`` settings (tables included) on top of
    :func:`tests.support.fronts.front_settings`."""
    write_settings(root, front_settings(module={**child_program(program), **(module or {})},
                                        server=server, **top))
    front = Program(python(str(APP), "--urls=http://127.0.0.1:0",
                           f"--async_backend={backend}"), cwd=root)
    front.wait_started()
    return front


def children(front: Program) -> list[int]:
    return [pid for pid, _ in front.started_children()]


async def wait_for_line(front: Program, text: str) -> str:
    return await anyio.to_thread.run_sync(front.wait_for_line, text)


@pytest.fixture(scope="module")
def direct_front(anyio_backend: str, tmp_path_factory: pytest.TempPathFactory
                 ) -> Iterator[tuple[Program, str, Path]]:
    """A front nobody is a known proxy of, with health paths; its children log JSON."""
    root = tmp_path_factory.mktemp("direct")
    with start(root, anyio_backend, health=HEALTH,
               module={"environment_variables": {"HOSTKIT_LOGGING__FORMAT": "json"}}) as front:
        yield front, front.urls[0], root


@pytest.fixture(scope="module")
def proxied_front(anyio_backend: str, tmp_path_factory: pytest.TempPathFactory
                  ) -> Iterator[tuple[Program, str]]:
    """A front whose clients (all on 127.0.0.0/8) are known proxies."""
    root = tmp_path_factory.mktemp("proxied")
    with start(root, anyio_backend,
               forwarded_headers={"known_networks": ["127.0.0.0/8"]}) as front:
        yield front, front.urls[0]


# -- health ----------------------------------------------------------------------------------


async def test_health_paths_are_answered_by_the_front_without_a_child_even_offline(
        anyio_backend: str, tmp_path: Path) -> None:
    with start(tmp_path, anyio_backend, health=HEALTH) as front:
        (url,) = front.urls
        async with httpx.AsyncClient(timeout=TIMEOUT) as client:
            live = await client.get(url + "/healthz")
            # Before the first child: ready (as ANCM is), the child starts on the first
            # request.
            ready = await client.get(url + "/ready")
            (tmp_path / "app_offline.htm").write_text("maintenance")
            await wait_for_line(front, "app_offline.htm exists: the app is offline")
            offline = await client.get(url + "/ready")
            live_offline = await client.get(url + "/healthz")
            assert (await client.get(url + "/whoami")).status_code == 503
            (tmp_path / "app_offline.htm").unlink()
            await wait_for_line(front, "the app is online again")
            ready_again = await client.get(url + "/ready")
        assert children(front) == []  # no probe started one
    assert (live.status_code, live.text) == (200, "ok\n")
    assert live.headers["content-type"].startswith("text/plain")
    assert (ready.status_code, ready.text) == (200, "ready\n")
    assert live.headers["x-request-id"] != ready.headers["x-request-id"]
    assert (offline.status_code, offline.text) == (503, "not ready: offline\n")
    assert offline.headers["retry-after"] == "1" and "x-request-id" in offline.headers
    assert live_offline.status_code == 200
    assert ready_again.status_code == 200
    line = next(line for line in front.lines if line.endswith(live.headers["x-request-id"]))
    assert '"GET /healthz HTTP/1.1" 200 3 ' in line


async def test_readiness_is_503_after_a_failed_start_and_past_the_rapid_fail_budget(
        anyio_backend: str, tmp_path: Path) -> None:
    with start(tmp_path, anyio_backend, health=HEALTH, program=PROGRAMS / "crash_on_start.py",
               module={"rapid_fails_per_minute": 2}) as front:
        (url,) = front.urls
        async with httpx.AsyncClient(timeout=TIMEOUT) as client:
            assert (await client.get(url + "/")).status_code == 502
            ready = await client.get(url + "/ready")
            assert (ready.status_code, ready.text) == (503, "not ready: start-failed\n")
            for _ in range(2):
                assert (await client.get(url + "/")).status_code == 502
            spawned = len(children(front))
            ready = await client.get(url + "/ready")
            assert (ready.status_code, ready.text) == (503, "not ready: rapid-failed\n")
            # Liveness stays 200, and no probe starts a child.
            assert (await client.get(url + "/healthz")).status_code == 200
        assert len(children(front)) == spawned


# -- request ids -----------------------------------------------------------------------------


async def test_the_request_id_is_the_apps_the_childs_logs_and_the_access_logs(
        direct_front: tuple[Program, str, Path]) -> None:
    front, url, root = direct_front
    async with httpx.AsyncClient(timeout=TIMEOUT) as client:
        response = await client.get(url + "/whoami", headers={"referer": "http://a/",
                                                               "user-agent": "ops/1"})
    request_id = response.headers["x-request-id"]
    seen = response.json()
    assert seen["trace_identifier"] == request_id
    assert response.headers.get_list("x-request-id") == [request_id]  # not the app's own
    # The module's own headers are not the app's.
    assert not {"x-request-id", "hostkit-client-port"} & {name for name, _ in seen["headers"]}
    line = await wait_for_line(front, f"ms {request_id}")
    assert line.startswith("127.0.0.1 - - [")
    assert '"GET /whoami HTTP/1.1" 200 ' in line and '"http://a/" "ops/1"' in line
    records = [json.loads(text) for text in child_log(root).splitlines()
               if '"operations: served /whoami"' in text]
    assert [record.get("request_id") for record in records][-1] == request_id
    # The child writes no access log line of its own: its front did.
    assert "GET /whoami" not in child_log(root)


async def test_a_clients_request_id_is_ignored_unless_it_is_a_known_proxy(
        direct_front: tuple[Program, str, Path],
        proxied_front: tuple[Program, str]) -> None:
    async with httpx.AsyncClient(timeout=TIMEOUT) as client:
        direct = await client.get(direct_front[1] + "/whoami",
                                  headers={"x-request-id": "chosen-by-client"})
        proxied = await client.get(proxied_front[1] + "/whoami",
                                   headers={"x-request-id": "chosen-by-proxy"})
    assert direct.headers["x-request-id"] != "chosen-by-client"
    assert direct.json()["trace_identifier"] == direct.headers["x-request-id"]
    assert proxied.headers["x-request-id"] == "chosen-by-proxy"
    assert proxied.json()["trace_identifier"] == "chosen-by-proxy"


async def test_the_fronts_own_answers_carry_a_request_id_and_are_logged(
        direct_front: tuple[Program, str, Path]) -> None:
    front, url, _ = direct_front
    # Refused by the front's own rules (a control character), then by h11 (a head that does
    # not parse: two lengths): the second is logged without a request line.
    for request, logged in [(b"GET /x HTTP/1.1\r\nHost: a\r\nX-A: a\x01b\r\n\r\n",
                             '"GET /x HTTP/1.1" 400 '),
                            (b"GET /y HTTP/1.1\r\nHost: a\r\nContent-Length: 1\r\n"
                             b"Content-Length: 2\r\n\r\n", '"- - -" 400 ')]:
        answer = await raw_exchange(url, request)
        status, *lines = answer.split(b"\r\n\r\n")[0].decode().split("\r\n")
        assert status.startswith("HTTP/1.1 400")
        fields = dict(line.split(": ", 1) for line in lines)
        line = await wait_for_line(front, f"ms {fields['x-request-id']}")
        assert logged in line


# -- forwarded headers and the client's port -------------------------------------------------


async def test_a_known_proxy_tells_the_app_who_the_client_is(
        proxied_front: tuple[Program, str]) -> None:
    front, url = proxied_front
    async with httpx.AsyncClient(timeout=TIMEOUT) as client:
        response = await client.get(url + "/whoami", headers={
            "x-forwarded-for": "203.0.113.7", "x-forwarded-proto": "https",
            "x-forwarded-host": "shop.example"})
        with_port = (await client.get(url + "/whoami", headers={
            "forwarded": 'for="198.51.100.2:4711"'})).json()
    seen = response.json()
    assert (seen["remote_ip"], seen["remote_port"]) == ("203.0.113.7", 0)  # no port given
    assert (seen["scheme"], seen["host"]) == ("https", "shop.example")
    assert (with_port["remote_ip"], with_port["remote_port"]) == ("198.51.100.2", 4711)
    line = await wait_for_line(front, f"ms {response.headers['x-request-id']}")
    assert line.startswith("203.0.113.7 - - [")


async def test_the_app_sees_the_clients_real_port_without_proxies(
        direct_front: tuple[Program, str, Path]) -> None:
    _, url, _ = direct_front
    port = int(url.rsplit(":", 1)[1].rstrip("/"))

    def ask() -> tuple[int, dict[str, object]]:
        with socket.create_connection(("127.0.0.1", port), timeout=TIMEOUT) as sock:
            # HTTP/1.0: the body ends with the connection, no chunks to read.
            sock.sendall(b"GET /whoami HTTP/1.0\r\nHost: a\r\nX-Forwarded-For: 203.0.113.7"
                         b"\r\n\r\n")
            answer = b""
            while chunk := sock.recv(65536):
                answer += chunk
            return sock.getsockname()[1], json.loads(answer.split(b"\r\n\r\n", 1)[1])

    client_port, seen = await anyio.to_thread.run_sync(ask)
    # An untrusted peer's X-Forwarded-For changes nothing.
    assert (seen["remote_ip"], seen["remote_port"]) == ("127.0.0.1", client_port)


# -- the limit -------------------------------------------------------------------------------


async def test_past_the_limit_and_its_queue_the_front_answers_503_at_once(
        anyio_backend: str, tmp_path: Path) -> None:
    with start(tmp_path, anyio_backend,
               server={"max_concurrent_requests": 1, "request_queue_length": 1}) as front:
        (url,) = front.urls
        answers: list[tuple[httpx.Response, float]] = []
        async with httpx.AsyncClient(timeout=TIMEOUT) as client:
            assert (await client.get(url + "/whoami")).status_code == 200  # the child runs

            async def slow() -> None:
                started = time.monotonic()
                response = await client.get(url + "/slow?0.5")
                answers.append((response, time.monotonic() - started))

            async with anyio.create_task_group() as task_group:
                for _ in range(4):
                    task_group.start_soon(slow)
        served = sorted(took for r, took in answers if r.status_code == 200)
        refused = [(r, took) for r, took in answers if r.status_code == 503]
        assert (len(served), len(refused)) == (2, 2), [r.status_code for r, _ in answers]
        for response, took in refused:
            assert response.headers["retry-after"] == "1"
            assert "x-request-id" in response.headers
            assert took < served[0]  # at once, not once a slot is free
        # The one that waited in the queue was served after the first.
        assert served[1] >= 1.0
        assert len(children(front)) == 1


async def test_an_open_websocket_counts_against_the_limit(anyio_backend: str,
                                                          tmp_path: Path) -> None:
    app = SAMPLES / "starlette_app" / "app.py"
    write_settings(tmp_path, front_settings(
        module=child_program(app),
        server={"max_concurrent_requests": 1, "request_queue_length": 0}))
    with Program(python(str(app), "--urls=http://127.0.0.1:0",
                        f"--async_backend={anyio_backend}"), cwd=tmp_path) as front:
        (url,) = front.wait_started()
        host, port = url.removeprefix("http://").split(":")
        async with httpx.AsyncClient(timeout=TIMEOUT) as client:
            with anyio.fail_after(TIMEOUT):
                async with await WebSocket.connect(host, int(port), "/ws") as ws:
                    await ws.send("one")
                    assert await ws.receive() == "echo: one"
                    busy = await client.get(url + "/")
            await wait_for_line(front, '"GET /ws HTTP/1.1" 101 ')  # its slot is free again
            assert (await client.get(url + "/")).status_code == 200
    assert busy.status_code == 503 and busy.headers["retry-after"] == "1"


# -- the child leaves the gateway's duties to its front --------------------------------------


async def test_the_child_answers_no_health_path_and_writes_no_access_log(
        anyio_backend: str, tmp_path: Path) -> None:
    from hostkit_outofprocess.children import ChildManager, ChildSettings

    write_settings(tmp_path, {"health": HEALTH, "logging": {"access_log": True}})
    settings = ChildSettings([sys.executable, str(APP)], tmp_path, dict(os.environ), "/",
                             TIMEOUT, 3, 5, None)
    manager = ChildManager(settings, 1)
    with anyio.fail_after(TIMEOUT):
        async with anyio.create_task_group() as task_group:
            await task_group.start(manager.run)
            child = await manager.acquire()
            async with httpx.AsyncClient(timeout=TIMEOUT) as client:
                response = await client.get(
                    f"http://127.0.0.1:{child.port}/healthz",
                    headers={"hostkit-token": child.contract.token,
                             "x-forwarded-for": "127.0.0.1", "x-request-id": "from-front"})
            task_group.cancel_scope.cancel()
    seen = response.json()
    assert (seen["path"], seen["trace_identifier"]) == ("/healthz", "from-front")
    # Nothing of the gateway's in a child: the response carries only the app's own id.
    assert response.headers.get_list("x-request-id") == ["set-by-the-app"]
    assert "GET /healthz" not in child.output()
