"""HTTP/2 InProcess (hypercorn), on asyncio and trio, with real clients: ALPN ``h2`` over TLS
and cleartext prior knowledge (curl, httpx, the h2 library, h2load), ``h2c`` upgrade;
``scope["http_version"] == "2"``; streamed request and response bodies; the gateway's
duties (X-Request-Id, the access log) and server authentication on HTTP/2 requests; the
``[server] http2_*`` settings in the server's SETTINGS; many streams from a legitimate
client never trip the flood guard (docs/protocols.md)."""

from __future__ import annotations

import hashlib
import json
import os
import ssl
import subprocess
from collections.abc import Iterator
from pathlib import Path

import h2.config
import h2.connection
import h2.events
import h2.settings
import httpx
import pytest
import trustme

from hostkit.authentication.passwords import hash_password
from hostkit.authentication.users_file import set_user
from hostkit.testing import Program, python, write_settings
from tests.support.h2_wire import RawH2
from tests.support.paths import PROGRAMS

pytestmark = pytest.mark.integration

TIMEOUT = 20


class Host:
    def __init__(self, program: Program, plain: str, secure: str, ca: trustme.CA, ca_file: Path):
        self.program = program
        self.plain = plain
        self.secure = secure.replace("127.0.0.1", "localhost")
        self.secure_ip = secure
        self.ca = ca
        self.ca_file = ca_file

    def tls(self) -> ssl.SSLContext:
        context = ssl.create_default_context()
        self.ca.configure_trust(context)
        return context

    def curl(self, *args: str) -> subprocess.CompletedProcess[bytes]:
        return subprocess.run(["curl", "-sS", "--max-time", str(TIMEOUT), "--cacert",
                               str(self.ca_file), *args], capture_output=True, timeout=TIMEOUT + 5,
                              check=True)


@pytest.fixture(scope="module")
def host(anyio_backend: str, authority: tuple[trustme.CA, Path],
         tmp_path_factory: pytest.TempPathFactory) -> Iterator[Host]:
    ca, pem = authority
    root = tmp_path_factory.mktemp(f"h2-{anyio_backend}")
    ca_file = root / "ca.pem"
    ca.cert_pem.write_to_path(str(ca_file))
    set_user(root / "users.txt", "alice", hash_password("wonderland", 1000))
    write_settings(root, {
        "urls": ["http://127.0.0.1:0", "https://127.0.0.1:0"], "async_backend": anyio_backend,
        "shutdown_timeout": 3, "tls": {"certificate": str(pem), "private_key": str(pem)},
        "server": {"http2_max_concurrent_streams": 64, "http2_max_header_list_size": 32768},
        "authentication": {"schemes": ["basic"], "users_file": "users.txt"},
    })
    with Program(python(str(PROGRAMS / "h2_inprocess_app.py")), cwd=root) as program:
        plain, secure = program.wait_started()
        yield Host(program, plain, secure, ca, ca_file)


def test_alpn_h2_with_curl(host: Host) -> None:
    result = host.curl("--http2", "-i", f"{host.secure_ip}/headers?via=alpn")
    head, _, body = result.stdout.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/2 200")
    assert b"\r\nx-request-id: " in head.lower()
    seen = json.loads(body)
    assert seen["http_version"] == "2" and seen["method"] == "GET"
    assert ["host", host.secure_ip.removeprefix("https://")] in seen["headers"]
    host.program.wait_for_line('"GET /headers?via=alpn HTTP/2" 200', TIMEOUT)


def test_prior_knowledge_with_curl(host: Host) -> None:
    result = host.curl("--http2-prior-knowledge", "-i", f"{host.plain}/headers?via=prior")
    head, _, body = result.stdout.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/2 200") and b"x-request-id: " in head.lower()
    assert json.loads(body)["http_version"] == "2"
    host.program.wait_for_line('"GET /headers?via=prior HTTP/2" 200', TIMEOUT)


def test_h2c_upgrade_with_curl(host: Host) -> None:
    result = host.curl("--http2", "-i", f"{host.plain}/headers?via=upgrade")
    assert b"HTTP/1.1 101" in result.stdout and b"HTTP/2 200" in result.stdout
    assert json.loads(result.stdout.rpartition(b"\r\n\r\n")[2])["http_version"] == "2"


def test_http11_is_still_http11(host: Host) -> None:
    result = host.curl("--http1.1", f"{host.secure_ip}/headers")
    assert json.loads(result.stdout)["http_version"] == "1.1"


def test_large_streamed_response(host: Host) -> None:
    size = 8 * 1024 * 1024
    result = host.curl("--http2", "-w", "%{http_version} %{size_download}", "-o", os.devnull,
                       f"{host.secure_ip}/stream?{size}")
    assert result.stdout.decode() == f"2 {size}"


def test_streamed_upload_with_the_h2_library(host: Host) -> None:
    """A 1 MiB body in 64 DATA frames, under flow control (the server's 64 KiB initial
    windows): it streams in (the app sees it in several chunks) and arrives whole."""
    address = host.plain.removeprefix("http://").rpartition(":")
    raw = RawH2(address[0], int(address[2]), timeout=TIMEOUT)
    client = h2.connection.H2Connection(h2.config.H2Configuration(client_side=True))
    client.initiate_connection()
    client.data_to_send()  # RawH2 sent the preface and SETTINGS already
    body = os.urandom(1024 * 1024)
    client.send_headers(1, [(":method", "POST"), (":path", "/upload"), (":scheme", "http"),
                            (":authority", raw.authority), ("content-length", str(len(body)))])
    raw.sock.sendall(client.data_to_send())
    sent, answer, done = 0, b"", False
    status = None
    while not done:
        while sent < len(body):
            window = min(client.local_flow_control_window(1), 16384)
            if window <= 0:
                break
            client.send_data(1, body[sent:sent + window], end_stream=sent + window >= len(body))
            sent += window
        raw.sock.sendall(client.data_to_send())
        data = raw.sock.recv(65536)
        assert data, "the server closed the connection"
        for event in client.receive_data(data):
            if isinstance(event, h2.events.ResponseReceived):
                status = dict(event.headers)[b":status"]
            elif isinstance(event, h2.events.DataReceived):
                answer += event.data
                client.acknowledge_received_data(event.flow_controlled_length, 1)
            elif isinstance(event, h2.events.StreamEnded):
                done = True
        raw.sock.sendall(client.data_to_send())
    raw.close()
    assert status == b"200"
    seen = json.loads(answer)
    assert seen["length"] == len(body) and seen["sha256"] == hashlib.sha256(body).hexdigest()
    assert seen["chunks"] > 1


def test_httpx_over_h2_many_requests_on_one_connection(host: Host) -> None:
    with httpx.Client(http2=True, verify=host.tls(), timeout=TIMEOUT) as client:
        ids = set()
        for index in range(50):
            response = client.get(f"{host.secure_ip}/headers?n={index}")
            assert response.http_version == "HTTP/2"
            assert response.json()["http_version"] == "2"
            ids.add(response.headers["x-request-id"])
        assert len(ids) == 50


def test_server_authentication_over_h2(host: Host) -> None:
    with httpx.Client(http2=True, verify=host.tls(), timeout=TIMEOUT) as client:
        anonymous = client.get(f"{host.secure_ip}/headers")
        assert anonymous.http_version == "HTTP/2" and anonymous.json()["user"] is None
        wrong = client.get(f"{host.secure_ip}/headers", auth=("alice", "nope"))
        assert wrong.status_code == 401 and wrong.headers["www-authenticate"].startswith("Basic")
        right = client.get(f"{host.secure_ip}/headers", auth=("alice", "wonderland"))
        assert right.status_code == 200 and right.json()["user"] == "alice"


def test_the_http2_settings_are_advertised(host: Host) -> None:
    address = host.plain.removeprefix("http://").rpartition(":")
    raw = RawH2(address[0], int(address[2]), timeout=TIMEOUT)
    answer = raw.answer(wait=1)
    raw.close()
    settings = {}
    for kind, flags, _, payload in answer.frames:
        if kind == 0x4 and not flags & 1:
            for offset in range(0, len(payload), 6):
                settings[int.from_bytes(payload[offset:offset + 2], "big")] = \
                    int.from_bytes(payload[offset + 2:offset + 6], "big")
    assert settings[h2.settings.SettingCodes.MAX_CONCURRENT_STREAMS] == 64
    assert settings[h2.settings.SettingCodes.MAX_HEADER_LIST_SIZE] == 32768


@pytest.mark.parametrize("tls", [True, False], ids=["alpn", "prior-knowledge"])
def test_h2load_with_many_streams_is_no_flood(host: Host, tls: bool) -> None:
    """4 connections × 64 concurrent streams (the limit), 4,000 requests: all succeed and the
    flood guard stays quiet."""
    url = f"{host.secure_ip if tls else host.plain}/"
    result = subprocess.run(["h2load", "-n", "4000", "-c", "4", "-m", "64", url],
                            capture_output=True, text=True, timeout=120, check=True)
    assert "4000 succeeded, 0 failed, 0 errored" in result.stdout, result.stdout
    assert "HTTP/2 flood" not in host.program.output


@pytest.mark.parametrize("tls", [True, False], ids=["alpn", "prior-knowledge"])
def test_a_client_that_leaves_mid_response_frees_its_streams(host: Host, tls: bool) -> None:
    """Ten streams of 1 MiB the client never reads, then it closes: each response ends (its
    access-log line is written) at once, not when the server stops. Without hostkit's fix
    (hypercorn_internals._release_streams) a stream waiting on its send buffer waits for ever
    and the connection stays open (CLOSE-WAIT)."""
    url = host.secure_ip if tls else host.plain
    address = url.removeprefix("https://").removeprefix("http://").rpartition(":")
    raw = RawH2(address[0], int(address[2]), tls=host.tls() if tls else None, timeout=TIMEOUT)
    marker = f"/stream?{1024 * 1024 + (1 if tls else 2)}"
    raw.send(b"".join(raw.headers(1 + 2 * i, marker) for i in range(10)), 10)
    raw.answer(wait=1)  # what fits in the windows (64 KiB a stream), then nothing is read
    raw.close()
    host.program.wait_for_count(f'"GET {marker} HTTP/2"', 10, 10)
