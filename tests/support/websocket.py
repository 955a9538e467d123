"""A minimal WebSocket client on anyio streams (so it runs on asyncio and trio), using wsproto."""

from __future__ import annotations

from types import TracebackType

import anyio
from anyio.abc import ByteStream
from wsproto import ConnectionType, WSConnection
from wsproto.events import (
    AcceptConnection,
    CloseConnection,
    Event,
    RejectConnection,
    Request,
    TextMessage,
)


class WebSocketRejected(Exception):
    def __init__(self, status: int):
        super().__init__(f"handshake rejected with {status}")
        self.status = status


class WebSocket:
    """``async with WebSocket.connect(host, port, path) as ws: await ws.send(...)``"""

    def __init__(self, stream: ByteStream, connection: WSConnection):
        self.stream = stream
        self.connection = connection
        self.pending: list[Event] = []

    @classmethod
    async def connect(cls, host: str, port: int, path: str) -> WebSocket:
        stream = await anyio.connect_tcp(host, port)
        connection = WSConnection(ConnectionType.CLIENT)
        socket = cls(stream, connection)
        await socket._send(Request(host=f"{host}:{port}", target=path))
        event = await socket.next_event()
        if isinstance(event, RejectConnection):
            await stream.aclose()
            raise WebSocketRejected(event.status_code)
        assert isinstance(event, AcceptConnection), event
        return socket

    async def _send(self, event: Event) -> None:
        await self.stream.send(self.connection.send(event))

    async def next_event(self) -> Event:
        while not self.pending:
            data = await self.stream.receive()
            self.connection.receive_data(data)
            self.pending.extend(self.connection.events())
        return self.pending.pop(0)

    async def send(self, text: str) -> None:
        await self._send(TextMessage(data=text))

    async def receive(self) -> str | CloseConnection:
        text = ""
        while True:
            event = await self.next_event()
            if isinstance(event, CloseConnection):
                return event
            if isinstance(event, TextMessage):
                text += event.data
                if event.message_finished:
                    return text

    async def __aenter__(self) -> WebSocket:
        return self

    async def __aexit__(self, kind: type[BaseException] | None, error: BaseException | None,
                        traceback: TracebackType | None) -> None:
        try:
            await self._send(CloseConnection(code=1000))
        except Exception:  # already closed by the server
            pass
        await self.stream.aclose()
