"""A WebSocket client that breaks the protocol gets a Close frame with the reason's code before
the TCP close, InProcess and through a front (whose tunnel carries the child's Close frame
back), on both backends.

Each case sends one bad frame on an accepted WebSocket, over a raw socket, and reads what the
server sends until it closes: the Close frame's code must be there.

- an unmasked client frame, a reserved opcode, a reserved bit: 1002 (protocol error);
- invalid UTF-8 in a text message: 1007;
- a frame header declaring 2**62 bytes: 1009 (message too big) at once, with none of the
  payload sent: the limit (hypercorn's ``websocket_max_message_size``) is known at the header.

Without the fix the violations got a TCP close with no Close frame, and the 2**62 header got
nothing until the limit's worth of payload had arrived.
"""

from __future__ import annotations

import os
import socket
import struct
import time
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlsplit

import pytest
from wsproto import ConnectionType, WSConnection
from wsproto.events import AcceptConnection, BytesMessage, CloseConnection, Request, TextMessage

from hostkit.testing import Program
from hostkit_inprocess.websocket_frames import MessageLengths
from tests.support.models import MODELS, serve_in
from tests.support.paths import PROGRAMS

pytestmark = pytest.mark.integration

TIMEOUT = 10


def _masked(first_byte: int, payload: bytes) -> bytes:
    """A client frame: ``first_byte`` (FIN, RSV bits, opcode), then ``payload`` masked."""
    key = os.urandom(4)
    body = bytes(byte ^ key[index % 4] for index, byte in enumerate(payload))
    assert len(payload) < 126
    return bytes([first_byte, 0x80 | len(payload)]) + key + body


#: name: (the bytes sent on an open WebSocket, the close code expected back)
CASES = {
    "unmasked frame": (bytes([0x81, 5]) + b"hello", 1002),
    "reserved opcode": (_masked(0x83, b"x"), 1002),
    "reserved bit": (_masked(0x81 | 0x20, b"hello"), 1002),
    "invalid utf-8": (_masked(0x81, b"\xff\xfe\xfd"), 1007),
    "2**62-byte frame": (bytes([0x82, 0x80 | 127]) + struct.pack("!Q", 2**62) + os.urandom(4),
                         1009),
}


@pytest.fixture(scope="module", params=[(model, backend) for model in MODELS
                                        for backend in ("asyncio", "trio")],
                ids=lambda param: "-".join(param))
def server(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
           ) -> Iterator[tuple[Program, int]]:
    model, backend = request.param
    with serve_in(model, PROGRAMS / "ws_echo.py", backend,
                  tmp_path_factory.mktemp("ws")) as program:
        port = urlsplit(program.urls[0]).port
        assert port is not None
        yield program, port


def _open_websocket(port: int) -> tuple[socket.socket, WSConnection]:
    """A raw socket with an accepted WebSocket on ``/ws``, checked with one echo."""
    sock = socket.create_connection(("127.0.0.1", port), timeout=TIMEOUT)
    client = WSConnection(ConnectionType.CLIENT)
    sock.sendall(client.send(Request(host="127.0.0.1", target="/ws")))
    events: list[object] = []
    while not any(isinstance(event, AcceptConnection) for event in events):
        data = sock.recv(65536)
        assert data, "closed during the handshake"
        client.receive_data(data)
        events += list(client.events())
    return sock, client


def _close_code(sock: socket.socket, client: WSConnection) -> int | None:
    """What the server sends until it closes the TCP connection: its Close frame's code
    (``None`` when it sent none)."""
    code = None
    while True:
        try:
            data = sock.recv(65536)
        except ConnectionResetError:
            break
        if not data:
            break
        client.receive_data(data)
        for event in client.events():
            if isinstance(event, CloseConnection):
                code = event.code
    return code


@pytest.mark.parametrize("case", list(CASES))
def test_a_protocol_violation_gets_a_close_frame_with_its_code(server: tuple[Program, int],
                                                              case: str) -> None:
    program, port = server
    frame, expected = CASES[case]
    sock, client = _open_websocket(port)
    with sock:
        # the WebSocket works: one echo, wsproto on the client's side
        sock.sendall(client.send(TextMessage(data="ping")))
        sock.settimeout(TIMEOUT)
        echoed: list[object] = []
        while not any(isinstance(event, TextMessage) for event in echoed):
            client.receive_data(sock.recv(65536))
            echoed += list(client.events())
        sent_at = time.monotonic()
        sock.sendall(frame)
        code = _close_code(sock, client)
        took = time.monotonic() - sent_at
    assert code == expected, f"{case}: close code {code}"
    assert took < 5, f"{case}: closed after {took:.1f} s"
    assert "Traceback" not in program.output


def test_a_big_message_under_the_limit_is_still_echoed(server: tuple[Program, int]) -> None:
    """A message of 4 MiB (under hypercorn's 16 MiB limit), in one frame, is echoed."""
    program, port = server
    sock, client = _open_websocket(port)
    payload = os.urandom(4 * 2**20)
    with sock:
        sock.sendall(client.send(BytesMessage(data=payload)))
        received = bytearray()
        while len(received) < len(payload):
            data = sock.recv(1 << 20)
            assert data, "closed before the echo"
            client.receive_data(data)
            for event in client.events():
                assert isinstance(event, BytesMessage), event
                received += event.data
    assert bytes(received) == payload


def _header(first_byte: int, length: int) -> bytes:
    """A masked client frame header declaring ``length`` payload bytes (key 0000)."""
    if length < 126:
        return bytes([first_byte, 0x80 | length]) + bytes(4)
    if length < 2**16:
        return bytes([first_byte, 0x80 | 126]) + struct.pack("!H", length) + bytes(4)
    return bytes([first_byte, 0x80 | 127]) + struct.pack("!Q", length) + bytes(4)


def test_message_lengths_reads_headers_split_across_feeds_and_counts_fragments() -> None:
    lengths = MessageLengths(1000)
    stream = (_header(0x81, 5) + b"hello"           # a whole text message
              + _header(0x02, 600) + bytes(600)      # a binary message's first fragment
              + _header(0x89, 4) + b"ping"           # a control frame between fragments
              + _header(0x80, 400) + bytes(400))     # its last: 1000 bytes in all
    assert all(lengths.feed(stream[at:at + 1]) is None for at in range(len(stream)))
    big = _header(0x02, 600) + bytes(600) + _header(0x80, 401)
    over = lengths.feed(big)
    assert over == len(_header(0x02, 600)) + 600  # the header that takes it past 1000
    assert MessageLengths(2**62 - 1).feed(_header(0x82, 2**62)[:3]) is None
    split = MessageLengths(16)
    assert split.feed(_header(0x82, 2**62)[:5]) is None
    assert split.feed(_header(0x82, 2**62)[5:]) == 0  # the header began in an earlier feed
