"""InProcess hosting, end to end: real programs in subprocesses, HTTP over real sockets.

Each module-scoped server runs on the same async backend as the test's client (asyncio, trio).
"""

from __future__ import annotations

import signal
import socket
import ssl
from collections.abc import Iterator
from pathlib import Path

import anyio
import httpx
import pytest
import trustme

from hostkit.testing import Program, connect, python, raw_exchange, write_settings
from tests.support.paths import PROGRAMS, SAMPLES
from tests.support.probe import probe_on_unix_socket

pytestmark = [pytest.mark.anyio, pytest.mark.integration]

TIMEOUT = 10


@pytest.fixture(scope="module")
def probe(anyio_backend: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Program]:
    """The probe program, InProcess on a free port, with a small body limit and sync I/O."""
    root = tmp_path_factory.mktemp("probe")
    write_settings(root, {"hosting_model": "inprocess", "shutdown_timeout": 5,
                          "server": {"max_request_body_size": 1000,
                                     "allow_synchronous_io": True}})
    with Program(python(str(PROGRAMS / "probe.py"), "--urls=http://127.0.0.1:0",
                        f"--async_backend={anyio_backend}"), cwd=root) as program:
        program.wait_started()
        yield program


def base_url(program: Program) -> str:
    return program.urls[0]


async def test_hello_sample_answers_in_process(anyio_backend: str) -> None:
    with Program(python("app.py", "--urls=http://127.0.0.1:0",
                        f"--async_backend={anyio_backend}"), cwd=SAMPLES / "hello") as program:
        (url,) = program.wait_started()
        async with httpx.AsyncClient(timeout=TIMEOUT) as client:
            response = await client.get(url + "/")
        assert response.status_code == 200
        assert response.text == "Hello from InProcess\n"
        assert f"async backend: {anyio_backend}" in program.output


async def test_features_describe_this_process(probe: Program, anyio_backend: str) -> None:
    async with httpx.AsyncClient(timeout=TIMEOUT) as client:
        response = await client.get(base_url(probe) + "/features?x=1", headers={"X-Test": "a"})
    features = response.json()
    assert features["hosting_model"] == "InProcess"
    assert features["process_id"] == probe.process.pid
    assert features["server"] == "hypercorn"
    assert features["query_string"] == "x=1"
    assert features["remote_ip"] == "127.0.0.1"
    assert features["authenticated"] is False
    assert ["x-test", "a"] in features["headers"]


async def test_request_body_streams_back(probe: Program) -> None:
    async def chunks():  # type: ignore[no-untyped-def]
        for _ in range(3):
            yield b"x" * 300

    async with httpx.AsyncClient(timeout=TIMEOUT) as client:
        response = await client.post(base_url(probe) + "/echo", content=chunks())
    assert response.status_code == 200
    assert response.content == b"x" * 900


async def test_declared_body_over_limit_gets_413(probe: Program) -> None:
    async with httpx.AsyncClient(timeout=TIMEOUT) as client:
        response = await client.post(base_url(probe) + "/length", content=b"x" * 1001)
    assert response.status_code == 413


async def test_chunked_body_over_limit_gets_413_while_reading(probe: Program) -> None:
    async def chunks():  # type: ignore[no-untyped-def]
        for _ in range(5):
            yield b"y" * 400  # no Content-Length: counted as it is read

    async with httpx.AsyncClient(timeout=TIMEOUT) as client:
        response = await client.post(base_url(probe) + "/length", content=chunks())
        assert response.status_code == 413
        under = await client.post(base_url(probe) + "/length", content=b"z" * 1000)
    assert under.text == "1000"


async def test_handler_exception_is_500_and_server_keeps_serving(probe: Program) -> None:
    async with httpx.AsyncClient(timeout=TIMEOUT) as client:
        failed = await client.get(base_url(probe) + "/boom")
        after = await client.get(base_url(probe) + "/features")
    assert failed.status_code == 500
    assert "boom on purpose" not in failed.text  # no traceback leaks to the client
    assert after.status_code == 200
    probe.wait_for_line("RuntimeError: boom on purpose")


async def test_synchronous_io_when_allowed(probe: Program) -> None:
    async with httpx.AsyncClient(timeout=TIMEOUT) as client:
        response = await client.get(base_url(probe) + "/sync")
    assert response.text == "sync write ok"


async def test_client_disconnect_sets_request_aborted(probe: Program) -> None:
    before = probe.output.count("probe: request aborted=True")
    with anyio.fail_after(TIMEOUT):
        stream = await connect(base_url(probe))
        await stream.send(b"GET /wait-abort HTTP/1.1\r\nHost: test\r\n\r\n")
        await anyio.to_thread.run_sync(probe.wait_for_line, "probe: waiting for abort")
        await stream.aclose()
        await anyio.to_thread.run_sync(
            probe.wait_for_count, "probe: request aborted=True", before + 1, TIMEOUT)


@pytest.mark.parametrize("raw", [
    b"GET / HTTP/1.1\r\nHost: a\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\nx",
    b"NOT A REQUEST LINE\r\n\r\n",
    b"GET / HTTP/1.1\r\nHost: a\r\nBad Header\r\n\r\n",
    b"GET / HTTP/1.1\r\nHost: a\r\nContent-Length: x\r\n\r\n",
])
async def test_malformed_http_gets_4xx_and_never_crashes(probe: Program, raw: bytes) -> None:
    answer = await raw_exchange(base_url(probe), raw)
    assert answer.startswith(b"HTTP/1.1 4"), answer
    async with httpx.AsyncClient(timeout=TIMEOUT) as client:
        assert (await client.get(base_url(probe) + "/features")).status_code == 200


async def test_sigterm_drains_in_flight_request(anyio_backend: str, tmp_path: Path) -> None:
    with Program(python(str(PROGRAMS / "probe.py"), "--urls=http://127.0.0.1:0",
                        f"--async_backend={anyio_backend}", "--shutdown_timeout=10"),
                 cwd=tmp_path) as program:
        (url,) = program.wait_started()
        async with httpx.AsyncClient(timeout=TIMEOUT) as client, anyio.create_task_group() as tg:
            results: list[httpx.Response] = []

            async def slow() -> None:
                results.append(await client.get(url + "/slow?1.5"))

            tg.start_soon(slow)
            await anyio.to_thread.run_sync(program.wait_for_line, "probe: slow request started")
            program.signal(signal.SIGTERM)
        assert results[0].status_code == 200
        assert results[0].text == "slow done"
        assert await anyio.to_thread.run_sync(program.wait_exit) == 0
        assert "Application stopped." in program.output


async def test_sigint_stops_gracefully(anyio_backend: str, tmp_path: Path) -> None:
    with Program(python(str(PROGRAMS / "probe.py"), "--urls=http://127.0.0.1:0",
                        f"--async_backend={anyio_backend}"), cwd=tmp_path) as program:
        program.wait_started()
        program.signal(signal.SIGINT)
        assert await anyio.to_thread.run_sync(program.wait_exit) == 0
        assert "SIGINT received" in program.output


async def test_address_in_use_is_one_clear_line(anyio_backend: str, tmp_path: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        program = Program(python(str(PROGRAMS / "probe.py"), f"--urls=http://127.0.0.1:{port}",
                                 f"--async_backend={anyio_backend}"), cwd=tmp_path)
        code = await anyio.to_thread.run_sync(program.wait_exit)
    assert code == 1
    assert f"cannot listen on http://127.0.0.1:{port}: address already in use" in program.output
    assert "Traceback" not in program.output


@pytest.mark.parametrize("environment, shows_traceback", [("Development", True),
                                                          ("Production", False)])
async def test_lifespan_startup_failure_serves_500_30(
        anyio_backend: str, tmp_path: Path, environment: str, shows_traceback: bool) -> None:
    with Program(python(str(PROGRAMS / "failing_start.py"), "--urls=http://127.0.0.1:0",
                        f"--async_backend={anyio_backend}", f"--environment={environment}"),
                 cwd=tmp_path) as program:
        (url,) = program.wait_started()
        async with httpx.AsyncClient(timeout=TIMEOUT) as client:
            first = await client.get(url + "/")
            second = await client.get(url + "/other")
        for response in (first, second):
            assert response.status_code == 500
            assert "500.30 In-Process Start Failure" in response.text
            assert ("database unreachable" in response.text) is shows_traceback
        assert "database unreachable (on purpose)" in program.output  # logged either way


async def test_startup_failure_bare_status_when_pages_disabled(
        anyio_backend: str, tmp_path: Path) -> None:
    with Program(python(str(PROGRAMS / "failing_start.py"), "--urls=http://127.0.0.1:0",
                        f"--async_backend={anyio_backend}",
                        "--module:disable_startup_error_page=true"), cwd=tmp_path) as program:
        (url,) = program.wait_started()
        async with httpx.AsyncClient(timeout=TIMEOUT) as client:
            response = await client.get(url + "/")
        assert response.status_code == 500
        assert response.content == b""


async def test_hostkit_run_serves_500_30_when_the_app_cannot_import(
        anyio_backend: str) -> None:
    with Program(python("-m", "hostkit", "run", "broken_import:app",
                        "--urls=http://127.0.0.1:0", f"--async_backend={anyio_backend}"),
                 cwd=PROGRAMS) as program:
        (url,) = program.wait_started()
        async with httpx.AsyncClient(timeout=TIMEOUT) as client:
            response = await client.get(url + "/")
        assert response.status_code == 500
        assert "500.30 In-Process Start Failure" in response.text
        assert "a dependency of the app is missing" in program.output


async def test_unix_socket(anyio_backend: str, tmp_path: Path) -> None:
    features, _ = await probe_on_unix_socket(tmp_path / "hostkit.sock", anyio_backend,
                                             tmp_path, TIMEOUT)
    assert features["hosting_model"] == "InProcess"


async def test_https_and_http_side_by_side(anyio_backend: str, tmp_path: Path) -> None:
    authority = trustme.CA()
    certificate = authority.issue_cert("127.0.0.1", "localhost")
    certificate.private_key_and_cert_chain_pem.write_to_path(str(tmp_path / "server.pem"))
    write_settings(tmp_path, {"urls": ["https://127.0.0.1:0", "http://127.0.0.1:0"],
                              "tls": {"certificate": tmp_path / "server.pem",
                                      "private_key": tmp_path / "server.pem"}})
    with Program(python(str(PROGRAMS / "probe.py"), f"--async_backend={anyio_backend}"),
                 cwd=tmp_path) as program:
        secure, plain = program.wait_started()
        assert secure.startswith("https://") and plain.startswith("http://")
        context = ssl.create_default_context()
        authority.configure_trust(context)
        async with httpx.AsyncClient(verify=context, timeout=TIMEOUT) as client:
            over_tls = await client.get(secure + "/features")
            over_plain = await client.get(plain + "/features")
        assert over_tls.json()["scheme"] == "https"
        assert over_plain.json()["scheme"] == "http"


async def test_program_setup_failure_after_build_serves_500_30(
        anyio_backend: str, tmp_path: Path) -> None:
    with Program(python(str(PROGRAMS / "setup_failure.py"), "--urls=http://127.0.0.1:0",
                        f"--async_backend={anyio_backend}", "--environment=Development"),
                 cwd=tmp_path) as program:
        (url,) = program.wait_started()
        async with httpx.AsyncClient(timeout=TIMEOUT) as client:
            response = await client.get(url + "/")
        assert response.status_code == 500
        assert "500.30 In-Process Start Failure" in response.text
        assert "settings.json is missing" in response.text
