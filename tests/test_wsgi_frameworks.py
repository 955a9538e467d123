"""Real Flask and Django apps served through WSGI, in both hosting models (OutOfProcess through
a real front) and on both async backends: a form post, a multipart upload, a streaming
response, an exception in a view (500, logged once, by the framework), ``REMOTE_USER`` and
``AUTH_TYPE`` from ``[authentication] schemes = ["basic"]``, the path base, and a body over
the limit (413). The programs: tests/programs/flask_app.py and tests/programs/django_wsgi.py.
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Iterator
from pathlib import Path

import anyio
import httpx
import pytest

from hostkit.authentication.passwords import hash_password
from hostkit.authentication.users_file import set_user
from hostkit.testing import Program, python
from tests.support.models import MODELS, serve_in
from tests.support.paths import PROGRAMS, SAMPLES
from tests.test_wsgi import app_log

pytestmark = [pytest.mark.anyio, pytest.mark.integration]

TIMEOUT = 15
USER, PASSWORD = "alice", "wonderland"
LIMIT = 1_000_000
#: program, and the line its framework logs once for an exception in /boom (Django names
#: the path with the path base, SCRIPT_NAME; Flask the path below it).
FRAMEWORKS = {"flask": ("flask_app.py", "Exception on /boom [GET]"),
              "django": ("django_wsgi.py", "Internal Server Error: {base}/boom")}


class Served:
    """One framework app in one model: the program, its folder, its base URL."""

    def __init__(self, framework: str, model: str, program: Program, root: Path):
        self.framework = framework
        self.model = model
        self.program = program
        self.root = root
        self.base = program.urls[0] + ("/app" if model == "OutOfProcess" else "")

    @property
    def log(self) -> str:
        return app_log(self.model, self.program, self.root)


@pytest.fixture(scope="module", params=[(framework, model) for framework in FRAMEWORKS
                                        for model in MODELS],
                ids=lambda param: "-".join(param))
def served(request: pytest.FixtureRequest, anyio_backend: str,
           tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    framework, model = request.param
    root = tmp_path_factory.mktemp(f"{framework}-{model}")
    set_user(root / "users.txt", USER, hash_password(PASSWORD, 1000))
    module = {"path_base": "/app"} if model == "OutOfProcess" else {}
    program_file, _ = FRAMEWORKS[framework]
    with serve_in(model, PROGRAMS / program_file, anyio_backend, root,
                  server={"max_request_body_size": LIMIT},
                  authentication={"schemes": ["basic"]}, module=module) as program:
        yield Served(framework, model, program, root)


async def test_form_post(served: Served) -> None:
    async with httpx.AsyncClient(timeout=TIMEOUT) as client:
        response = await client.post(served.base + "/form",
                                     data={"name": "Zoë", "count": "3"})
    assert response.status_code == 200, served.log
    assert response.json() == {"name": "Zoë", "count": "3"}


async def test_multipart_upload(served: Served) -> None:
    data = bytes(range(256)) * 1200  # 307 200 bytes: read in the app's thread
    async with httpx.AsyncClient(timeout=TIMEOUT) as client:
        response = await client.post(served.base + "/upload",
                                     files={"report": ("report.bin", data)})
    assert response.status_code == 200, served.log
    assert response.json() == {"report": {"filename": "report.bin", "size": len(data),
                                          "sha256": hashlib.sha256(data).hexdigest()}}


async def test_streaming_response(served: Served) -> None:
    arrivals = []
    async with httpx.AsyncClient(timeout=TIMEOUT) as client:
        async with client.stream("GET", served.base + "/stream") as response:
            assert response.status_code == 200
            async for chunk in response.aiter_raw():
                arrivals.append((time.monotonic(), chunk))
    body = b"".join(chunk for _, chunk in arrivals).decode()
    assert body == "".join(f"chunk {index} of /stream;" for index in range(5))
    assert len(arrivals) >= 3  # chunk by chunk (5 chunks 50 ms apart), not one body
    assert arrivals[-1][0] - arrivals[0][0] > 0.1


async def test_an_exception_in_a_view_is_a_500_logged_once(served: Served) -> None:
    line = FRAMEWORKS[served.framework][1].format(
        base="/app" if served.model == "OutOfProcess" else "")
    before = served.log.count(line)
    async with httpx.AsyncClient(timeout=TIMEOUT) as client:
        response = await client.get(served.base + "/boom")
        assert response.status_code == 500
        assert (await client.post(served.base + "/form", data={"a": "1"})).status_code == 200
    with anyio.fail_after(TIMEOUT):
        while served.log.count(line) == before:
            await anyio.sleep(0.05)
    await anyio.sleep(0.3)
    log = served.log
    assert log.count(line) == before + 1, log
    assert "unhandled exception while serving GET" not in log  # the framework's own 500


async def test_remote_user_from_basic_authentication(served: Served) -> None:
    async with httpx.AsyncClient(timeout=TIMEOUT) as client:
        anonymous = (await client.get(served.base + "/whoami")).json()
        signed_in = (await client.get(served.base + "/whoami",
                                      auth=(USER, PASSWORD))).json()
    assert anonymous["remote_user"] is None and anonymous["auth_type"] is None
    assert (signed_in["remote_user"], signed_in["auth_type"]) == (USER, "Basic")
    assert signed_in["remote_addr"] == "127.0.0.1" and signed_in["scheme"] == "http"
    assert signed_in["protocol"] == "HTTP/1.1"
    base_path = "/app" if served.model == "OutOfProcess" else ""
    assert signed_in["script_root"] == base_path and signed_in["path"] == "/whoami"
    assert signed_in["url"] == served.base + "/whoami"


async def test_a_body_over_the_limit_gets_413(served: Served) -> None:
    async with httpx.AsyncClient(timeout=TIMEOUT) as client:
        declared = await client.post(served.base + "/upload",
                                     files={"big": ("big.bin", b"b" * (LIMIT + 1))})
        assert declared.status_code == 413
        assert (await client.post(served.base + "/form", data={"a": "1"})).status_code == 200


# -- samples/flask -----------------------------------------------------------------------------

@pytest.mark.parametrize("command", [
    ["app.py"], ["app.py", "--hosting_model=OutOfProcess"], ["-m", "hostkit", "run", "app:app"]],
    ids=["InProcess", "OutOfProcess", "hostkit-run"])
async def test_the_flask_sample_serves_its_page(anyio_backend: str, command: list[str]) -> None:
    with Program(python(*command, "--urls=http://127.0.0.1:0",
                        f"--async_backend={anyio_backend}"), cwd=SAMPLES / "flask") as program:
        (url,) = program.wait_started()
        async with httpx.AsyncClient(timeout=TIMEOUT) as client:
            page = await client.get(url + "/")
            echoed = await client.post(url + "/echo", data={"a": "1"})
            facts = (await client.get(url + "/whoami")).json()
    assert page.status_code == 200 and page.text == "Hello from Flask on hostkit\n"
    assert echoed.json() == {"a": "1"}
    assert facts["remote_addr"] == "127.0.0.1" and facts["wsgi_multithread"] is True
