"""What a connection's writes may hold, and what a write finds when its client has left.

A slow reader costs a bounded buffer: on asyncio, every write of a connection waits until its
transport's buffer has drained below the low-water mark before it adds more, and adds at
most :data:`PIECE` bytes at a time, so however large a chunk the app sends, the transport
holds at most :data:`HIGH_WATER` + :data:`PIECE` bytes of it (:func:`write_bounded`). On
trio a write sends straight from the app's chunk and holds no copy.

A client that has left ends its requests at once: the connection's server
(``hypercorn_internals.py``) stops writing, stops reading (a pipelined request behind the
one being answered is not started) and closes; the app's next ``send`` raises
:class:`ClientGone`, which the request stage takes as the client's departure, not an error
(nothing is logged), and which an app that lets it escape has its connection end quietly.
A ``send`` the server itself makes from outside an app's task (an error answer, an HTTP/2
frame) is dropped instead (:func:`client_gone`).
"""

from __future__ import annotations

import asyncio
import contextvars

import hostkit

#: The most bytes one write adds to an asyncio transport's buffer.
PIECE = 16 * 1024
#: An asyncio transport's high-water mark: a write waits while its buffer holds more than
#: this (and resumes below a quarter of it, asyncio's low-water mark).
HIGH_WATER = 16 * 1024


class ClientGone(hostkit.ClientDisconnected, ConnectionError):
    """Raised by an app's ``send`` once the client of its connection has gone away.

    An :class:`OSError`, as ASGI 2.4 asks of a server, and a
    :class:`hostkit.ClientDisconnected`, which the request stage ends the request on
    quietly."""


#: True in an app's task (the server's app wrapper sets it when it calls the app): a send
#: there raises :class:`ClientGone`; elsewhere it is dropped.
IN_APP: contextvars.ContextVar[bool] = contextvars.ContextVar("hostkit_inprocess_in_app",
                                                               default=False)


def client_gone() -> None:
    """Called by a connection's send once its client has gone: raises :class:`ClientGone` in
    an app's task, returns (the bytes are dropped) anywhere else."""
    if IN_APP.get():
        raise ClientGone("the client has gone away")


def limit_buffer(writer: asyncio.StreamWriter) -> None:
    """Give a new asyncio connection's transport the water marks :func:`write_bounded`
    waits on."""
    writer.transport.set_write_buffer_limits(high=HIGH_WATER)


async def write_bounded(writer: asyncio.StreamWriter, data: bytes) -> bool:
    """Write ``data`` to an asyncio connection: in pieces of at most :data:`PIECE` bytes
    (views of ``data``, not copies), each after the transport's buffer has drained below
    its low-water mark. Returns once the last piece is in the buffer: True, or False when
    the client has gone (the transport is closing or the write failed) and nothing more
    can be written to it.

    ``drain()`` raises once at most here: after a read error it raises that same exception
    again on every call, its traceback growing by the caller's frames, and the data they
    hold, each time."""
    transport = writer.transport
    if len(data) <= PIECE:
        if transport.is_closing():
            return False
        try:
            writer.write(data)
            await writer.drain()
        except (ConnectionError, RuntimeError):
            return False
        return True
    view = memoryview(data)
    try:
        for start in range(0, len(view), PIECE):
            if transport.is_closing():
                return False
            writer.write(view[start:start + PIECE])
            await writer.drain()
    except (ConnectionError, RuntimeError):
        return False
    return True
