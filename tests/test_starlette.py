"""An unchanged Starlette app hosted InProcess: routes, lifespan state, middleware, WebSocket."""

from __future__ import annotations

from collections.abc import Iterator

import anyio
import httpx
import pytest

from hostkit.testing import Program, python
from tests.support.paths import SAMPLES
from tests.support.websocket import WebSocket

pytestmark = [pytest.mark.anyio, pytest.mark.integration]

TIMEOUT = 10


@pytest.fixture(scope="module")
def starlette_app(anyio_backend: str) -> Iterator[tuple[Program, str]]:
    with Program(python("app.py", "--urls=http://127.0.0.1:0",
                        f"--async_backend={anyio_backend}"),
                 cwd=SAMPLES / "starlette_app") as program:
        (url,) = program.wait_started()
        yield program, url


async def test_routes_and_lifespan_state(starlette_app: tuple[Program, str]) -> None:
    _, url = starlette_app
    async with httpx.AsyncClient(timeout=TIMEOUT) as client:
        response = await client.get(url + "/")
    assert response.status_code == 200
    assert response.text == "Hello from Starlette (InProcess)\n"  # from the lifespan state
    assert response.headers["x-served-by"] == "hostkit"  # Starlette middleware via the builder


async def test_scope_carries_hostkit_facts(starlette_app: tuple[Program, str]) -> None:
    program, url = starlette_app
    async with httpx.AsyncClient(timeout=TIMEOUT) as client:
        facts = (await client.get(url + "/whoami")).json()
    assert facts["hosting_model"] == "InProcess"
    assert facts["process_id"] == program.process.pid
    assert facts["pid_matches"] is True
    assert facts["client"][0] == "127.0.0.1"
    assert facts["scheme"] == "http"
    assert facts["authenticated"] is False


async def test_websocket_echo(starlette_app: tuple[Program, str]) -> None:
    _, url = starlette_app
    host, port = url.removeprefix("http://").split(":")
    with anyio.fail_after(TIMEOUT):
        async with await WebSocket.connect(host, int(port), "/ws") as ws:
            for text in ("one", "two", "three"):
                await ws.send(text)
                assert await ws.receive() == f"echo: {text}"
