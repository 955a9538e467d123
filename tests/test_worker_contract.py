"""The supervisor's contract with its workers, and the answers it gives while none is up:
the environment round trip, malformed contracts, inherited sockets (closed without removing
the supervisor's socket file), the ready channel, and the 503 / 400 the supervisor writes."""

from __future__ import annotations

import os
import socket
from pathlib import Path

import anyio
import pytest

from hostkit.listeners import bind_all, close_all
from hostkit.supervisor.answers import answer
from hostkit.supervisor.pool import Unavailable
from hostkit import worker_contract
from hostkit.worker_contract import WorkerContract

pytestmark = pytest.mark.anyio


def test_the_contract_round_trips_through_the_environment() -> None:
    contract = WorkerContract(((5, "http://127.0.0.1:8080"), (6, "unix:/tmp/a b.sock")), 7)
    assert WorkerContract.from_environ(contract.to_environ()) == contract
    assert contract.descriptors == (5, 6, 7)
    assert WorkerContract.from_environ({}) is None
    assert WorkerContract.from_environ({worker_contract.CHANNEL_VARIABLE: "3"}) is None


@pytest.mark.parametrize("listeners, channel, message", [
    ("x http://127.0.0.1:1", "3", "HOSTKIT_WORKER_LISTENERS: 'x http://127.0.0.1:1'"),
    ("5", "3", "HOSTKIT_WORKER_LISTENERS: '5' is not 'FD URL'"),
    ("5 http://127.0.0.1:1", "three", "HOSTKIT_WORKER_CHANNEL='three'"),
])
def test_a_malformed_contract_names_the_variable(listeners: str, channel: str,
                                                 message: str) -> None:
    with pytest.raises(ValueError, match=message):
        WorkerContract.from_environ({worker_contract.LISTENERS_VARIABLE: listeners,
                                     worker_contract.CHANNEL_VARIABLE: channel})


def test_current_worker_reads_the_contract_once_and_removes_it(
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(worker_contract, "_current", worker_contract._UNREAD)
    environ = {**WorkerContract(((9, "http://127.0.0.1:1"),), 10).to_environ(), "OTHER": "1"}
    contract = worker_contract.current_worker(environ)
    assert contract == WorkerContract(((9, "http://127.0.0.1:1"),), 10)
    assert environ == {"OTHER": "1"}  # a worker's own children do not see it
    assert worker_contract.current_worker({}) == contract


def test_a_worker_adopts_the_supervisors_sockets_and_leaves_its_socket_file(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "app.sock"
    bound = bind_all([f"unix:{path}", "http://127.0.0.1:0"])
    try:
        listeners = [(sock, address.display(sock)) for address, sock in bound]
        contract, channel, theirs = WorkerContract.new(listeners)
        channel.close()
        theirs.close()
        # What a worker does: each descriptor duplicated, as inheriting it would give.
        inherited = WorkerContract(tuple((os.dup(fd), url) for fd, url in contract.listeners),
                                   contract.channel)
        monkeypatch.setattr(worker_contract, "_current", inherited)
        adopted = bind_all(["http://127.0.0.1:1"])  # what the worker's own urls say is ignored
        assert [address.display(sock) for address, sock in adopted] == [
            url for _, url in listeners]
        assert all(address.inherited for address, _ in adopted)
        close_all(adopted)
        assert path.exists()  # still the supervisor's
        with socket.socket(socket.AF_UNIX) as client:
            client.connect(str(path))  # and still listening
    finally:
        close_all(bound)
    assert not path.exists()


async def test_the_channel_says_ready_or_that_the_worker_went_away() -> None:
    contract, channel, theirs = WorkerContract.new([])
    with theirs:
        WorkerContract((), theirs.fileno()).report_ready()
        with anyio.fail_after(5):
            assert await channel.wait_ready()
    channel.close()
    contract, channel, theirs = WorkerContract.new([])
    theirs.close()  # the worker exited without a word
    with anyio.fail_after(5):
        assert not await channel.wait_ready()
    channel.close()


async def _answered(request: bytes, unavailable: Unavailable) -> bytes:
    client, server = socket.socketpair()
    with client:
        stream = await anyio.abc.SocketStream.from_socket(server)
        async with stream:
            client.sendall(request)
            with anyio.fail_after(5):
                await answer(stream, unavailable, head_timeout=0.5)
        client.settimeout(5)
        received = b""
        while chunk := client.recv(65536):
            received += chunk
        return received


async def test_rapid_fail_is_503_with_retry_after_and_a_page() -> None:
    response = await _answered(b"GET / HTTP/1.1\r\nHost: a\r\n\r\n", Unavailable(None, 42))
    head, _, body = response.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 503 Service Unavailable\r\n")
    assert b"\r\nretry-after: 42" in head and b"\r\nconnection: close" in head
    assert f"content-length: {len(body)}".encode() in head and b"503" in body


async def test_offline_is_503_with_the_files_content_and_head_has_no_body() -> None:
    page = b"<h1>back soon</h1>"
    response = await _answered(b"GET / HTTP/1.1\r\nHost: a\r\n\r\n", Unavailable(page, 0))
    assert response.endswith(b"\r\n\r\n" + page) and b"retry-after" not in response
    head_only = await _answered(b"HEAD / HTTP/1.1\r\nHost: a\r\n\r\n", Unavailable(page, 0))
    assert head_only.startswith(b"HTTP/1.1 503 ") and head_only.endswith(b"\r\n\r\n")
    assert f"content-length: {len(page)}".encode() in head_only


async def test_a_malformed_head_is_400_and_a_silent_client_gets_nothing() -> None:
    response = await _answered(b"GET / HTTP/1.1\r\nHost a\r\n\r\n", Unavailable(None, 5))
    assert response.startswith(b"HTTP/1.1 400 Bad Request\r\n")
    assert await _answered(b"GET / HTT", Unavailable(None, 5)) == b""
