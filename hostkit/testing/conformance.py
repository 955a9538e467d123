"""The conformance suite for server plugins, as a test class to run against a server.

Run it against an installed server with ``pytest --pyargs hostkit.testing.suite
--hostkit-server=NAME``, or subclass it in your own tests::

    from hostkit.testing.conformance import ServerConformance

    class TestMyServer(ServerConformance):
        server = "mine"

Every test starts real programs (:mod:`hostkit.testing.probe` with ``server = NAME``) and
talks to them over real sockets, each network step bounded by :attr:`ServerConformance.timeout`.
The HTTP tests run once per async backend the server declares (``hostkit_declare_servers``),
with the client on the same backend; a backend, hosting model or kind of address the server
does not declare is checked to be refused with a clear ``ServerSelectionError`` instead.
"""

from __future__ import annotations

import shutil
import signal
import ssl
import tempfile
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any, ClassVar

import anyio
import anyio.to_thread
import h11
import httpx
import pytest

from hostkit import HostingModel, ServerInfo, ServerSelectionError
from hostkit.testing.client import (
    connect,
    raw_exchange,
    receive_until,
    request_on,
    status_now,
)
from hostkit.testing.program import Program, python, write_settings
from hostkit.testing.servers import declaration, server_under_test, try_build

#: The body limit the probe runs with (``[server] max_request_body_size``).
BODY_LIMIT = 1000
_PROBE = python("-m", "hostkit.testing.probe")


class Programs:
    """The programs one test class started; all stopped when the class is done."""

    def __init__(self) -> None:
        self.started: list[Program] = []

    def start(self, root: Path, *args: str) -> Program:
        """Start the probe in ``root`` (its content root) with hostkit ``args``."""
        program = Program([*_PROBE, *args], cwd=root)
        self.started.append(program)
        return program

    def stop_all(self) -> None:
        for program in self.started:
            program.stop()


class Probe:
    """The shared probe program of one (server, backend): its URLs and readiness answers."""

    def __init__(self, program: Program, urls: list[str], ready: dict[str, int | str],
                 tls: ssl.SSLContext | None):
        self.program = program
        self.urls = urls
        #: each URL's answer to one GET made the moment "Now listening on:" was logged.
        self.ready = ready
        #: trusts the probe's certificate when it listens on https.
        self.tls = tls

    def url(self, scheme: str) -> str:
        """The first URL of ``scheme`` (``http``, ``https``, ``unix``)."""
        return next(url for url in self.urls if url.split(":", 1)[0] == scheme)


def _write_config(root: Path, server: str, **settings: object) -> None:
    """``hostkit.toml``: ``shutdown_timeout`` 5 and the top-level ``settings``, then
    ``[server]`` choosing ``server`` (``name``, the table's spelling of the top-level
    ``server`` key) with the kit's body limit, then the tables among ``settings``."""
    write_settings(root, {"shutdown_timeout": 5, "server": {
        "name": server, "max_request_body_size": BODY_LIMIT}, **settings})


def _tls_files(root: Path) -> tuple[dict[str, str], ssl.SSLContext]:
    """A certificate for 127.0.0.1 in ``root`` (the ``[tls]`` settings naming it) and a
    client context that trusts it."""
    try:
        import trustme
    except ImportError:  # pragma: no cover - the kit's extra installs it
        pytest.fail("the server declares https: install trustme (pip install "
                    "'hostkit[testing]') so the kit can make a certificate", pytrace=False)
    authority = trustme.CA()
    authority.issue_cert("127.0.0.1").private_key_and_cert_chain_pem.write_to_path(
        str(root / "server.pem"))
    context = ssl.create_default_context()
    authority.configure_trust(context)
    pem = str(root / "server.pem")
    return {"certificate": pem, "private_key": pem}, context


class ServerConformance:
    """What every hostkit server plugin must do; subclass it and set :attr:`server`."""

    #: inherited by subclasses: the async tests run under anyio's pytest plugin.
    pytestmark = [pytest.mark.anyio, pytest.mark.integration]

    #: the server under test (its ``server`` name); ``None``: ``--hostkit-server``, and
    #: without that option ``"hypercorn"``.
    server: ClassVar[str | None] = None
    #: seconds each network step (connect, request, a line to appear) may take.
    timeout: ClassVar[float] = 15

    def pytest_generate_tests(self, metafunc: pytest.Metafunc) -> None:
        """Run the async tests once per async backend the server declares."""
        if "anyio_backend" not in metafunc.fixturenames:
            return
        name = server_under_test(metafunc.config, type(self))
        backends = list(declaration(name).async_backends)
        metafunc.parametrize("anyio_backend", backends, scope="class",
                             ids=[f"{name}-{backend}" for backend in backends])

    # --- fixtures ---------------------------------------------------------------------------

    @pytest.fixture(scope="class")
    @classmethod
    def hostkit_server(cls, request: pytest.FixtureRequest) -> str:
        """The name of the server under test."""
        return server_under_test(request.config, cls)

    @pytest.fixture(scope="class")
    @classmethod
    def server_info(cls, hostkit_server: str) -> ServerInfo:
        """Its declaration: what the suite runs and what it expects to be refused."""
        return declaration(hostkit_server)

    @pytest.fixture(scope="class")
    @classmethod
    def programs(cls) -> Iterator[Programs]:
        programs = Programs()
        try:
            yield programs
        finally:
            programs.stop_all()

    @pytest.fixture(scope="class")
    @classmethod
    def short_dir(cls) -> Iterator[Path]:
        """A directory with a short path, for unix sockets (paths of at most 107 bytes)."""
        path = Path(tempfile.mkdtemp(prefix="hk-"))
        try:
            yield path
        finally:
            shutil.rmtree(path, ignore_errors=True)

    @pytest.fixture(scope="class")
    @classmethod
    def probe(cls, anyio_backend: str, hostkit_server: str, server_info: ServerInfo,
              programs: Programs, short_dir: Path,
              tmp_path_factory: pytest.TempPathFactory) -> Probe:
        """The probe InProcess with ``server = NAME`` on every kind of address the server
        declares, a body limit of :data:`BODY_LIMIT`; readiness checked as it starts."""
        if HostingModel.IN_PROCESS not in server_info.hosting_models:
            pytest.fail(f"server {hostkit_server!r} does not declare InProcess: the suite's "
                        "HTTP tests run InProcess", pytrace=False)
        root = tmp_path_factory.mktemp(f"{hostkit_server}-{anyio_backend}")
        urls: list[str] = []
        tables: dict[str, object] = {}
        tls = None
        if "http" in server_info.url_schemes:
            urls.append("http://127.0.0.1:0")
        if "https" in server_info.url_schemes:
            urls.append("https://127.0.0.1:0")
            tables["tls"], tls = _tls_files(root)
        if "unix" in server_info.url_schemes:
            urls.append(f"unix:{short_dir / f'{anyio_backend}.sock'}")
        _write_config(root, hostkit_server, hosting_model="InProcess", urls=urls, **tables)
        program = programs.start(root, f"--async_backend={anyio_backend}")
        ready: dict[str, int | str] = {}
        listening = program.wait_started(cls.timeout)
        for url in listening:
            try:
                ready[url] = status_now(url, "/features", cls.timeout,
                                        tls if url.startswith("https:") else None)
            except (OSError, ValueError) as error:
                ready[url] = f"{type(error).__name__}: {error}"
        return Probe(program, listening, ready, tls)

    def client(self, probe: Probe | None = None, unix: str | None = None) -> httpx.AsyncClient:
        """An HTTP client bounded by :attr:`timeout` (over ``unix`` when given)."""
        transport = httpx.AsyncHTTPTransport(uds=unix) if unix else None
        verify: Any = probe.tls if probe is not None and probe.tls is not None else True
        return httpx.AsyncClient(timeout=self.timeout, transport=transport, verify=verify)

    # --- readiness --------------------------------------------------------------------------

    async def test_listening_when_the_host_reports_started(self, probe: Probe,
                                                           server_info: ServerInfo) -> None:
        """The server is bound and answering by the time "Now listening on:" is logged, and
        it reports the addresses it really listens on (a port of 0 resolved)."""
        schemes = sorted({url.split(":", 1)[0] for url in probe.urls})
        assert schemes == sorted(server_info.url_schemes), probe.program.output
        assert all(not url.endswith(":0") for url in probe.urls), probe.urls
        assert probe.ready == {url: 200 for url in probe.urls}

    # --- requests and responses -------------------------------------------------------------

    async def test_request_and_response_basics(self, probe: Probe, hostkit_server: str,
                                               anyio_backend: str) -> None:
        """Method, path, query, headers (multi-valued, case-insensitive), client and server
        addresses and the features reach the app; its status, headers and body come back."""
        url = probe.url("http")
        async with self.client() as client:
            response = await client.get(
                url + "/features?x=1&y=%20", headers=[("X-Test", "a"), ("x-multi", "1"),
                                                      ("X-Multi", "2")])
        assert response.status_code == 200
        assert response.headers["content-type"] == "application/json"
        features = response.json()
        assert features["server"] == hostkit_server
        assert features["hosting_model"] == "InProcess"
        assert features["process_id"] == probe.program.pid
        assert features["async_library"] == anyio_backend
        assert (features["method"], features["path"], features["query_string"]) == \
            ("GET", "/features", "x=1&y=%20")
        assert features["scheme"] == "http"
        assert features["remote_ip"] == "127.0.0.1"
        assert features["local_port"] == int(url.rsplit(":", 1)[1])
        assert ["x-test", "a"] in features["headers"]
        assert [["x-multi", "1"], ["x-multi", "2"]] == \
            [pair for pair in features["headers"] if pair[0] == "x-multi"]

    async def test_status_and_repeated_response_headers(self, probe: Probe) -> None:
        async with self.client() as client:
            echoed = await client.get(probe.url("http") + "/headers?201",
                                      headers=[("x-echo", "one"), ("x-echo", "two")])
            missing = await client.get(probe.url("http") + "/no-such-path")
        assert echoed.status_code == 201
        assert echoed.headers.get_list("x-reply") == ["one", "two"]
        assert echoed.text == "headers echoed"
        assert (missing.status_code, missing.text) == (404, "not found")

    async def test_keep_alive_serves_requests_one_after_another(self, probe: Probe) -> None:
        """Requests one after another on one HTTP/1.1 connection each get their answer."""
        connection = h11.Connection(h11.CLIENT)
        with anyio.fail_after(self.timeout):
            stream = await connect(probe.url("http"))
            try:
                answers = [await request_on(stream, connection, "GET", f"/headers?{status}")
                           for status in (202, 203, 204)]
            finally:
                await stream.aclose()
        assert answers == [(202, b"headers echoed"), (203, b"headers echoed"), (204, b"")]

    async def test_bodies_stream_both_ways(self, probe: Probe) -> None:
        """The app reads each request chunk as it arrives and its writes reach the client
        while the request is still coming: no buffering of either body."""
        with anyio.fail_after(self.timeout):
            stream = await connect(probe.url("http"))
            try:
                await stream.send(b"POST /echo HTTP/1.1\r\nHost: k\r\n"
                                  b"Transfer-Encoding: chunked\r\n\r\n5\r\nfirst\r\n")
                answer = await receive_until(stream, b"first")
                assert answer.startswith(b"HTTP/1.1 200"), answer
                await stream.send(b"6\r\nsecond\r\n")
                answer = await receive_until(stream, b"second", answer)
                await stream.send(b"0\r\n\r\n")
                answer = await receive_until(stream, b"0\r\n\r\n", answer)
            finally:
                await stream.aclose()
        assert answer.index(b"first") < answer.index(b"second")

    async def test_request_body_in_chunks_and_large_response(self, probe: Probe) -> None:
        async def chunks() -> AsyncIterator[bytes]:
            for _ in range(4):
                yield b"c" * 250

        async with self.client() as client:
            uploaded = await client.post(probe.url("http") + "/length", content=chunks())
            downloaded = await client.get(probe.url("http") + "/download?1000000")
        assert uploaded.text == "1000"
        assert downloaded.status_code == 200
        assert downloaded.content == b"d" * 1_000_000

    async def test_body_over_max_request_body_size_gets_413(self, probe: Probe) -> None:
        async def over() -> AsyncIterator[bytes]:
            for _ in range(5):
                yield b"y" * 400  # no Content-Length: counted while the app reads

        async with self.client() as client:
            declared = await client.post(probe.url("http") + "/length",
                                         content=b"x" * (BODY_LIMIT + 1))
            counted = await client.post(probe.url("http") + "/length", content=over())
            at_limit = await client.post(probe.url("http") + "/length",
                                         content=b"z" * BODY_LIMIT)
        assert declared.status_code == 413
        assert counted.status_code == 413
        assert (at_limit.status_code, at_limit.text) == (200, str(BODY_LIMIT))

    async def test_malformed_request_gets_400_and_the_server_keeps_serving(
            self, probe: Probe) -> None:
        answer = await raw_exchange(probe.url("http"), b"NOT A REQUEST LINE\r\n\r\n",
                                    self.timeout)
        assert answer.startswith(b"HTTP/1.1 4"), answer
        async with self.client() as client:
            assert (await client.get(probe.url("http") + "/features")).status_code == 200

    async def test_https(self, probe: Probe, server_info: ServerInfo, hostkit_server: str,
                         tmp_path: Path) -> None:
        """Declared https: TLS from ``[tls]`` works; undeclared: refused at build."""
        if "https" not in server_info.url_schemes:
            _tls_files(tmp_path)
            pem = tmp_path / "server.pem"
            error = try_build(hostkit_server, "--urls=https://127.0.0.1:0",
                              f"--tls:certificate={pem}", f"--tls:private_key={pem}")
            assert isinstance(error, ServerSelectionError), error
            assert f"server {hostkit_server!r} cannot listen on 'https://" in str(error)
            return
        async with self.client(probe) as client:
            response = await client.get(probe.url("https") + "/features")
        assert response.json()["scheme"] == "https"

    async def test_unix_socket(self, probe: Probe, server_info: ServerInfo,
                               hostkit_server: str) -> None:
        """Declared unix sockets: served; undeclared: refused at build."""
        if "unix" not in server_info.url_schemes:
            error = try_build(hostkit_server, "--urls=unix:/tmp/hostkit-conformance.sock")
            assert isinstance(error, ServerSelectionError), error
            assert f"server {hostkit_server!r} cannot listen on 'unix:" in str(error)
            return
        path = probe.url("unix")[len("unix:"):]
        async with self.client(unix=path) as client:
            response = await client.get("http://localhost/features")
        assert response.status_code == 200
        assert response.json()["server"] == hostkit_server

    # --- lifespan, aborts, shutdown ---------------------------------------------------------

    async def test_lifespan_startup_runs_before_started(self, probe: Probe) -> None:
        output = probe.program.output
        assert "probe: lifespan startup" in output
        assert output.index("probe: lifespan startup") < output.index("Application started.")
        async with self.client() as client:
            features = (await client.get(probe.url("http") + "/features")).json()
        assert features["lifespan_state"] == {"probe": "started"}

    async def test_client_disconnect_sets_request_aborted(self, probe: Probe) -> None:
        program = probe.program
        before = program.output.count("probe: request aborted=True")
        waiting = program.output.count("probe: waiting for abort")
        with anyio.fail_after(self.timeout * 2):
            stream = await connect(probe.url("http"))
            await stream.send(b"GET /wait-abort HTTP/1.1\r\nHost: k\r\n\r\n")
            await anyio.to_thread.run_sync(program.wait_for_count, "probe: waiting for abort",
                                           waiting + 1, self.timeout)
            await stream.aclose()
            await anyio.to_thread.run_sync(program.wait_for_count,
                                           "probe: request aborted=True", before + 1,
                                           self.timeout)

    async def test_sigterm_drains_in_flight_request_then_lifespan_shutdown(
            self, anyio_backend: str, hostkit_server: str, server_info: ServerInfo,
            programs: Programs, short_dir: Path, tmp_path: Path) -> None:
        """SIGTERM: the request in flight completes, the host exits 0 after the app's
        lifespan shutdown, and a unix socket file is removed."""
        urls = ["http://127.0.0.1:0"]
        sock = short_dir / f"drain-{anyio_backend}.sock"
        if "unix" in server_info.url_schemes:
            urls.append(f"unix:{sock}")
        _write_config(tmp_path, hostkit_server, urls=urls)
        program = programs.start(tmp_path, f"--async_backend={anyio_backend}")
        url = program.wait_started(self.timeout)[0]
        results: list[httpx.Response] = []
        async with self.client() as client, anyio.create_task_group() as tasks:
            async def slow() -> None:
                results.append(await client.get(url + "/slow?1.5"))

            tasks.start_soon(slow)
            await anyio.to_thread.run_sync(program.wait_for_line,
                                           "probe: slow request started", self.timeout)
            program.signal(signal.SIGTERM)
        assert (results[0].status_code, results[0].text) == (200, "slow done")
        assert await anyio.to_thread.run_sync(program.wait_exit, self.timeout) == 0
        output = program.output
        assert output.index("probe: lifespan shutdown") > output.index("SIGTERM received")
        assert "Application stopped." in output
        assert not sock.exists()

    # --- hosting models and backends --------------------------------------------------------

    async def test_out_of_process_child_runs_this_server(
            self, anyio_backend: str, hostkit_server: str, server_info: ServerInfo,
            programs: Programs, tmp_path: Path) -> None:
        """Declared OutOfProcess: the module's child serves with this server (its own pid);
        undeclared: refused at build."""
        if HostingModel.OUT_OF_PROCESS not in server_info.hosting_models:
            error = try_build(hostkit_server, "--hosting_model=OutOfProcess")
            assert isinstance(error, ServerSelectionError), error
            assert "does not support hosting_model 'OutOfProcess'" in str(error)
            return
        _write_config(tmp_path, hostkit_server, hosting_model="OutOfProcess",
                      urls=["http://127.0.0.1:0"],
                      module={"startup_time_limit": 15, "shutdown_time_limit": 3})
        front = programs.start(tmp_path, f"--async_backend={anyio_backend}")
        (url,) = front.wait_started(self.timeout)
        async with self.client() as client:
            response = await client.get(url + "/features")
        features = response.json()
        front.wait_for_line("started child pid", self.timeout)
        child_pid = front.started_children()[0][0]
        assert features["hosting_model"] == "OutOfProcess"
        assert features["server"] == hostkit_server
        assert features["process_id"] == child_pid != front.pid
        assert features["async_library"] == anyio_backend

    def test_declared_backends_and_models_build_and_others_are_refused(
            self, hostkit_server: str, server_info: ServerInfo, tmp_path: Path) -> None:
        """Each declared backend builds a host served by this server; every other backend
        is a ServerSelectionError naming the server, the backend and what it supports, which
        a program prints as one line before exiting with 1."""
        for backend in ("asyncio", "trio"):
            for model in server_info.hosting_models:
                result = try_build(hostkit_server, f"--async_backend={backend}",
                                   f"--hosting_model={model.value}")
                if backend in server_info.async_backends:
                    assert not isinstance(result, BaseException), result
                    if model is HostingModel.IN_PROCESS:
                        assert result == hostkit_server
                    continue
                assert isinstance(result, ServerSelectionError), result
                message = str(result)
                assert f"server {hostkit_server!r}" in message
                assert f"async_backend {backend!r}" in message
                assert "it supports: " + ", ".join(server_info.async_backends) in message
            if backend in server_info.async_backends:
                continue
            _write_config(tmp_path, hostkit_server)
            with Program([*_PROBE, f"--async_backend={backend}",
                          "--urls=http://127.0.0.1:0"], cwd=tmp_path) as program:
                assert program.wait_exit(self.timeout) == 1
            assert f"hostkit: error: server {hostkit_server!r} does not support " \
                   f"async_backend {backend!r}" in program.output
            assert "Traceback" not in program.output
