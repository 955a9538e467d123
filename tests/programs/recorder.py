"""A recording child: logs the exact bytes the module sends it, and answers every request.

Not hostkit: a plain asyncio server on ``127.0.0.1:$HOSTKIT_PORT`` (the module's child
contract), so nothing between the socket and the log can normalise what arrived. Every
``recv`` is appended to ``$RECORDER_LOG`` as one JSON line ``{"c": conn, "d": base64}``, and
the end of a connection as ``{"c": conn, "eof": true}``; the suites parse that log themselves,
with two parsers, and compare it with what the client sent.

Each request (framed with h11, to know where one ends) is answered ``200`` with
``x-recorder-serial`` (a counter over the whole process) and a JSON body describing the
request as h11 saw it, including whether it carried exactly one correct ``Hostkit-Token``.
A request h11 refuses gets ``400`` with ``x-recorder-error`` and the connection closes.

A connection whose first byte is NUL is the suites' fence, not HTTP (the module never sends
a NUL first): it is answered ``ok <number of log lines>\\n`` after every callback already
queued in this loop iteration ran, so every byte that reached this process before the fence
is in the log by then.
"""

from __future__ import annotations

import asyncio
import base64
import hmac
import itertools
import json
import os
from typing import IO

import h11

_serials = itertools.count(1)
_connections = itertools.count(1)


class Log:
    """The append-only record of everything received."""

    def __init__(self, path: str):
        self.file: IO[str] = open(path, "a", encoding="ascii")  # noqa: SIM115 - lives forever
        self.lines = 0

    def write(self, record: dict[str, object]) -> None:
        self.file.write(json.dumps(record) + "\n")
        self.file.flush()
        self.lines += 1


class Recorder(asyncio.Protocol):
    """One connection from the module: record, frame with h11, answer."""

    def __init__(self, log: Log, token: bytes):
        self.log = log
        self.token = token
        self.id = next(_connections)
        self.h11 = h11.Connection(h11.SERVER)
        self.transport: asyncio.Transport | None = None
        self.fence: bool | None = None  # decided by the first byte
        self.ended = False
        self.request: h11.Request | None = None
        self.body = bytearray()

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def data_received(self, data: bytes) -> None:
        if self.fence is None:
            self.fence = data[:1] == b"\0"
        if self.fence:
            loop = asyncio.get_running_loop()
            loop.call_soon(self._answer_fence)
            return
        self.log.write({"c": self.id, "d": base64.b64encode(data).decode("ascii")})
        self.h11.receive_data(data)
        self._answer_requests()

    def eof_received(self) -> bool:
        self._record_end()
        return False

    def connection_lost(self, error: Exception | None) -> None:
        self._record_end()

    def _record_end(self) -> None:
        if not self.fence and not self.ended:
            self.ended = True
            self.log.write({"c": self.id, "eof": True})

    def _answer_fence(self) -> None:
        assert self.transport is not None
        self.transport.write(b"ok %d\n" % self.log.lines)
        self.transport.close()

    def _answer_requests(self) -> None:
        assert self.transport is not None
        while True:
            try:
                event = self.h11.next_event()
            except h11.RemoteProtocolError as error:
                self._send_error(str(error))
                return
            if event is h11.NEED_DATA or event is h11.PAUSED:
                if self.h11.our_state is h11.MUST_CLOSE:
                    self.transport.close()
                return
            if isinstance(event, h11.Request):
                self.request, self.body = event, bytearray()
            elif isinstance(event, h11.Data):
                self.body += event.data
            elif isinstance(event, h11.EndOfMessage):
                self._send_answer()
                if self.h11.our_state is h11.DONE and self.h11.their_state is h11.DONE:
                    self.h11.start_next_cycle()
            elif isinstance(event, h11.ConnectionClosed):
                self.transport.close()
                return

    def _send_answer(self) -> None:
        assert self.request is not None and self.transport is not None
        tokens = [value for name, value in self.request.headers if name == b"hostkit-token"]
        description = json.dumps({
            "method": self.request.method.decode("latin-1"),
            "target": self.request.target.decode("latin-1"),
            "headers": [[n.decode("latin-1"), v.decode("latin-1")]
                        for n, v in self.request.headers.raw_items()],
            "body_length": len(self.body),
            "token_ok": len(tokens) == 1 and hmac.compare_digest(tokens[0], self.token),
        }).encode("ascii")
        serial = next(_serials)
        out = self.h11.send(h11.Response(status_code=200, headers=[
            (b"content-type", b"application/json"),
            (b"content-length", str(len(description)).encode("ascii")),
            (b"x-recorder-serial", str(serial).encode("ascii"))]))
        if self.request.method != b"HEAD":
            out += self.h11.send(h11.Data(data=description))
        out += self.h11.send(h11.EndOfMessage())
        self.transport.write(out)

    def _send_error(self, why: str) -> None:
        assert self.transport is not None
        if self.h11.our_state in (h11.IDLE, h11.SEND_RESPONSE):
            self.transport.write(
                b"HTTP/1.1 400 Bad Request\r\ncontent-length: 0\r\nconnection: close\r\n"
                b"x-recorder-error: " + why.encode("ascii", "replace")[:200].replace(b"\r", b" ")
                .replace(b"\n", b" ") + b"\r\n\r\n")
        self.transport.close()


async def main() -> None:
    log = Log(os.environ["RECORDER_LOG"])
    token = os.environ["HOSTKIT_TOKEN"].encode("ascii")
    loop = asyncio.get_running_loop()
    server = await loop.create_server(lambda: Recorder(log, token), "127.0.0.1",
                                      int(os.environ["HOSTKIT_PORT"]))
    print(f"recorder: listening on 127.0.0.1:{os.environ['HOSTKIT_PORT']}", flush=True)
    async with server:
        await server.serve_forever()


if __name__ == "__main__":
    asyncio.run(main())
