"""Raw HTTP/1.1 over real sockets, for what a high-level client cannot do: send malformed
bytes, stream a body while reading the answer, or leave in the middle of a request.

The async functions work on asyncio and trio (anyio); every function is bounded in time.
"""

from __future__ import annotations

import socket
import ssl

import anyio
import h11
from anyio.abc import ByteStream


async def connect(url: str) -> ByteStream:
    """A connection to a listen URL as a host logs it: ``http://HOST:PORT`` or ``unix:/PATH``.

    The caller closes it (``await stream.aclose()``) and bounds the time (``anyio.fail_after``).
    """
    if url.startswith("unix:"):
        return await anyio.connect_unix(url[len("unix:"):])
    host, _, port = url.removeprefix("http://").rstrip("/").rpartition(":")
    return await anyio.connect_tcp(host.strip("[]"), int(port))


async def receive_until(stream: ByteStream, marker: bytes, received: bytes = b"") -> bytes:
    """Read until ``marker`` is in what was received (or the peer closes); returns all of it."""
    while marker not in received:
        try:
            received += await stream.receive()
        except (anyio.EndOfStream, anyio.BrokenResourceError):
            break
    return received


async def request_on(stream: ByteStream, connection: h11.Connection, method: str,
                     target: str) -> tuple[int, bytes]:
    """Send one bodiless request on ``stream`` and read its whole answer with ``connection``
    (an ``h11.Connection(h11.CLIENT)``), which is then ready for the next request.

    Returns the status code and the body. The caller bounds the time.
    """
    await stream.send(connection.send(h11.Request(method=method, target=target,
                                                  headers=[("host", "conformance")]))
                      + connection.send(h11.EndOfMessage()))
    status, body = 0, b""
    while True:
        event = connection.next_event()
        if event is h11.NEED_DATA:
            connection.receive_data(await stream.receive())
        elif isinstance(event, h11.Response):
            status = event.status_code
        elif isinstance(event, h11.Data):
            body += event.data
        elif isinstance(event, h11.EndOfMessage):
            connection.start_next_cycle()
            return status, body
        elif isinstance(event, h11.ConnectionClosed):
            raise anyio.EndOfStream(f"the server closed the connection during {target}")


async def raw_exchange(url: str, data: bytes, timeout: float = 15) -> bytes:
    """Send raw bytes to ``url`` and return the answer's head (or what came before a close)."""
    with anyio.fail_after(timeout):
        stream = await connect(url)
        try:
            await stream.send(data)
            return await receive_until(stream, b"\r\n\r\n")
        finally:
            await stream.aclose()


def status_now(url: str, path: str = "/", timeout: float = 5,
               tls: ssl.SSLContext | None = None) -> int:
    """Connect to ``url`` once, right now (no retry), GET ``path``; the answer's status code.

    For readiness checks: a server that says it listens must accept at once. Blocking, so it
    can run the moment a program logs a line; raises ``OSError`` when nothing accepts and
    ``ValueError`` when the answer is not HTTP/1.1.
    """
    if url.startswith("unix:"):
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.settimeout(timeout)
        sock.connect(url[len("unix:"):])
    else:
        host, _, port = url.split("://", 1)[1].rstrip("/").rpartition(":")
        sock = socket.create_connection((host.strip("[]"), int(port)), timeout=timeout)
        if tls is not None:
            sock = tls.wrap_socket(sock, server_hostname=host.strip("[]"))
    with sock:
        sock.sendall(f"GET {path} HTTP/1.1\r\nHost: conformance\r\nConnection: close\r\n\r\n"
                     .encode())
        head = b""
        while b"\r\n" not in head:
            chunk = sock.recv(4096)
            if not chunk:
                break
            head += chunk
    status_line = head.split(b"\r\n", 1)[0].split()
    if len(status_line) < 2 or status_line[0] != b"HTTP/1.1":
        raise ValueError(f"{url}{path} answered {head[:80]!r}, not HTTP/1.1")
    return int(status_line[1])
