"""The raw HTTP/1.1 client of the tests and suites: keep-alive, on anyio (asyncio or trio).

It sends requests as bytes the test chose (so a test can send what no polite client would)
and parses answers with httptools. Every wait is bounded by the ``timeout`` given. For a
stream of bytes without parsing (send, then read until a marker), use
:func:`hostkit.testing.connect` and :func:`hostkit.testing.receive_until`.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from types import TracebackType

import anyio
import httptools
from anyio.abc import SocketStream

Header = tuple[bytes, bytes]


class RequestFailed(Exception):
    """The request got no complete answer; ``kind`` says how (``reset``, ``closed``,
    ``timeout``, ``refused``, ``invalid``)."""

    def __init__(self, kind: str, detail: str = ""):
        super().__init__(f"{kind}: {detail}" if detail else kind)
        self.kind = kind


@dataclasses.dataclass
class Response:
    status: int = 0
    version: str = ""            # "1.1", "1.0"
    headers: list[Header] = dataclasses.field(default_factory=list)
    body: bytearray = dataclasses.field(default_factory=bytearray)
    keep_alive: bool = True
    complete: bool = False

    def header(self, name: bytes) -> bytes | None:
        return next((value for key, value in self.headers if key == name), None)


class _Parser:
    """httptools callbacks for one response."""

    def __init__(self, response: Response):
        self.response = response
        self.parser = httptools.HttpResponseParser(self)

    def on_header(self, name: bytes, value: bytes) -> None:
        self.response.headers.append((name.lower(), value))

    def on_headers_complete(self) -> None:
        self.response.status = self.parser.get_status_code()
        self.response.version = self.parser.get_http_version()

    def on_body(self, body: bytes) -> None:
        self.response.body += body

    def on_message_complete(self) -> None:
        self.response.keep_alive = self.parser.should_keep_alive()
        self.response.complete = True


def build(method: str, path: str, headers: Sequence[tuple[str, str]] = (),
          body: bytes | None = None, host: str = "test") -> bytes:
    """A request's bytes: Host first, Content-Length when there is a body."""
    lines = [f"{method} {path} HTTP/1.1", f"Host: {host}", *(f"{k}: {v}" for k, v in headers)]
    if body is not None:
        lines.append(f"Content-Length: {len(body)}")
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + (body or b"")


class HttpConnection:
    """One connection to 127.0.0.1:``port``, carrying one request at a time; connected by the
    first request (or :meth:`connect`), closed at the end of ``async with``."""

    def __init__(self, port: int):
        self.port = port
        self.stream: SocketStream | None = None
        self._rest = b""

    @property
    def connected(self) -> bool:
        return self.stream is not None

    async def connect(self, timeout: float) -> None:
        try:
            with anyio.fail_after(timeout):
                self.stream = await anyio.connect_tcp("127.0.0.1", self.port)
        except TimeoutError:
            raise RequestFailed("timeout", "connecting") from None
        except OSError as error:
            raise RequestFailed("refused", str(error)) from None
        self._rest = b""

    async def request(self, data: bytes, timeout: float, head: bool = False) -> Response:
        """Send ``data`` (one request) and read its answer; reconnects when closed.

        Raises :class:`RequestFailed`; the connection is closed after any failure.
        """
        if self.stream is None:
            await self.connect(timeout)
        assert self.stream is not None
        response = Response()
        parser = _Parser(response)
        try:
            with anyio.fail_after(timeout):
                await self.stream.send(data)
                pending, self._rest = self._rest, b""
                while not response.complete:
                    if not pending:
                        pending = await self.stream.receive(65536)
                    self._feed(parser, pending, head)
                    pending = b""
        except TimeoutError:
            await self.aclose()
            raise RequestFailed("timeout") from None
        except anyio.EndOfStream:
            await self.aclose()
            raise RequestFailed("closed", f"after {response.status or 'no'} status") from None
        except (anyio.BrokenResourceError, OSError) as error:
            await self.aclose()
            raise RequestFailed("reset", str(error)) from None
        except httptools.HttpParserError as error:
            await self.aclose()
            raise RequestFailed("invalid", str(error)) from None
        if not response.keep_alive:
            await self.aclose()
        return response

    def _feed(self, parser: _Parser, data: bytes, head: bool) -> None:
        try:
            parser.parser.feed_data(data)
        except httptools.HttpParserUpgrade:
            pass
        if head and parser.response.status and not parser.response.complete:
            parser.response.complete = True  # a response to HEAD ends with its head

    async def aclose(self) -> None:
        if self.stream is not None:
            stream, self.stream = self.stream, None
            with anyio.CancelScope(shield=True):
                await stream.aclose()

    async def __aenter__(self) -> HttpConnection:
        return self

    async def __aexit__(self, kind: type[BaseException] | None, error: BaseException | None,
                        traceback: TracebackType | None) -> None:
        await self.aclose()


async def request_once(port: int, data: bytes, timeout: float) -> Response:
    """One request on a connection of its own (:class:`RequestFailed` without an answer)."""
    async with HttpConnection(port) as connection:
        return await connection.request(data, timeout)


