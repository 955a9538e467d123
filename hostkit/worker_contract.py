"""The supervisor's contract with its worker processes: the one place that knows it (SPEC §8).

A supervisor binds every ``urls`` entry once and starts each worker with

- the listening sockets, inherited under the same descriptor numbers, named in
  ``HOSTKIT_WORKER_LISTENERS`` as ``FD URL`` pairs separated by ``;``;
- its end of a socket pair to the supervisor, the *channel*, named in
  ``HOSTKIT_WORKER_CHANNEL``.

The worker's side: :func:`current_worker` reads the contract once (and removes the variables,
so the processes a worker starts, an OutOfProcess worker's children, do not take it for
theirs); :func:`hostkit.listeners.bind_all` then hands out the inherited sockets instead of
binding; the host reports :data:`READY` on the channel once it has started (listeners
accepting, lifespan done), and later its health and its wish to be recycled (one line per
message, :meth:`WorkerContract.send`). The supervisor's side: :meth:`WorkerContract.new` and
:class:`SupervisorChannel`. A worker that exits closes its end, which the supervisor reads
as the end of the channel.
"""

from __future__ import annotations

import dataclasses
import os
import socket
from collections.abc import Mapping, MutableMapping, Sequence

import anyio

LISTENERS_VARIABLE = "HOSTKIT_WORKER_LISTENERS"
CHANNEL_VARIABLE = "HOSTKIT_WORKER_CHANNEL"
VARIABLES = frozenset({LISTENERS_VARIABLE, CHANNEL_VARIABLE})

#: What a worker sends once its host has started (a line, as every message on the channel).
READY = "ready"
#: ``recycle REASON``: the worker asks to be replaced (``max_requests``).
RECYCLE = "recycle"
#: ``health ok`` / ``health failed REASON``: the result of its latest probe of
#: ``[health] app_path``, every ``app_interval`` seconds.
HEALTH_OK = "health ok"
HEALTH_FAILED = "health failed"


@dataclasses.dataclass(frozen=True)
class WorkerContract:
    """What one worker start gets: ``listeners`` (descriptor, URL as served) and the
    descriptor of its ``channel`` end."""

    listeners: tuple[tuple[int, str], ...]
    channel: int

    @classmethod
    def new(cls, listeners: Sequence[tuple[socket.socket, str]]
            ) -> tuple[WorkerContract, SupervisorChannel, socket.socket]:
        """A contract for one worker start, made by the supervisor from its bound sockets.

        Returns the contract, the supervisor's end of the channel, and the worker's end,
        which the supervisor passes to the worker (``ProcessSpec.pass_fds``) and then closes.
        """
        mine, theirs = socket.socketpair()
        mine.setblocking(False)
        contract = cls(tuple((sock.fileno(), url) for sock, url in listeners), theirs.fileno())
        return contract, SupervisorChannel(mine), theirs

    @property
    def descriptors(self) -> tuple[int, ...]:
        """Every descriptor the worker inherits."""
        return (*(fd for fd, _ in self.listeners), self.channel)

    def to_environ(self) -> dict[str, str]:
        """The variables to put in the worker's environment."""
        return {LISTENERS_VARIABLE: ";".join(f"{fd} {url}" for fd, url in self.listeners),
                CHANNEL_VARIABLE: str(self.channel)}

    @classmethod
    def from_environ(cls, environ: Mapping[str, str]) -> WorkerContract | None:
        """The contract in ``environ``, or ``None`` unless both variables are present.

        Raises ``ValueError`` naming the variable when one is malformed.
        """
        if not VARIABLES <= environ.keys():
            return None
        listeners = []
        for item in filter(None, environ[LISTENERS_VARIABLE].split(";")):
            fd, _, url = item.partition(" ")
            if not fd.isdigit() or not url:
                raise ValueError(f"{LISTENERS_VARIABLE}: {item!r} is not 'FD URL'")
            listeners.append((int(fd), url))
        channel = environ[CHANNEL_VARIABLE]
        if not channel.isdigit():
            raise ValueError(f"{CHANNEL_VARIABLE}={channel!r} is not a descriptor number")
        return cls(tuple(listeners), int(channel))

    def listening_sockets(self) -> list[tuple[str, socket.socket]]:
        """The inherited listening sockets with the URL each serves, in ``urls`` order."""
        sockets = []
        for fd, url in self.listeners:
            sock = socket.socket(fileno=fd)
            sock.setblocking(False)
            sockets.append((url, sock))
        return sockets

    def send(self, message: str) -> None:
        """Send one message line to the supervisor (:data:`READY`, :data:`RECYCLE` …).

        A supervisor that is gone (the channel is broken) is not this worker's problem: the
        kernel's parent-death signal ends the worker anyway.
        """
        try:
            os.write(self.channel, message.encode("utf-8", "replace") + b"\n")
        except OSError:
            pass

    def report_ready(self) -> None:
        """Tell the supervisor this worker serves (called once, when the host started)."""
        self.send(READY)


_UNREAD = object()
_current: object = _UNREAD


def current_worker(environ: MutableMapping[str, str] | None = None) -> WorkerContract | None:
    """This process's contract when a supervisor started it, else ``None``.

    Read from ``environ`` (default ``os.environ``) on the first call and kept; the variables
    are removed from it then. Raises ``ValueError`` for a malformed contract.
    """
    global _current
    if _current is _UNREAD:
        environ = os.environ if environ is None else environ
        contract = WorkerContract.from_environ(environ)
        for name in VARIABLES:
            environ.pop(name, None)
        _current = contract
    return _current  # type: ignore[return-value]


class SupervisorChannel:
    """The supervisor's end of one worker's channel: the lines the worker sends."""

    def __init__(self, sock: socket.socket):
        self._sock = sock
        self._received = b""

    async def receive(self) -> str | None:
        """The next message line; ``None`` once the channel ended (the worker exited)."""
        while b"\n" not in self._received:
            await anyio.wait_readable(self._sock)
            try:
                data = self._sock.recv(4096)
            except BlockingIOError:
                continue
            except OSError:
                return None
            if not data:
                return None
            self._received += data
        line, _, self._received = self._received.partition(b"\n")
        return line.decode("utf-8", "replace")

    async def wait_ready(self) -> bool:
        """Wait for the worker's :data:`READY`; ``False`` when the channel ended first."""
        while (message := await self.receive()) is not None:
            if message == READY:
                return True
        return False

    def close(self) -> None:
        self._sock.close()
