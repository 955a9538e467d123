"""The child side of ``scope["http_version"]``: a child serves the client's protocol from
its front's ``Hostkit-Http-Version`` header (``hostkit.plugin.HTTP_VERSION_HEADER``), only on
a request whose token verifies, and the app never sees the header. The child is started by
hand with a known token (as tests/security/test_direct_to_child.py does), on asyncio and
trio, and reached over HTTP/1.1 as the front reaches it."""

from __future__ import annotations

import json
import secrets
import socket
from collections.abc import Iterator
from pathlib import Path

import pytest

from hostkit.plugin import HTTP_VERSION_HEADER, free_loopback_port
from hostkit.testing import Program, python, write_settings
from tests.support.paths import PROGRAMS

pytestmark = pytest.mark.integration

TIMEOUT = 15
VERSION = HTTP_VERSION_HEADER.decode()


class Child:
    def __init__(self, program: Program, port: int, token: str):
        self.program, self.port, self.token = program, port, token

    def get(self, *headers: tuple[str, str], token: bool = True) -> tuple[int, bytes]:
        """Status and body of ``GET /headers`` with ``headers`` (and the token)."""
        lines = ["GET /headers HTTP/1.1", f"Host: 127.0.0.1:{self.port}", "Connection: close",
                 *(f"{name}: {value}" for name, value in headers)]
        if token:
            lines.append(f"Hostkit-Token: {self.token}")
        with socket.create_connection(("127.0.0.1", self.port), timeout=TIMEOUT) as sock:
            sock.sendall(("\r\n".join(lines) + "\r\n\r\n").encode())
            data = b""
            while chunk := sock.recv(65536):
                data += chunk
        head, _, body = data.partition(b"\r\n\r\n")
        return int(head.split()[1]), body


@pytest.fixture(scope="module")
def child(anyio_backend: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Child]:
    root: Path = tmp_path_factory.mktemp(f"child-version-{anyio_backend}")
    write_settings(root, {"hosting_model": "OutOfProcess"})
    port, token = free_loopback_port(), secrets.token_urlsafe(32)
    with Program(python(str(PROGRAMS / "h2_inprocess_app.py"), f"--async_backend={anyio_backend}"),
                 root, {"HOSTKIT_PORT": str(port), "HOSTKIT_TOKEN": token,
                        "HOSTKIT_PATH_BASE": "/"}, name="child") as program:
        program.wait_started(30)
        yield Child(program, port, token)


@pytest.mark.parametrize("sent, seen", [("2", "2"), ("1.1", "1.1"), ("1.0", "1.0"),
                                        ("3", "1.1"), ("", "1.1")])
def test_the_fronts_header_gives_http_version(child: Child, sent: str, seen: str) -> None:
    status, body = child.get((VERSION, sent))
    assert status == 200
    answer = json.loads(body)
    assert answer["http_version"] == seen
    assert all(name.lower() != VERSION for name, _ in answer["headers"])


def test_without_the_header_the_child_s_own_version(child: Child) -> None:
    status, body = child.get()
    assert status == 200 and json.loads(body)["http_version"] == "1.1"


def test_only_a_token_verified_request(child: Child) -> None:
    assert child.get((VERSION, "2"), token=False)[0] == 400
    assert child.get((VERSION, "2"), ("Hostkit-Token", "wrong"), token=False)[0] == 400


def test_a_duplicated_header_is_refused(child: Child) -> None:
    status, body = child.get((VERSION, "2"), (VERSION, "1.1"))
    assert status == 400 and body == b""
