"""What the supervisor answers itself while no worker is up: 503, as HTTP.sys does for an
application pool WAS has stopped.

Only then does the supervisor accept connections on the listening sockets it shares with its
workers; the rest of the time the kernel hands every connection to a worker. Each connection
gets one answer and is closed: ``503 Service Unavailable`` with ``Retry-After`` (the seconds
until the rapid-fail budget allows a start) and an error page, or with the offline file's
content while the app is offline. The health paths are answered as a worker would: liveness
200, readiness 503 with the reason (``offline``, ``rapid-failed``: the check
:func:`unavailable_reason` adds to the supervisor's readiness). Every answer carries an
``X-Request-Id``. A request head that is malformed gets 400, one that takes longer than the
head deadline gets nothing.
"""

from __future__ import annotations

import logging
import socket
import ssl

import anyio
import h11
from anyio.abc import SocketStream, TaskGroup
from anyio.streams.tls import TLSStream

from hostkit.error_pages import render
from hostkit.gateway import RETRY_AFTER_HEADER, Gateway
from hostkit.request_ids import REQUEST_ID_HEADER
from hostkit.status_lines import STANDARD_PHRASES, status_line
from hostkit.supervisor.pool import Unavailable, WorkerPool

logger = logging.getLogger("hostkit.supervisor")

_READ_SIZE = 65536
# Seconds an answer may take to be written to a client that does not read it.
_WRITE_TIMEOUT = 10.0
_UNAVAILABLE_PAGE = render(
    "503 Service Unavailable",
    "No worker process is running: they failed too often and are restarted shortly.")


def unavailable_reason(pool: WorkerPool) -> str | None:
    """Why the supervisor is not ready: ``offline`` or ``rapid-failed`` while it answers
    itself; None while a worker serves or starts (the workers answer readiness then)."""
    unavailable = pool.unavailable()
    if unavailable is None:
        return None
    return "offline" if unavailable.content is not None else "rapid-failed"


def _response(status: int, body: bytes, content_type: bytes,
              extra: list[tuple[bytes, bytes]]) -> h11.Response:
    return h11.Response(status_code=status, reason=STANDARD_PHRASES[status], headers=[
        (b"content-type", content_type), (b"content-length", str(len(body)).encode()),
        (b"connection", b"close"), *extra])


async def answer(stream: anyio.abc.ByteStream, unavailable: Unavailable,
                 head_timeout: float, gateway: Gateway | None = None) -> None:
    """Read one request head from ``stream`` (within ``head_timeout``) and answer it: a
    health path of ``gateway`` as it says, anything else 503."""
    connection = h11.Connection(h11.SERVER)
    request: h11.Request | None = None
    with anyio.move_on_after(head_timeout):
        try:
            while request is None:
                event = connection.next_event()
                if event is h11.NEED_DATA:
                    try:
                        connection.receive_data(await stream.receive(_READ_SIZE))
                    except (anyio.EndOfStream, anyio.BrokenResourceError):
                        connection.receive_data(b"")
                elif isinstance(event, h11.Request):
                    request = event
                else:  # the client closed before a whole head
                    return
        except h11.RemoteProtocolError:
            await _send(stream, connection, 400, b"", b"text/plain", [], with_body=True)
            return
    if request is None:
        return
    extra: list[tuple[bytes, bytes]] = []
    if gateway is not None:
        extra.append((REQUEST_ID_HEADER, gateway.new_request_id().encode()))
        path = request.target.partition(b"?")[0].decode("latin-1")
        health = gateway.health_answer(path)
        if health is not None:
            status, body = health
            if status == 503:
                extra.append(RETRY_AFTER_HEADER)
            await _send(stream, connection, status, body, b"text/plain; charset=utf-8", extra,
                        with_body=request.method != b"HEAD")
            return
    if unavailable.content is not None:
        body, content_type = unavailable.content, b"text/html"
    else:
        body, content_type = _UNAVAILABLE_PAGE, b"text/html; charset=utf-8"
        extra.append((b"retry-after", str(unavailable.retry_after).encode()))
    await _send(stream, connection, 503, body, content_type, extra,
                with_body=request.method != b"HEAD")


async def _send(stream: anyio.abc.ByteStream, connection: h11.Connection, status: int,
                body: bytes, content_type: bytes, extra: list[tuple[bytes, bytes]], *,
                with_body: bool) -> None:
    if connection.their_state is h11.ERROR or connection.our_state is not h11.SEND_RESPONSE:
        connection = h11.Connection(h11.SERVER)  # a bad head: answer without its context
        data = status_line(status) + b"content-length: 0\r\nconnection: close\r\n\r\n"
    else:
        data = connection.send(_response(status, body, content_type, extra)) or b""
        if with_body:
            data += connection.send(h11.Data(data=body)) or b""
        data += connection.send(h11.EndOfMessage()) or b""
    with anyio.move_on_after(_WRITE_TIMEOUT):
        try:
            await stream.send(data)
        except (anyio.BrokenResourceError, anyio.ClosedResourceError):
            pass


async def answer_while_unavailable(pool: WorkerPool,
                                   listeners: list[tuple[socket.socket, ssl.SSLContext | None]],
                                   connections: TaskGroup, head_timeout: float,
                                   gateway: Gateway | None = None) -> None:
    """Accept on ``listeners`` whenever :meth:`WorkerPool.unavailable` says no worker is up,
    and stop accepting as soon as one is; runs until cancelled. Answers run in
    ``connections``, so one accepted just before a worker came up is still answered. The
    ``gateway``'s readiness is told of every change (its ``ready`` metric)."""
    while True:
        while pool.unavailable() is None:
            await pool.wait_changed()
        if gateway is not None:
            gateway.readiness.refresh()
        async with anyio.create_task_group() as accepting:
            for sock, tls in listeners:
                accepting.start_soon(_accept, pool, sock, tls, connections, head_timeout,
                                     gateway)
            while pool.unavailable() is not None:
                await pool.wait_changed()
            accepting.cancel_scope.cancel()
        if gateway is not None:
            gateway.readiness.refresh()


async def _accept(pool: WorkerPool, sock: socket.socket, tls: ssl.SSLContext | None,
                  connections: TaskGroup, head_timeout: float, gateway: Gateway | None) -> None:
    while True:
        await anyio.wait_readable(sock)
        try:
            client, _ = sock.accept()
        except (BlockingIOError, InterruptedError, ConnectionAbortedError):
            continue  # a worker took it, or the client left
        unavailable = pool.unavailable()
        if unavailable is None:
            unavailable = Unavailable(None, 1)  # a worker came up just now
        connections.start_soon(_serve, client, tls, unavailable, head_timeout, gateway)


async def _serve(client: socket.socket, tls: ssl.SSLContext | None, unavailable: Unavailable,
                 head_timeout: float, gateway: Gateway | None) -> None:
    client.setblocking(False)
    stream: anyio.abc.ByteStream = await SocketStream.from_socket(client)
    try:
        if tls is not None:
            with anyio.fail_after(head_timeout):
                stream = await TLSStream.wrap(stream, server_side=True, ssl_context=tls,
                                              standard_compatible=False)
        await answer(stream, unavailable, head_timeout, gateway)
    except (TimeoutError, OSError, anyio.BrokenResourceError, ssl.SSLError):
        pass  # the client went away or could not do TLS: nothing to answer
    finally:
        with anyio.CancelScope(shield=True):
            await stream.aclose()
