"""systemd's contract with the process it starts: the one place that knows it (SPEC §9).

- **Socket activation** (``sd_listen_fds(3)``): with ``LISTEN_PID`` this process's pid and
  ``LISTEN_FDS=n``, descriptors 3 … 3+n-1 are listening sockets systemd bound for it.
  :mod:`hostkit.configuration.sources` serves them as ``fd://N`` entries of ``urls`` when no
  source sets ``urls``.
- **Readiness** (``sd_notify(3)``): with ``NOTIFY_SOCKET`` set (a path, or ``@name`` for an
  abstract socket), :func:`notify` sends ``READY=1`` once the host serves and ``STOPPING=1``
  when it begins to stop.

:func:`inherited` reads the variables once per process and removes them from the
environment, as ``sd_listen_fds(unset_environment=1)`` does: the processes hostkit starts
(a supervisor's workers, a front's children) must neither take the sockets for theirs nor
tell systemd they are ready, since they are not the service's main process.
"""

from __future__ import annotations

import dataclasses
import os
import socket
from collections.abc import Mapping

LISTEN_PID_VARIABLE = "LISTEN_PID"
LISTEN_FDS_VARIABLE = "LISTEN_FDS"
LISTEN_FDNAMES_VARIABLE = "LISTEN_FDNAMES"
NOTIFY_SOCKET_VARIABLE = "NOTIFY_SOCKET"
VARIABLES = (LISTEN_PID_VARIABLE, LISTEN_FDS_VARIABLE, LISTEN_FDNAMES_VARIABLE,
             NOTIFY_SOCKET_VARIABLE)

#: The first descriptor systemd passes (``SD_LISTEN_FDS_START``).
LISTEN_FDS_START = 3


@dataclasses.dataclass(frozen=True)
class Inherited:
    """What systemd gave this process: ``listen_fds``, the descriptors of the sockets it
    activated (empty: no socket activation), and ``notify_socket``, the address of its
    notification socket (``None``: do not notify)."""

    listen_fds: tuple[int, ...] = ()
    notify_socket: str | None = None


def listen_fds(environ: Mapping[str, str], pid: int | None = None) -> tuple[int, ...]:
    """The activated descriptors ``environ`` names for the process ``pid`` (default: this
    one): empty unless ``LISTEN_PID`` is that pid and ``LISTEN_FDS`` a positive count.

    A malformed value counts as no activation, as ``sd_listen_fds`` treats it.
    """
    try:
        named_pid = int(environ.get(LISTEN_PID_VARIABLE, ""))
        count = int(environ.get(LISTEN_FDS_VARIABLE, ""))
    except ValueError:
        return ()
    if named_pid != (os.getpid() if pid is None else pid) or count < 1:
        return ()
    return tuple(range(LISTEN_FDS_START, LISTEN_FDS_START + count))


_taken: Inherited | None = None


def inherited() -> Inherited:
    """What systemd gave this process, read from ``os.environ`` on the first call and kept;
    the variables are removed from it then, so no process started later inherits them.

    Called when the configuration is loaded (before any worker or child starts) and by
    :func:`notify`.
    """
    global _taken
    if _taken is None:
        _taken = Inherited(listen_fds(os.environ),
                           os.environ.get(NOTIFY_SOCKET_VARIABLE) or None)
        for name in VARIABLES:
            os.environ.pop(name, None)
    return _taken


def notify(state: str) -> bool:
    """Send ``state`` (``"READY=1"``, ``"STOPPING=1"`` …) to systemd, when systemd asked this
    process to notify it (:func:`send` to ``NOTIFY_SOCKET``).

    Returns True when the datagram was sent; False when there is no ``NOTIFY_SOCKET`` (a
    service of another type, a worker, a child, a terminal) or sending failed.
    """
    return send(inherited().notify_socket, state)


def send(address: str | None, state: str) -> bool:
    """Send ``state`` as one datagram to the notification socket at ``address`` (a path, or
    ``@name`` for an abstract socket; None: nowhere). Returns True when it was sent.

    Never raises and never blocks: a manager that does not read its socket is not a reason
    to stop serving. Other kinds of address (``vsock:``) are not sent to.
    """
    if address is None:
        return False
    if address.startswith("@"):
        address = "\0" + address[1:]
    elif not address.startswith("/"):
        return False
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
            sock.setblocking(False)
            sock.sendto(state.encode("utf-8"), address)
    except OSError:
        return False
    return True
