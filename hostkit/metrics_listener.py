"""The metrics listener: ``GET /metrics`` on ``[metrics] urls``, in Prometheus text format.

It is a listener of its own, bound by the process that serves the metrics (a host that is
not a supervisor's worker, or the supervisor), never one of the public sockets a worker
inherits. Each connection gets one answer and is closed: ``/metrics`` (any query) answers
``GET`` and ``HEAD`` with :meth:`hostkit.metrics.Metrics.exposition` (OpenMetrics when
the ``Accept`` header asks for it, as Prometheus does), any other path 404, any
other method 405, a malformed head 400; a connection still open after
:data:`CONNECTION_TIMEOUT` is closed.
"""

from __future__ import annotations

from collections.abc import Sequence

import anyio
import h11
from anyio.abc import SocketListener, SocketStream, TaskStatus

from hostkit.listeners import bind_here, close_all
from hostkit.metrics import Metrics
from hostkit.status_lines import STANDARD_PHRASES

PATH = b"/metrics"
#: Seconds a connection may take, from its accept to the end of its answer.
CONNECTION_TIMEOUT = 10.0
_READ_SIZE = 16384


async def serve_metrics(metrics: Metrics, urls: Sequence[str], *,
                        task_status: TaskStatus[list[str]] = anyio.TASK_STATUS_IGNORED
                        ) -> None:
    """Serve ``metrics`` on ``urls`` (``[metrics] urls``) until cancelled.

    Started by the host in its task group (``await task_group.start(serve_metrics, metrics,
    options.metrics.urls)``) when ``metrics.serves``, before its server, and cancelled when
    the host has stopped; reports started with the URLs as served (a port 0 made real) once
    every one listens. Raises :class:`~hostkit.errors.AddressInUseError` /
    :class:`~hostkit.errors.HostkitError` when one cannot be bound (the others are closed).
    The listeners are this process's own (:func:`~hostkit.listeners.bind_here`), never a
    worker's inherited public sockets; the schema allows only ``http://``, ``unix:`` and
    ``fd://`` addresses.
    """
    bound = bind_here(urls, key="metrics.urls")
    try:
        async with anyio.create_task_group() as connections:
            for _, sock in bound:
                listener = await SocketListener.from_socket(sock)
                connections.start_soon(_accept, listener, metrics, connections)
            task_status.started([address.display(sock) for address, sock in bound])
    finally:
        close_all(bound)


async def _accept(listener: SocketListener, metrics: Metrics,
                  connections: anyio.abc.TaskGroup) -> None:
    while True:
        stream = await listener.accept()
        connections.start_soon(_serve, stream, metrics)


async def _serve(stream: SocketStream, metrics: Metrics) -> None:
    try:
        with anyio.move_on_after(CONNECTION_TIMEOUT):
            await _answer(stream, metrics)
    except (OSError, anyio.BrokenResourceError, anyio.ClosedResourceError):
        pass  # the client went away
    finally:
        with anyio.CancelScope(shield=True):
            await stream.aclose()


async def _answer(stream: SocketStream, metrics: Metrics) -> None:
    """Read one request head and answer it."""
    connection = h11.Connection(h11.SERVER)
    try:
        while True:
            event = connection.next_event()
            if event is h11.NEED_DATA:
                try:
                    connection.receive_data(await stream.receive(_READ_SIZE))
                except anyio.EndOfStream:
                    connection.receive_data(b"")
            elif isinstance(event, h11.Request):
                break
            else:  # the client closed before a whole head
                return
    except h11.RemoteProtocolError:
        await stream.send(b"HTTP/1.1 400 Bad Request\r\ncontent-length: 0\r\n"
                          b"connection: close\r\n\r\n")
        return
    path = event.target.partition(b"?")[0]
    extra: list[tuple[bytes, bytes]] = []
    if path != PATH:
        status, body, content_type = 404, b"not found: the metrics are at /metrics\n", b"text/plain"
    elif event.method not in (b"GET", b"HEAD"):
        status, body, content_type = 405, b"", b"text/plain"
        extra.append((b"allow", b"GET, HEAD"))
    else:
        accept = b", ".join(value for name, value in event.headers if name == b"accept")
        body, text_type = metrics.exposition(accept.decode("latin-1"))
        status, content_type = 200, text_type.encode()
    data = connection.send(h11.Response(status_code=status, reason=STANDARD_PHRASES[status],
                                        headers=[(b"content-type", content_type),
                                                 (b"content-length", str(len(body)).encode()),
                                                 (b"connection", b"close"), *extra]))
    if event.method != b"HEAD":
        data += connection.send(h11.Data(data=body))
    data += connection.send(h11.EndOfMessage())
    await stream.send(data)


__all__ = ["CONNECTION_TIMEOUT", "PATH", "serve_metrics"]
