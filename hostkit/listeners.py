"""Listen addresses: parsing ``urls`` entries, binding them, and closing what was bound.

Every server that owns a public listener (the embedded servers, the out-of-process front,
the supervisor) binds with :func:`bind_all` before it reports readiness and closes with
:func:`close_all` in a ``finally``, so the errors a user sees and the socket files left
behind are the same whatever the server. In a worker of the supervisor, :func:`bind_all`
binds nothing: it hands out the sockets the supervisor bound (:mod:`hostkit.worker_contract`).
"""

from __future__ import annotations

import dataclasses
import errno
import os
import socket
import stat
import urllib.parse

from hostkit.errors import AddressInUseError, ConfigurationError, HostkitError
from hostkit.worker_contract import current_worker

BACKLOG = 1024


@dataclasses.dataclass(frozen=True)
class ListenAddress:
    """One entry of ``urls``: ``scheme`` is http, https or unix."""

    url: str
    scheme: str
    host: str = ""
    port: int = 0
    path: str = ""
    #: bound by another process (the supervisor) and inherited: closing it here leaves its
    #: socket file alone.
    inherited: bool = False

    @property
    def is_secure(self) -> bool:
        return self.scheme == "https"

    def display(self, bound: socket.socket | None = None) -> str:
        """The URL as it is served; with ``bound``, the real port of a port-0 address."""
        if self.scheme == "unix":
            return f"unix:{self.path}"
        port = bound.getsockname()[1] if bound is not None else self.port
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{self.scheme}://{host}:{port}"


def parse_url(url: str) -> ListenAddress:
    """Parse one ``urls`` entry. Raises :class:`ConfigurationError` when it is not one.

    The settings schema validates ``urls`` with it, so a bad entry is refused as the
    configuration is read, with its source.
    """
    if url.lower().startswith("unix:") and len(url) > len("unix:"):
        return ListenAddress(url, "unix", path=url[len("unix:"):])
    try:
        parsed = urllib.parse.urlsplit(url)
        port = parsed.port
    except ValueError:  # a port that is not a number, a [host] that is not an IP address
        parsed, port = urllib.parse.urlsplit(""), None
    scheme = parsed.scheme.lower()
    if scheme not in ("http", "https") or not parsed.hostname or parsed.path not in ("", "/"):
        raise ConfigurationError(
            f"urls: {url!r} is not a listen address; allowed: http://HOST:PORT, "
            "https://HOST:PORT or unix:/PATH")
    host = parsed.hostname
    if host in ("*", "+"):
        host = "0.0.0.0"
    if host == "localhost":
        host = "127.0.0.1"
    return ListenAddress(url, scheme, host, port if port is not None else
                         (443 if scheme == "https" else 80))


def bind(address: ListenAddress) -> socket.socket:
    """A listening socket for ``address``.

    Raises :class:`AddressInUseError` naming the address when it is taken, and
    :class:`HostkitError` for other failures, so the user sees one clear line.
    """
    if address.scheme == "unix":
        return _bind_unix(address)
    family = socket.AF_INET6 if ":" in address.host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        # Accepted connections inherit it: without it a response written as head + body
        # waits for the client's delayed ACK (about 40 ms a request).
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        sock.bind((address.host, address.port))
        sock.listen(BACKLOG)
    except OSError as error:
        sock.close()
        if error.errno == errno.EADDRINUSE:
            raise AddressInUseError(
                f"cannot listen on {address.url}: address already in use") from None
        raise HostkitError(f"cannot listen on {address.url}: {error.strerror}") from None
    sock.setblocking(False)
    return sock


def _bind_unix(address: ListenAddress) -> socket.socket:
    path = address.path
    try:
        if stat.S_ISSOCK(os.stat(path).st_mode):
            # A socket file left behind by a server that is gone; a live one refuses us below.
            probe = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            try:
                probe.connect(path)
            except OSError:
                os.unlink(path)
            else:
                raise AddressInUseError(f"cannot listen on {address.url}: address already in use")
            finally:
                probe.close()
    except FileNotFoundError:
        pass
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        sock.bind(path)
        sock.listen(BACKLOG)
    except OSError as error:
        sock.close()
        if error.errno == errno.EADDRINUSE:
            raise AddressInUseError(f"cannot listen on {address.url}: address already in use")
        raise HostkitError(f"cannot listen on {address.url}: {error.strerror}") from None
    sock.setblocking(False)
    return sock


def bind_all(urls: tuple[str, ...] | list[str]) -> list[tuple[ListenAddress, socket.socket]]:
    """Bind every URL, or none: on a failure the sockets bound so far are closed.

    In a worker of the supervisor, the sockets it inherited instead, whatever ``urls`` says:
    a worker never binds a public address itself.
    """
    worker = current_worker()
    if worker is not None:
        return [(dataclasses.replace(parse_url(url), inherited=True), sock)
                for url, sock in worker.listening_sockets()]
    bound: list[tuple[ListenAddress, socket.socket]] = []
    try:
        for url in urls:
            address = parse_url(url)
            bound.append((address, bind(address)))
    except BaseException:
        for _, sock in bound:
            sock.close()
        raise
    return bound


def close_all(bound: list[tuple[ListenAddress, socket.socket]]) -> None:
    """Close the sockets :func:`bind_all` returned and remove their unix socket files.

    Called by a server once it has stopped serving them (in a ``finally``), so a stopped
    host leaves no socket file behind.
    """
    for _, sock in bound:
        sock.close()
    for address, _ in bound:
        if address.scheme == "unix" and not address.inherited:
            try:
                os.unlink(address.path)
            except OSError:
                pass
