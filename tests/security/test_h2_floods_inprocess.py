"""HTTP/2 floods against an InProcess host (hypercorn), on asyncio and trio: each is ended
by GOAWAY (ENHANCE_YOUR_CALM, or PROTOCOL_ERROR for a stream past the advertised limit) after
a bounded number of frames, which the host's log line gives; the app never sees the flood;
other clients keep being served meanwhile. Raw frames: tests/support/h2_wire.py."""

from __future__ import annotations

import re
import socket
import ssl
import statistics
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
import trustme
from hyperframe.frame import ContinuationFrame, HeadersFrame

from hostkit.testing import Program, python, write_settings
from tests.support.h2_wire import ENHANCE_YOUR_CALM, PROTOCOL_ERROR, RawH2
from tests.support.paths import PROGRAMS

pytestmark = pytest.mark.integration

TIMEOUT = 20
_FLOOD_LINE = re.compile(r"HTTP/2 flood from (\S+) \((.*)\): GOAWAY ENHANCE_YOUR_CALM after "
                         r"(\d+) frames")


class Host:
    def __init__(self, program: Program, plain: str, secure: str, ca: trustme.CA):
        self.program = program
        self.host, _, port = plain.removeprefix("http://").rpartition(":")
        self.port = int(port)
        self.tls_port = int(secure.rpartition(":")[2])
        self.ca = ca

    def tls(self) -> ssl.SSLContext:
        context = ssl.create_default_context()
        self.ca.configure_trust(context)
        return context

    def connect(self, *, tls: bool = False) -> RawH2:
        if tls:
            return RawH2(self.host, self.tls_port, tls=self.tls(), timeout=TIMEOUT)
        return RawH2(self.host, self.port, timeout=TIMEOUT)

    def started(self) -> int:
        """How many requests the app has been called with (this one included)."""
        with httpx.Client(http2=False, timeout=TIMEOUT) as client:
            return int(client.get(f"http://{self.host}:{self.port}/started").text)

    def flood_line(self, client: RawH2, timeout: float = TIMEOUT) -> tuple[str, int]:
        """(reason, frames) of the host's log line about ``client``'s connection."""
        port = client.sock.getsockname()[1]
        line = self.program.wait_for_line(f"127.0.0.1:{port} (", timeout)
        match = _FLOOD_LINE.search(line)
        assert match, line
        return match.group(2), int(match.group(3))


@pytest.fixture(scope="module")
def host(anyio_backend: str, authority: tuple[trustme.CA, Path],
         tmp_path_factory: pytest.TempPathFactory) -> Iterator[Host]:
    ca, pem = authority
    root = tmp_path_factory.mktemp(f"h2-floods-{anyio_backend}")
    write_settings(root, {"urls": ["http://127.0.0.1:0", "https://127.0.0.1:0"],
                          "async_backend": anyio_backend, "shutdown_timeout": 3,
                          "tls": {"certificate": str(pem), "private_key": str(pem)}})
    with Program(python(str(PROGRAMS / "h2_inprocess_app.py")), cwd=root) as program:
        plain, secure = program.wait_started()
        yield Host(program, plain, secure, ca)


@pytest.mark.parametrize("tls", [False, True], ids=["prior-knowledge", "alpn"])
def test_settings_flood(host: Host, tls: bool) -> None:
    client = host.connect(tls=tls)
    frame = b"\x00\x00\x06\x04\x00\x00\x00\x00\x00\x00\x03\x00\x00\x00\x64"  # MAX_CONCURRENT
    client.flood(frame * 100, 100, 200)  # 20,000 SETTINGS
    answer = client.answer()
    reason, frames = host.flood_line(client)
    assert "SETTINGS flood" in reason
    # The client's first SETTINGS and its ACK, 32 more, and the one too many.
    assert frames <= 36
    assert answer.goaway == ENHANCE_YOUR_CALM and answer.closed
    assert answer.count(0x4, ack=True) <= 33


@pytest.mark.parametrize("tls", [False, True], ids=["prior-knowledge", "alpn"])
def test_ping_flood(host: Host, tls: bool) -> None:
    client = host.connect(tls=tls)
    frame = b"\x00\x00\x08\x06\x00\x00\x00\x00\x00" + b"12345678"
    client.flood(frame * 100, 100, 200)  # 20,000 PINGs
    answer = client.answer()
    reason, frames = host.flood_line(client)
    assert "PING flood" in reason and frames <= 68
    assert answer.goaway == ENHANCE_YOUR_CALM and answer.closed
    assert answer.count(0x6, ack=True) <= 64


def test_settings_flood_after_an_h2c_upgrade(host: Host) -> None:
    """The third way to HTTP/2 (an ``Upgrade: h2c`` request, then the preface) is guarded
    too."""
    sock = socket.create_connection((host.host, host.port), timeout=TIMEOUT)
    sock.sendall(b"GET /started HTTP/1.1\r\nHost: x\r\nConnection: Upgrade, HTTP2-Settings\r\n"
                 b"Upgrade: h2c\r\nHTTP2-Settings: AAMAAABkAAQAAP__\r\n\r\n")
    frame = b"\x00\x00\x06\x04\x00\x00\x00\x00\x00\x00\x03\x00\x00\x00\x64"
    client = RawH2.adopt(sock)
    client.send(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n" + frame * 2000, 2000)
    answer = client.answer()
    reason, frames = host.flood_line(client)
    assert "SETTINGS flood" in reason and frames <= 34
    assert answer.closed


def test_rapid_reset_in_bursts(host: Host) -> None:
    before = host.started()
    client = host.connect()
    batch = b"".join(client.rapid_reset(stream_id) for stream_id in range(1, 2 * 500, 2))
    client.send(batch, 1000)
    answer = client.answer()
    reason, frames = host.flood_line(client)
    # Either budget may run out first: 200 new streams in one read, or 200 resets.
    assert "stream flood" in reason or "rapid reset" in reason, reason
    assert frames <= 2 + 2 * 201 + 1
    assert answer.goaway == ENHANCE_YOUR_CALM and answer.closed
    assert host.started() - before <= 202


def test_rapid_reset_paced(host: Host) -> None:
    """Resets spread over writes (20 streams each): the reset budget (200, then 33 a second)
    ends the connection. When the server falls behind, several writes arrive in one read and
    the other rapid-reset defence, new streams per read, may end it first: either is the
    flood refused within the frames the reset budget allows."""
    client = host.connect()
    started = time.monotonic()
    stream_id = 1
    while client.send(b"".join(client.rapid_reset(stream_id + 2 * i) for i in range(20)), 40):
        stream_id += 40
        time.sleep(0.002)
        assert time.monotonic() - started < TIMEOUT, "no GOAWAY"
    elapsed = time.monotonic() - started
    answer = client.answer()
    reason, frames = host.flood_line(client)
    assert "rapid reset" in reason or "new streams in one read" in reason, reason
    assert frames <= 2 + 2 * (200 + 33 * elapsed + 1) + 40
    assert answer.goaway == ENHANCE_YOUR_CALM and answer.closed


@pytest.mark.parametrize("size", [1, 16384], ids=["many-small", "large"])
def test_continuation_flood(host: Host, size: int) -> None:
    client = host.connect()
    client.send(client.continuation_flood_start(1), 1)
    frame = client.continuation(1, b"a" * size)
    client.flood(frame * 10, 10, 1000)
    answer = client.answer()
    reason, frames = host.flood_line(client)
    if size == 1:
        assert "CONTINUATION flood" in reason and frames <= 2 + 1 + 9 + 1
    else:
        assert "header block flood" in reason and frames <= 2 + 1 + 4 + 1
    assert answer.goaway == ENHANCE_YOUR_CALM and answer.closed


def test_oversized_header_list(host: Host) -> None:
    """A header list past http2_max_header_list_size (64 KiB) whose block is within the
    block bound (HPACK's Huffman code makes it smaller): h2 refuses it with GOAWAY
    ENHANCE_YOUR_CALM; the app is not called."""
    before = host.started()
    client = host.connect()
    block = client.request_block("/headers", extra=[("x-big", "a" * 70_000)])
    assert len(block) < 65536  # within the bound: this is h2's limit, not the watch's
    frames = [block[i:i + 16384] for i in range(0, len(block), 16384)]
    data = HeadersFrame(1, frames[0], flags=["END_STREAM"]).serialize()
    for index, part in enumerate(frames[1:], 1):
        flags = ["END_HEADERS"] if index == len(frames) - 1 else []
        data += ContinuationFrame(1, part, flags=flags).serialize()
    client.send(data, len(frames))
    answer = client.answer()
    assert answer.goaway == ENHANCE_YOUR_CALM and answer.closed
    assert answer.responses() == []
    assert host.started() - before == 1


def test_too_many_streams(host: Host) -> None:
    """Streams past http2_max_concurrent_streams (100), opened 10 a read: h2 ends the
    connection at the first one past the limit (GOAWAY PROTOCOL_ERROR, RFC 9113 §5.1.2)."""
    before = host.started()
    client = host.connect()
    stream_id = 1
    for _ in range(30):  # 300 streams of /slow, 10 per write
        batch = b"".join(client.headers(stream_id + 2 * i, "/slow?3") for i in range(10))
        if not client.send(batch, 10):
            break
        stream_id += 20
        time.sleep(0.005)
    answer = client.answer(wait=5)
    assert answer.goaway in (PROTOCOL_ERROR, ENHANCE_YOUR_CALM) and answer.closed
    assert host.started() - before <= 101


def test_other_clients_are_served_during_floods(host: Host) -> None:
    """A quick bound: p99 of another client's requests while floods run is within 2× its
    baseline plus 25 ms of noise (bench/http2.py --floods measures it properly)."""
    url = f"https://{host.host}:{host.tls_port}/"

    def latencies(count: int) -> list[float]:
        times = []
        with httpx.Client(http2=True, verify=host.tls(), timeout=TIMEOUT) as client:
            client.get(url)
            for _ in range(count):
                start = time.perf_counter()
                assert client.get(url).http_version == "HTTP/2"
                times.append(time.perf_counter() - start)
        return times

    def p99(times: list[float]) -> float:
        return statistics.quantiles(times, n=100)[98]

    baseline = p99(latencies(200))
    stop = threading.Event()
    floods = [0]

    def flood() -> None:
        settings = b"\x00\x00\x06\x04\x00\x00\x00\x00\x00\x00\x03\x00\x00\x00\x64" * 100
        while not stop.is_set():
            client = host.connect()
            client.flood(settings, 100, 50)
            client.answer(wait=2)
            client.close()
            floods[0] += 1

    thread = threading.Thread(target=flood)
    thread.start()
    try:
        during = p99(latencies(200))
    finally:
        stop.set()
        thread.join(TIMEOUT)
    assert floods[0] >= 2
    assert during <= 2 * baseline + 0.025, (baseline, during, floods[0])
