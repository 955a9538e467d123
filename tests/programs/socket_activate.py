"""Start a program the way systemd's socket activation does (``systemd-socket-activate``).

Usage: ``python socket_activate.py ADDRESS [ADDRESS ...] -- PROGRAM [ARGUMENT ...]``, with
ADDRESS ``tcp:HOST:PORT`` (port 0: any free port) or ``unix:PATH``. It binds and listens on
each address, puts the sockets on descriptors 3, 4 … in that order, sets ``LISTEN_FDS`` and
``LISTEN_PID`` (its own pid, which ``exec`` keeps) and becomes PROGRAM.
"""

from __future__ import annotations

import fcntl
import os
import socket
import sys

FIRST = 3


def listen(address: str) -> socket.socket:
    kind, _, rest = address.partition(":")
    if kind == "unix":
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.bind(rest)
    elif kind == "tcp":
        host, _, port = rest.rpartition(":")
        sock = socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET,
                             socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((host, int(port)))
    else:
        raise SystemExit(f"socket_activate: {address!r} is not tcp:HOST:PORT or unix:PATH")
    sock.listen(128)
    return sock


def main(argv: list[str]) -> None:
    if "--" not in argv:
        raise SystemExit(__doc__)
    split = argv.index("--")
    addresses, program = argv[:split], argv[split + 1:]
    sockets = [listen(address) for address in addresses]
    # Out of the way first, so that moving one onto 3, 4 … never closes another.
    parked = [fcntl.fcntl(sock.fileno(), fcntl.F_DUPFD, 100) for sock in sockets]
    for sock in sockets:
        sock.close()
    for index, fd in enumerate(parked):
        os.dup2(fd, FIRST + index)  # inheritable: the program gets it
        os.close(fd)
    os.environ["LISTEN_FDS"] = str(len(parked))
    os.environ["LISTEN_PID"] = str(os.getpid())
    os.execvp(program[0], program)


if __name__ == "__main__":
    main(sys.argv[1:])
