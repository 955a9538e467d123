"""Trusted proxies: what a known proxy says about the client (ASP.NET Core's
ForwardedHeadersMiddleware, SPEC §9 ``[forwarded_headers]``).

The process that owns the public listener (an InProcess server, an OutOfProcess front) asks
:meth:`ForwardedHeaders.apply` once per request, when :attr:`ForwardedHeaders.enabled`. The
rules, as ASP.NET's with ``RequireHeaderSymmetry = false``:

- Nothing is read unless the immediate peer is a known proxy (``known_proxies``, or inside
  one of ``known_networks``). An IPv4-mapped IPv6 peer (``::ffff:10.0.0.1``) matches its IPv4
  entries. A peer without an address (a Unix socket) is not a known proxy.
- Entries are read right to left, at most ``forward_limit`` of them. Hop *i* is the *i*-th
  entry from the right of ``X-Forwarded-For``, of ``-Proto`` and of ``-Host`` (repeated
  headers and comma lists alike). A hop's address becomes the client; the next hop is read
  only if that address is itself a known proxy: the first address that is not is the client.
- An address that is not an IP (``X-Forwarded-For: nonsense``, RFC 7239 ``for=unknown`` or an
  obfuscated ``for=_hidden``) stops the reading there; what was read before it stays. A
  proto other than ``http`` / ``https``, or a host that is not a valid ``host[:port]``
  (ASP.NET's ``HostString`` characters, ``[v6]`` literals, a numeric port), is skipped
  without stopping.
- ``Forwarded`` (RFC 7239: ``for``, ``proto``, ``host``; quoted strings; ``"[v6]:port"``) is
  read, element by element from the right, in the same way, **only when the peer sent none
  of** ``X-Forwarded-For``, ``-Proto``, ``-Host``. The common proxies (nginx, ingress-nginx,
  Caddy, Traefik, cloud load balancers) write ``X-Forwarded-*`` and pass a client's own
  ``Forwarded`` through untouched, so letting ``Forwarded`` win would let any client behind
  them choose its address. A ``Forwarded`` value that does not parse, or an element that
  names a parameter twice, is an invalid hop (reading stops there).

Nothing here raises on header content: malformed values are ignored as above.
"""

from __future__ import annotations

import dataclasses
import functools
import ipaddress
import re
import socket
from collections.abc import Iterable, Sequence

from hostkit.configuration.tables import ForwardedHeadersOptions

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network

_FOR = b"x-forwarded-for"
_PROTO = b"x-forwarded-proto"
_HOST = b"x-forwarded-host"
_FORWARDED = b"forwarded"
_NAMES = frozenset({_FOR, _PROTO, _HOST, _FORWARDED})
_NONE: tuple[bytes, ...] = ()

#: peers whose "is it a known proxy" answer is remembered (a bounded cache: peers are many).
_PEER_CACHE_SIZE = 4096

# ASP.NET's HostString characters (Kestrel, Http.Sys): RFC 3986 reg-name without
# "*", "+", ",", ";", "=" and percent-encoding; a bracketed IPv6 literal; an optional port.
_VALID_HOST = re.compile(
    rb"(?:[!$&'()\-.0-9A-Z_a-z~]+|\[[.0-9:A-Fa-f]{3,}\])(?::[0-9]+)?\Z")

# One RFC 7239 pair (token "=" token-or-quoted-string), followed by ";", "," or the end.
# An unquoted value is read up to the separator, so that a proxy's unquoted
# ``for=192.0.2.1:4711`` is understood; the node itself is checked afterwards.
_PAIR = re.compile(
    rb"([!#$%&'*+\-.^_`|~0-9A-Za-z]+)[ \t]*=[ \t]*"
    rb"(?:\"((?:[^\"\\]|\\.)*)\"|([^\";, \t]*))[ \t]*(?=[;,]|\Z)")
_QUOTED_PAIR = re.compile(rb"\\(.)", re.DOTALL)
_PAIR_SEPARATORS = frozenset(b" \t;")
_ELEMENT_SEPARATOR = ord(",")
#: an address that stops the reading (a Forwarded element or line that does not parse).
_INVALID = b""


@dataclasses.dataclass(frozen=True, slots=True)
class ForwardedView:
    """What the app is told about a request's origin, after trusted forwarding."""

    client_ip: str | None      # the client address after trusted forwarding (None: unix socket)
    client_port: int | None    # None: not known
    scheme: str                # "http" | "https" (after forwarding)
    host: bytes | None         # the forwarded host, None: keep the request's Host
    from_known_proxy: bool     # the immediate peer is a known proxy


class ForwardedHeaders:
    """The ``[forwarded_headers]`` settings, made ready to answer per request.

    Built once per process (by the gateway); :meth:`apply` and :meth:`is_known_proxy` are
    safe to call from any task or thread.
    """

    __slots__ = ("_limit", "_networks", "_peer_known", "_proxies", "enabled")

    def __init__(self, options: ForwardedHeadersOptions) -> None:
        self._proxies: frozenset[IPAddress] = frozenset(
            _unmapped(ipaddress.ip_address(text.strip().partition("%")[0]))
            for text in options.known_proxies)
        self._networks: tuple[IPNetwork, ...] = tuple(
            ipaddress.ip_network(text.strip(), strict=False) for text in options.known_networks)
        self._limit = options.forward_limit
        #: any known proxy or network: when False, callers skip :meth:`apply` altogether.
        self.enabled = bool(self._proxies or self._networks)
        self._peer_known = functools.lru_cache(maxsize=_PEER_CACHE_SIZE)(self._text_known)

    def is_known_proxy(self, ip: str | None) -> bool:
        """Whether ``ip`` (a socket's peer address as text) is a known proxy; False for
        None (no address) and for text that is not an IP address."""
        if ip is None or not self.enabled:
            return False
        return self._peer_known(ip)

    def apply(self, peer_ip: str | None, peer_port: int | None, scheme: str,
              headers: Iterable[tuple[bytes, bytes]]) -> ForwardedView:
        """The request's origin as the app should see it; called once per request.

        ``peer_ip`` / ``peer_port`` are the socket's peer, ``scheme`` the listener's
        (``http`` / ``https``; ``ws`` / ``wss`` keep their family), ``headers`` the request's
        with lower-case names. An untrusted peer gets its own view back; never raises.
        """
        if not self.is_known_proxy(peer_ip):
            return ForwardedView(peer_ip, peer_port, scheme, None, False)
        found: dict[bytes, list[bytes]] | None = None
        for name, value in headers:
            if name in _NAMES:
                if found is None:
                    found = {}
                values = found.get(name)
                if values is None:
                    found[name] = [value]
                else:
                    values.append(value)
        if found is None:
            return ForwardedView(peer_ip, peer_port, scheme, None, True)
        limit = self._limit
        if _FOR in found or _PROTO in found or _HOST in found:
            return self._follow(_entries(found.get(_FOR, _NONE), limit),
                                _entries(found.get(_PROTO, _NONE), limit),
                                _entries(found.get(_HOST, _NONE), limit),
                                peer_ip, peer_port, scheme)
        return self._follow(*_forwarded_hops(found[_FORWARDED], limit), peer_ip, peer_port,
                            scheme)

    def _follow(self, addresses: list[bytes | None], protos: list[bytes | None],
                hosts: list[bytes | None], peer_ip: str | None, peer_port: int | None,
                scheme: str) -> ForwardedView:
        """Walk the hops, rightmost first (hop *i*: ``addresses[i]``, ``protos[i]``,
        ``hosts[i]``, None or past the end: absent), from a known peer, as ASP.NET does."""
        client_ip, client_port, host = peer_ip, peer_port, None
        for index in range(max(len(addresses), len(protos), len(hosts))):
            # the sender of this hop: the peer, or the address the previous hop named
            if index and not self._peer_known(client_ip):
                break
            address = addresses[index] if index < len(addresses) else None
            if address is not None:
                node = _parse_node(address)
                if node is None:
                    break
                client_ip, client_port = node
            proto = protos[index] if index < len(protos) else None
            if proto is not None:
                scheme = _forwarded_scheme(proto, scheme)
            name = hosts[index] if index < len(hosts) else None
            if name is not None and _VALID_HOST.match(name):
                host = name
        return ForwardedView(client_ip, client_port, scheme, host, True)

    def _text_known(self, text: str) -> bool:
        try:
            address = ipaddress.ip_address(text.partition("%")[0])
        except ValueError:
            return False
        return self._address_known(address)

    def _address_known(self, address: IPAddress) -> bool:
        address = _unmapped(address)
        return address in self._proxies or any(address in network
                                               for network in self._networks)


def _unmapped(address: IPAddress) -> IPAddress:
    """``::ffff:a.b.c.d`` as ``a.b.c.d``; any other address as it is."""
    if address.version == 6:
        mapped = address.ipv4_mapped  # type: ignore[union-attr]
        if mapped is not None:
            return mapped
    return address


def _entries(values: Sequence[bytes], count: int) -> list[bytes | None]:
    """The rightmost ``count`` non-empty comma-separated entries of the header values,
    rightmost first; never looks further into a long header than it needs."""
    entries: list[bytes | None] = []
    for value in reversed(values):
        end = len(value)
        while end >= 0:
            comma = value.rfind(b",", 0, end)
            entry = value[comma + 1:end].strip(b" \t")
            if entry:
                entries.append(entry)
                if len(entries) == count:
                    return entries
            end = comma
    return entries


_Hops = tuple[list[bytes | None], list[bytes | None], list[bytes | None]]


def _forwarded_hops(values: list[bytes], limit: int) -> _Hops:
    """The ``for``, ``proto`` and ``host`` of the rightmost ``limit`` elements of the
    ``Forwarded`` header lines, rightmost first. A line that does not parse, or an element
    naming a parameter twice, is an invalid address where it stands."""
    addresses: list[bytes | None] = []
    protos: list[bytes | None] = []
    hosts: list[bytes | None] = []
    for value in reversed(values):
        elements = _parse_forwarded(value)
        if elements is None:
            addresses.append(_INVALID)
            break
        for address, proto, host in reversed(elements[-(limit - len(addresses)):]):
            addresses.append(address)
            protos.append(proto)
            hosts.append(host)
        if len(addresses) >= limit:
            break
    return addresses, protos, hosts


_Element = tuple[bytes | None, bytes | None, bytes | None]


def _parse_forwarded(value: bytes) -> list[_Element] | None:
    """The ``(for, proto, host)`` of each element of one ``Forwarded`` line, left to right
    (empty elements and empty pairs skipped), or None when the line does not parse."""
    elements: list[_Element] = []
    element: dict[bytes, bytes] = {}
    invalid = False
    position, end = 0, len(value)
    while position <= end:
        character = value[position] if position < end else _ELEMENT_SEPARATOR
        if character in _PAIR_SEPARATORS:
            position += 1
            continue
        if character == _ELEMENT_SEPARATOR:
            if element or invalid:
                elements.append((_INVALID if invalid else element.get(b"for"),
                                 element.get(b"proto"), element.get(b"host")))
                element, invalid = {}, False
            position += 1
            continue
        pair = _PAIR.match(value, position)
        if pair is None:
            return None
        name = pair.group(1).lower()
        quoted = pair.group(2)
        invalid = invalid or name in element
        if quoted is None:
            element[name] = pair.group(3)
        else:
            element[name] = _QUOTED_PAIR.sub(rb"\1", quoted) if b"\\" in quoted else quoted
        position = pair.end()
    return elements


def _parse_node(text: bytes) -> tuple[str, int | None] | None:
    """The address (IPv6 in its canonical form) and port of ``1.2.3.4``, ``1.2.3.4:80``,
    ``::1``, ``[::1]``, ``[::1]:80``; an obfuscated RFC 7239 port (``:_x``) is no port. None:
    not an IP address (``unknown``, ``_hidden``, a name, a zone, a bad port)."""
    try:
        node = text.decode("ascii")
    except UnicodeDecodeError:
        return None
    port_text = None
    if node.startswith("["):
        address, bracket, rest = node[1:].partition("]")
        if not bracket:
            return None
        if rest:
            if not rest.startswith(":"):
                return None
            port_text = rest[1:]
        family = socket.AF_INET6
    elif node.count(":") == 1:
        address, _, port_text = node.partition(":")
        family = socket.AF_INET
    else:
        family = socket.AF_INET6 if ":" in node else socket.AF_INET
        address = node
    try:
        # inet_pton accepts only the plain forms (no zone, no leading zeros, four parts)
        packed = socket.inet_pton(family, address)
    except (OSError, ValueError):
        return None
    if family == socket.AF_INET6:
        address = socket.inet_ntop(family, packed)
    if port_text is None or port_text.startswith("_"):
        return address, None
    if not port_text.isdigit() or len(port_text) > 5 or int(port_text) > 65535:
        return None
    return address, int(port_text)


def _forwarded_scheme(proto: bytes, scheme: str) -> str:
    """The scheme a forwarded proto makes of ``scheme``; ``scheme`` unchanged when the proto
    is neither ``http`` nor ``https``."""
    proto = proto.lower()
    if proto == b"https":
        return "wss" if scheme in ("ws", "wss") else "https"
    if proto == b"http":
        return "ws" if scheme in ("ws", "wss") else "http"
    return scheme
