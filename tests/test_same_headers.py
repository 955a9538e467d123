"""The same request gives the app the same headers in both hosting models (issue 19, item 4).

The module removes and sets only the headers docs/out-of-process.md lists ("What the module
does with a request"); every other header, ``Proxy-Authorization`` included, reaches the app
as it does InProcess, and the app's ``Proxy-Authenticate`` reaches the client. Both backends,
real sockets.
"""

from __future__ import annotations

import json
from collections.abc import Iterator

import anyio
import h11
import pytest

from hostkit.testing import Program, connect
from tests.programs.interop_app import CHALLENGE
from tests.support.models import MODELS, serve_in
from tests.support.paths import PROGRAMS

pytestmark = [pytest.mark.anyio, pytest.mark.integration]

TIMEOUT = 10

#: end-to-end headers, as a browser behind a forward proxy might send them.
REQUEST_HEADERS = [
    (b"Host", b"interop"), (b"User-Agent", b"same-headers/1"), (b"Accept", b"*/*"),
    (b"Accept-Encoding", b"gzip"), (b"Accept-Language", b"en"), (b"Cookie", b"a=1"),
    (b"Authorization", b"Bearer app-token"), (b"Proxy-Authorization", b"Basic cHJveHk6cHc="),
    (b"Cache-Control", b"no-cache"), (b"If-None-Match", b'"v1"'), (b"Origin", b"http://a"),
    (b"Referer", b"http://a/"), (b"X-Custom", b"1"), (b"X-Custom", b"2"),
]
#: what the module adds for the child's integration layer, which leaves them to the app
#: (it reads the client's address and scheme from them).
SET_BY_THE_MODULE = ["x-forwarded-for", "x-forwarded-proto"]


@pytest.fixture(scope="module")
def servers(anyio_backend: str, tmp_path_factory: pytest.TempPathFactory
            ) -> Iterator[dict[str, Program]]:
    """The interop app in both hosting models at once, on the test's backend."""
    started: dict[str, Program] = {}
    try:
        for model in MODELS:
            root = tmp_path_factory.mktemp(f"headers-{model}")
            started[model] = serve_in(model, PROGRAMS / "interop_app.py", anyio_backend, root)
        yield started
    finally:
        for program in started.values():
            program.stop()


async def _exchange(url: str) -> tuple[h11.Response, list[str]]:
    """Send the request to ``url``: the response head and the header names the app saw."""
    parser = h11.Connection(h11.CLIENT)
    request = parser.send(h11.Request(method="GET", target="/headers", headers=REQUEST_HEADERS))
    request += parser.send(h11.EndOfMessage())  # type: ignore[operator]
    response, body = None, b""
    with anyio.fail_after(TIMEOUT):
        async with await connect(url) as stream:
            await stream.send(request)  # type: ignore[arg-type]
            while True:
                event = parser.next_event()
                if event is h11.NEED_DATA:
                    parser.receive_data(await stream.receive())
                elif isinstance(event, h11.Response):
                    response = event
                elif isinstance(event, h11.Data):
                    body += event.data
                elif isinstance(event, h11.EndOfMessage):
                    break
    assert response is not None and response.status_code == 200
    return response, json.loads(body)


async def test_the_app_sees_the_same_headers_in_both_models(
        servers: dict[str, Program]) -> None:
    seen = {model: (await _exchange(program.urls[0]))[1] for model, program in servers.items()}
    assert seen["InProcess"] == [name.decode().lower() for name, _ in REQUEST_HEADERS]
    out_of_process = seen["OutOfProcess"]
    assert [name for name in out_of_process if name not in SET_BY_THE_MODULE] \
        == seen["InProcess"]
    assert sorted(set(out_of_process) - set(seen["InProcess"])) == SET_BY_THE_MODULE
    assert "proxy-authorization" in out_of_process


async def test_the_apps_proxy_authenticate_reaches_the_client_in_both_models(
        servers: dict[str, Program]) -> None:
    for model, program in servers.items():
        response, _ = await _exchange(program.urls[0])
        challenges = [value for name, value in response.headers if name == b"proxy-authenticate"]
        assert challenges == [CHALLENGE.encode()], model
