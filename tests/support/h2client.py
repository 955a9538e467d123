"""A blocking HTTP/2 client for tests, on the ``h2`` library, that can also send what ``h2``
would refuse to (its outbound validation and normalisation are off) and raw frames.

:class:`H2Client` speaks cleartext prior knowledge or TLS with ALPN ``h2``; it reads with a
timeout on every wait, so a server that hangs fails the test instead of hanging it.
"""

from __future__ import annotations

import dataclasses
import socket
import ssl
import time
from collections.abc import Callable, Iterable

import h2.config
import h2.connection
import h2.events
import h2.exceptions

Header = tuple[bytes, bytes]


@dataclasses.dataclass
class H2Response:
    """What one stream got back."""

    stream_id: int
    status: int = 0
    headers: list[Header] = dataclasses.field(default_factory=list)
    body: bytearray = dataclasses.field(default_factory=bytearray)
    ended: bool = False
    reset: int | None = None  # the server's RST_STREAM error code

    def header(self, name: bytes) -> bytes | None:
        return next((v for n, v in self.headers if n == name), None)

    @property
    def done(self) -> bool:
        return self.ended or self.reset is not None


class H2Client:
    """One HTTP/2 connection to ``host:port`` (``tls``: a client context; ALPN ``h2`` is
    asked for). ``read_body``: give the window back as DATA arrives (False: a client that
    never reads, whose windows stay shut)."""

    def __init__(self, host: str, port: int, *, tls: ssl.SSLContext | None = None,
                 timeout: float = 10.0, read_body: bool = True,
                 settings: dict[int, int] | None = None):
        raw = socket.create_connection((host, port), timeout=timeout)
        if tls is not None:
            tls.set_alpn_protocols(["h2"])
            raw = tls.wrap_socket(raw, server_hostname=host)
            self.alpn = raw.selected_alpn_protocol()
        else:
            self.alpn = None
        self.sock = raw
        self.timeout = timeout
        self.read_body = read_body
        self.authority = f"{host}:{port}".encode()
        self.h2 = h2.connection.H2Connection(h2.config.H2Configuration(
            client_side=True, header_encoding=None, validate_outbound_headers=False,
            normalize_outbound_headers=False, validate_inbound_headers=False))
        if settings:
            self.h2.local_settings.update(settings)
        self.h2.initiate_connection()
        self.responses: dict[int, H2Response] = {}
        #: the server's GOAWAY error code, once one came; whether the connection closed.
        self.goaway: int | None = None
        self.closed = False
        self.flush()

    def close(self) -> None:
        try:
            self.sock.close()
        except OSError:
            pass

    def __enter__(self) -> H2Client:
        return self

    def __exit__(self, *_: object) -> None:
        self.close()

    def flush(self) -> None:
        data = self.h2.data_to_send()
        if data:
            self.send_raw(data)

    def send_raw(self, data: bytes) -> bool:
        """Write ``data`` as is; False if the server has closed the connection."""
        try:
            self.sock.sendall(data)
            return True
        except OSError:
            self.closed = True
            return False

    def request(self, method: bytes, path: bytes, headers: Iterable[Header] = (), *,
                body: bytes | None = None, end: bool = True, scheme: bytes = b"http",
                authority: bytes | None = None, pseudo: list[Header] | None = None) -> int:
        """Open a stream; its headers are ``pseudo`` (default: method, scheme, authority,
        path) then ``headers``; ``body`` (if any) follows, ending the stream when ``end``."""
        stream_id = self.h2.get_next_available_stream_id()
        if pseudo is None:
            pseudo = [(b":method", method), (b":scheme", scheme),
                      (b":authority", authority or self.authority), (b":path", path)]
        self.responses[stream_id] = H2Response(stream_id)
        self.h2.send_headers(stream_id, [*pseudo, *headers], end_stream=end and body is None)
        self.flush()
        if body is not None:
            self.send_body(stream_id, body, end=end)
        return stream_id

    def send_body(self, stream_id: int, body: bytes, *, end: bool = True) -> None:
        """Send ``body`` on the stream within the server's windows (reading while they are
        shut)."""
        view = memoryview(body)
        while view:
            window = min(self.h2.local_flow_control_window(stream_id),
                         self.h2.max_outbound_frame_size)
            if window <= 0:
                self.read_once()
                if self.closed or self.responses[stream_id].done:
                    return
                continue
            piece, view = view[:window], view[window:]
            self.h2.send_data(stream_id, piece.tobytes(), end_stream=end and not view)
            self.flush()
        if end and not body:
            self.h2.end_stream(stream_id)
            self.flush()

    def read_once(self, timeout: float | None = None) -> bool:
        """Read once (up to ``timeout``, default the client's); False when nothing came."""
        self.sock.settimeout(self.timeout if timeout is None else timeout)
        try:
            data = self.sock.recv(65536)
        except (TimeoutError, socket.timeout):
            return False
        except OSError:
            data = b""
        if not data:
            self.closed = True
            return False
        try:
            events = self.h2.receive_data(data)
        except h2.exceptions.ProtocolError:
            self.closed = True
            return True
        for event in events:
            self._handle(event)
        self.flush()
        return True

    def _handle(self, event: h2.events.Event) -> None:
        stream_id = getattr(event, "stream_id", 0)
        response = self.responses.get(stream_id)
        if isinstance(event, h2.events.ResponseReceived) and response is not None:
            response.headers = list(event.headers)
            response.status = int(dict(event.headers)[b":status"])
        elif isinstance(event, h2.events.InformationalResponseReceived):
            pass
        elif isinstance(event, h2.events.DataReceived):
            if response is not None:
                response.body += event.data
            if self.read_body and event.flow_controlled_length:
                self.h2.acknowledge_received_data(event.flow_controlled_length, stream_id)
        elif isinstance(event, h2.events.StreamEnded) and response is not None:
            response.ended = True
        elif isinstance(event, h2.events.StreamReset) and response is not None:
            response.reset = event.error_code
        elif isinstance(event, h2.events.ConnectionTerminated):
            self.goaway = event.error_code

    def wait(self, condition: Callable[[], bool], timeout: float | None = None) -> bool:
        """Read until ``condition()`` or the connection closes or ``timeout`` passes."""
        deadline = time.monotonic() + (self.timeout if timeout is None else timeout)
        while not condition():
            if self.closed or time.monotonic() >= deadline:
                return condition()
            self.read_once(max(0.01, deadline - time.monotonic()))
        return True

    def wait_closed(self, timeout: float | None = None) -> bool:
        """Read (and drop) until the server closes the connection."""
        return self.wait(lambda: self.closed, timeout)

    def response(self, stream_id: int, timeout: float | None = None) -> H2Response:
        """The stream's response once it is done (``AssertionError`` if it is not in time)."""
        response = self.responses[stream_id]
        assert self.wait(lambda: response.done, timeout), (
            f"stream {stream_id} not answered: status {response.status}, "
            f"{len(response.body)} bytes of body, reset {response.reset}, "
            f"goaway={self.goaway}, closed={self.closed}")
        return response

    def get(self, path: bytes, headers: Iterable[Header] = ()) -> H2Response:
        return self.response(self.request(b"GET", path, headers))
