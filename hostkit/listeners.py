"""Listen addresses: parsing ``urls`` entries, binding them, and closing what was bound.

Every server that owns a public listener (the embedded servers, the out-of-process front,
the supervisor) binds with :func:`bind_all` before it reports readiness and closes with
:func:`close_all` in a ``finally``, so the errors a user sees and the socket files left
behind are the same whatever the server. In a worker of the supervisor, :func:`bind_all`
binds nothing: it hands out the sockets the supervisor bound (:mod:`hostkit.worker_contract`).
A listener of a process's own (the metrics listener, in a worker too) is :func:`bind_here`'s.

An ``fd://N`` entry binds nothing either: it serves the listening socket this process
inherited on descriptor N (systemd socket activation, :mod:`hostkit.systemd`, or any parent
that passed one), TCP or unix, as plain HTTP.
"""

from __future__ import annotations

import dataclasses
import errno
import os
import re
import socket
import stat
import urllib.parse
from collections.abc import Sequence

from hostkit.errors import AddressInUseError, ConfigurationError, HostkitError
from hostkit.worker_contract import current_worker

BACKLOG = 1024


@dataclasses.dataclass(frozen=True)
class ListenAddress:
    """One entry of ``urls``: ``scheme`` is http, https or unix.

    An ``fd://N`` entry has ``fd`` N and scheme http until :func:`bind_all` has looked at the
    socket: then its scheme, host and port, or path, are the socket's (a unix socket's
    scheme is unix).
    """

    url: str
    scheme: str
    host: str = ""
    port: int = 0
    path: str = ""
    #: bound by another process (the supervisor, systemd) and inherited: closing it here
    #: leaves its socket file alone.
    inherited: bool = False
    #: the inherited descriptor an ``fd://N`` entry names; None: hostkit binds the address.
    fd: int | None = None

    @property
    def is_secure(self) -> bool:
        return self.scheme == "https"

    def display(self, bound: socket.socket | None = None) -> str:
        """The URL as it is served; with ``bound``, the real port of a port-0 address. An
        ``fd://N`` entry shows its socket's address and the descriptor:
        ``http://127.0.0.1:8000 (fd://3)``."""
        if self.scheme == "unix":
            shown = f"unix:{self.path}"
        else:
            port = bound.getsockname()[1] if bound is not None else self.port
            host = f"[{self.host}]" if ":" in self.host else self.host
            shown = f"{self.scheme}://{host}:{port}"
        return shown if self.fd is None else f"{shown} (fd://{self.fd})"


#: ``fd://N``: an inherited listening socket.
_FD_URL = re.compile(r"fd://(\d+)", re.IGNORECASE)
#: What :meth:`ListenAddress.display` adds to the address of an ``fd://N`` entry.
_FD_SHOWN = re.compile(r".* \(fd://(\d+)\)", re.DOTALL)
ALLOWED_URLS = ("http://HOST:PORT, https://HOST:PORT or unix:/PATH, or fd://N (a listening "
                "socket inherited on descriptor N)")


def parse_url(url: str) -> ListenAddress:
    """Parse one ``urls`` entry. Raises :class:`ConfigurationError` when it is not one.

    ``fd://N`` is parsed as written: whether descriptor N is a listening socket is known
    only in the process that serves it, when :func:`bind_all` takes it.

    The settings schema validates ``urls`` with it, so a bad entry is refused as the
    configuration is read, with its source.
    """
    if url.lower().startswith("unix:") and len(url) > len("unix:"):
        return ListenAddress(url, "unix", path=url[len("unix:"):])
    if match := _FD_URL.fullmatch(url):
        return ListenAddress(url, "http", inherited=True, fd=int(match.group(1)))
    try:
        parsed = urllib.parse.urlsplit(url)
        port = parsed.port
    except ValueError:  # a port that is not a number, a [host] that is not an IP address
        parsed, port = urllib.parse.urlsplit(""), None
    scheme = parsed.scheme.lower()
    if scheme not in ("http", "https") or not parsed.hostname or parsed.path not in ("", "/"):
        raise ConfigurationError(f"urls: {url!r} is not a listen address; allowed: {ALLOWED_URLS}")
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
    :class:`HostkitError` for other failures, so the user sees one clear line. An
    ``fd://N`` address is not bound but taken, with its real address: :func:`bind_here`.
    """
    if address.fd is not None:
        raise ValueError(f"{address.url} is an inherited socket: bind_here() takes it")
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


def _adopt(address: ListenAddress, *, key: str = "urls",
          source: object | None = None) -> tuple[ListenAddress, socket.socket]:
    """The inherited listening socket an ``fd://N`` ``address`` names, and the address with
    the socket's own: scheme http (TCP) or unix, host and port, or path.

    Raises :class:`ConfigurationError` when descriptor N is not open, not a socket, or not a
    listening stream socket, naming ``source`` (where ``key`` was set), the key and the
    value; the descriptor is then left as it was.
    """
    assert address.fd is not None
    fd = address.fd

    def refuse(reason: str) -> ConfigurationError:
        return ConfigurationError(
            f"{_where(source)}{key}: {address.url!r} names {reason}; allowed: fd://N naming a "
            "listening socket this process inherited on descriptor N (systemd socket "
            "activation, or a parent process that passed it)")

    try:
        sock = socket.socket(fileno=fd)
    except OSError as error:
        reason = {errno.EBADF: "no open descriptor",
                  errno.ENOTSOCK: "a descriptor that is not a socket"}
        raise refuse(reason.get(error.errno or 0, f"no socket ({error.strerror})")) from None
    try:
        listening = sock.getsockopt(socket.SOL_SOCKET, socket.SO_ACCEPTCONN)
    except OSError:
        listening = 0
    if sock.family not in (socket.AF_INET, socket.AF_INET6, socket.AF_UNIX) \
            or sock.type != socket.SOCK_STREAM or not listening:
        sock.detach()  # not ours to close
        raise refuse("a socket that is not a listening TCP or unix stream socket")
    if sock.family != socket.AF_UNIX:
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)  # as bind() does
    sock.setblocking(False)
    return _inherited_address(address, sock), sock


def _where(source: object | None) -> str:
    return f"{source}: " if source is not None else ""


def _inherited_address(address: ListenAddress, sock: socket.socket) -> ListenAddress:
    """``address`` (an ``fd://N`` entry) with the address ``sock`` listens on."""
    name = sock.getsockname()
    if sock.family == socket.AF_UNIX:
        path = name.decode("utf-8", "replace") if isinstance(name, bytes) else name
        if path.startswith("\0"):  # an abstract socket, shown as systemd writes it
            path = "@" + path[1:]
        return dataclasses.replace(address, scheme="unix", path=path)
    return dataclasses.replace(address, host=name[0], port=name[1])


def _served_address(url: str, sock: socket.socket) -> ListenAddress:
    """The address of a socket a worker inherited from its supervisor, from the URL the
    supervisor serves it as (:meth:`ListenAddress.display`)."""
    if match := _FD_SHOWN.fullmatch(url):
        return _inherited_address(parse_url(f"fd://{match.group(1)}"), sock)
    return dataclasses.replace(parse_url(url), inherited=True)


def bind_all(urls: Sequence[str], *, key: str = "urls",
             source: object | None = None) -> list[tuple[ListenAddress, socket.socket]]:
    """The public listeners: :func:`bind_here`, except in a worker of the supervisor, which
    gets the sockets it inherited instead, whatever ``urls`` says (a worker never binds a
    public address itself)."""
    worker = current_worker()
    if worker is not None:
        return [(_served_address(url, sock), sock) for url, sock in worker.listening_sockets()]
    return bind_here(urls, key=key, source=source)


def bind_here(urls: Sequence[str], *, key: str = "urls",
              source: object | None = None) -> list[tuple[ListenAddress, socket.socket]]:
    """Bind every URL in this process, or none: on a failure the sockets bound so far are
    closed. For listeners of this process's own (the metrics listener, in a worker too);
    the public ones are :func:`bind_all`'s.

    An ``fd://N`` entry takes the socket inherited on descriptor N (:func:`_adopt`) instead:
    ``key`` (the setting, ``"metrics.urls"``) and ``source`` (where it was set:
    ``configuration.source_of(key)``) name the setting when it is not one.
    """
    addresses = [parse_url(url) for url in urls]
    descriptors = [address.fd for address in addresses if address.fd is not None]
    repeated = next((fd for fd in descriptors if descriptors.count(fd) > 1), None)
    if repeated is not None:
        raise ConfigurationError(f"{_where(source)}{key}: 'fd://{repeated}' is listed twice; "
                                 "each inherited socket is served once")
    bound: dict[int, tuple[ListenAddress, socket.socket]] = {}
    try:
        # Inherited sockets first: a socket bound here could otherwise take the number of a
        # descriptor an fd:// entry names but this process was not given.
        for index, address in enumerate(addresses):
            if address.fd is not None:
                bound[index] = _adopt(address, key=key, source=source)
        for index, address in enumerate(addresses):
            if address.fd is None:
                bound[index] = (address, bind(address))
    except BaseException:
        for _, sock in bound.values():
            sock.close()
        raise
    return [bound[index] for index in range(len(addresses))]


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
