"""Raw HTTP/2 for tests that send what a well-behaved client would not: frames written by
hand (hyperframe, HPACK from the ``hpack`` library) on a plain or TLS socket, and what the
server answered, frame by frame."""

from __future__ import annotations

import dataclasses
import socket
import ssl
import time
from collections.abc import Iterable

import hpack
from hyperframe.frame import ContinuationFrame, HeadersFrame, RstStreamFrame, SettingsFrame

PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"
ENHANCE_YOUR_CALM = 0xB
PROTOCOL_ERROR = 0x1
_SETTINGS, _PING, _GOAWAY, _RST_STREAM, _HEADERS = 0x4, 0x6, 0x7, 0x3, 0x1


@dataclasses.dataclass
class Answer:
    """What the server sent on one connection until it closed it (or the wait ended)."""

    frames: list[tuple[int, int, int, bytes]]  # (type, flags, stream id, payload)
    closed: bool

    def count(self, kind: int, *, ack: bool | None = None) -> int:
        return sum(1 for t, f, _, _ in self.frames
                   if t == kind and (ack is None or bool(f & 1) == ack))

    @property
    def goaway(self) -> int | None:
        """The error code of the server's GOAWAY, None if it sent none."""
        codes = [int.from_bytes(p[4:8], "big") for t, _, _, p in self.frames if t == _GOAWAY]
        return codes[-1] if codes else None

    def responses(self) -> list[int]:
        """The stream ids the server sent HEADERS on."""
        return [s for t, _, s, _ in self.frames if t == _HEADERS]


def parse(data: bytes) -> list[tuple[int, int, int, bytes]]:
    frames, offset = [], 0
    while offset + 9 <= len(data):
        length = int.from_bytes(data[offset:offset + 3], "big")
        kind, flags = data[offset + 3], data[offset + 4]
        stream = int.from_bytes(data[offset + 5:offset + 9], "big") & 0x7FFFFFFF
        frames.append((kind, flags, stream, data[offset + 9:offset + 9 + length]))
        offset += 9 + length
    return frames


class RawH2:
    """One HTTP/2 connection of raw frames: cleartext prior knowledge, or TLS with ALPN h2."""

    def __init__(self, host: str, port: int, *, tls: ssl.SSLContext | None = None,
                 timeout: float = 10):
        sock = socket.create_connection((host, port), timeout=timeout)
        if tls is not None:
            tls.set_alpn_protocols(["h2"])
            sock = tls.wrap_socket(sock, server_hostname=host)
            assert sock.selected_alpn_protocol() == "h2"
        self.sock = sock
        self.encoder = hpack.Encoder()
        self.authority = f"{host}:{port}"
        self.scheme = "https" if tls is not None else "http"
        self.sent_frames = 0
        self.send_failed: OSError | None = None
        self.sock.sendall(PREFACE + SettingsFrame(0).serialize()
                          + SettingsFrame(0, flags=["ACK"]).serialize())

    @classmethod
    def adopt(cls, sock: socket.socket, authority: str = "localhost") -> RawH2:
        """A connection on ``sock`` that has not sent the preface yet (e.g. after an h2c
        upgrade request)."""
        self = cls.__new__(cls)
        self.sock, self.encoder = sock, hpack.Encoder()
        self.authority, self.scheme = authority, "http"
        self.sent_frames, self.send_failed = 0, None
        return self

    def request_block(self, path: str = "/", method: str = "GET",
                      extra: Iterable[tuple[str, str]] = ()) -> bytes:
        return self.encoder.encode([(":method", method), (":path", path),
                                    (":scheme", self.scheme), (":authority", self.authority),
                                    *extra])

    def headers(self, stream_id: int, path: str = "/", *, end_stream: bool = True) -> bytes:
        flags = ["END_HEADERS"] + (["END_STREAM"] if end_stream else [])
        return HeadersFrame(stream_id, self.request_block(path), flags=flags).serialize()

    def rapid_reset(self, stream_id: int) -> bytes:
        return self.headers(stream_id) + RstStreamFrame(stream_id, error_code=8).serialize()

    def continuation_flood_start(self, stream_id: int) -> bytes:
        return HeadersFrame(stream_id, self.request_block("/"), flags=[]).serialize()

    @staticmethod
    def continuation(stream_id: int, data: bytes) -> bytes:
        return ContinuationFrame(stream_id, data).serialize()

    def send(self, data: bytes, frames: int) -> bool:
        """Send ``data`` (``frames`` frames); False once the server has closed."""
        if self.send_failed is not None:
            return False
        try:
            self.sock.sendall(data)
        except OSError as error:
            self.send_failed = error
            return False
        self.sent_frames += frames
        return True

    def flood(self, batch: bytes, frames_per_batch: int, batches: int, *,
              pause: float = 0.0) -> None:
        for _ in range(batches):
            if not self.send(batch, frames_per_batch):
                return
            if pause:
                time.sleep(pause)

    def answer(self, wait: float = 10) -> Answer:
        """Read until the server closes the connection (or ``wait`` seconds pass)."""
        data = bytearray()
        closed = False
        deadline = time.monotonic() + wait
        while time.monotonic() < deadline:
            self.sock.settimeout(max(deadline - time.monotonic(), 0.01))
            try:
                chunk = self.sock.recv(65536)
            except (TimeoutError, socket.timeout):
                break
            except (ConnectionResetError, ssl.SSLError, OSError):
                closed = True
                break
            if not chunk:
                closed = True
                break
            data += chunk
        return Answer(parse(bytes(data)), closed)

    def read_responses(self, count: int, wait: float = 10) -> int:
        """Read until the server has ended ``count`` streams (or closed, or ``wait`` seconds
        passed); how many it ended."""
        data, ended = b"", 0
        deadline = time.monotonic() + wait
        while ended < count and time.monotonic() < deadline:
            self.sock.settimeout(max(deadline - time.monotonic(), 0.01))
            try:
                chunk = self.sock.recv(65536)
            except OSError:
                break
            if not chunk:
                break
            data += chunk
            frames = parse(data)
            ended = sum(1 for kind, flags, stream, _ in frames
                        if kind in (0x0, 0x1) and flags & 0x1 and stream)
        return ended

    def close(self) -> None:
        self.sock.close()
