"""``python -m uvicorn``, with TCP_NODELAY on the listening socket uvicorn binds itself.

Usage: ``python -m bench.uvicorn_nodelay_server [UVICORN ARGUMENTS...]``, e.g. with
``--workers 2``.

With ``--workers N`` uvicorn binds the listening socket before starting its workers
(``Config.bind_socket``) and leaves its ``proto`` at 0; the connections it accepts inherit
that, and asyncio turns TCP_NODELAY on only for sockets whose ``proto`` is TCP. Nagle's
algorithm then holds the body of every response (written after its head) until the client's
delayed ACK, about 40 ms on Linux (uvicorn issue #3149). This program sets TCP_NODELAY on the
listening socket, which Linux copies to every connection accepted from it (what gunicorn and
hypercorn do), so ``bench.workers`` can also compare with uvicorn's multi-process mode
without that stall. Everything else is uvicorn's own command line.
"""

from __future__ import annotations

import socket

import uvicorn
from uvicorn.config import Config

_bind_socket = Config.bind_socket


def bind_socket_nodelay(self: Config) -> socket.socket:
    """``Config.bind_socket``, then TCP_NODELAY on a TCP socket; called once by uvicorn's
    parent process before it starts its workers."""
    sock = _bind_socket(self)
    if sock.family in (socket.AF_INET, socket.AF_INET6):
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    return sock


if __name__ == "__main__":
    Config.bind_socket = bind_socket_nodelay  # type: ignore[method-assign]
    uvicorn.main()
