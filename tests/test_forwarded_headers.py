"""``hostkit.forwarded_headers``: which proxies are believed, and what they are believed about.

The rules are ASP.NET Core's ForwardedHeadersMiddleware (``RequireHeaderSymmetry = false``):
nothing is read from an untrusted peer; hops are read right to left, at most
``forward_limit``, and a hop is read only when the one before it named a known proxy; an
address that is not an IP stops the reading; a bad proto or host is skipped. ``Forwarded``
(RFC 7239) is read only when no ``X-Forwarded-*`` header came.
"""

from __future__ import annotations

import time

import pytest

from hostkit.configuration.tables import ForwardedHeadersOptions
from hostkit.forwarded_headers import ForwardedHeaders, ForwardedView

PROXY = "10.0.0.1"
PEER_PORT = 40000


def forwarded(*, proxies: tuple[str, ...] = (PROXY,), networks: tuple[str, ...] = (),
              limit: int = 1) -> ForwardedHeaders:
    return ForwardedHeaders(ForwardedHeadersOptions(known_proxies=proxies,
                                                    known_networks=networks,
                                                    forward_limit=limit))


def view(headers: list[tuple[bytes, bytes]], *, peer: str | None = PROXY,
         scheme: str = "http", **settings: object) -> ForwardedView:
    return forwarded(**settings).apply(peer, PEER_PORT, scheme, headers)  # type: ignore[arg-type]


def client(result: ForwardedView) -> tuple[str | None, int | None]:
    return result.client_ip, result.client_port


XFF = b"x-forwarded-for"
XFP = b"x-forwarded-proto"
XFH = b"x-forwarded-host"
FWD = b"forwarded"


# --- who is a known proxy -------------------------------------------------------------

def test_nobody_is_known_by_default() -> None:
    headers = ForwardedHeaders(ForwardedHeadersOptions())
    assert not headers.enabled
    assert not headers.is_known_proxy("127.0.0.1")
    assert headers.apply("127.0.0.1", 1, "http", [(XFF, b"1.2.3.4")]) == \
        ForwardedView("127.0.0.1", 1, "http", None, False)


@pytest.mark.parametrize(("proxies", "networks", "ip", "known"), [
    (("10.0.0.1",), (), "10.0.0.1", True),
    (("10.0.0.1",), (), "10.0.0.2", False),
    (("10.0.0.1",), (), "::ffff:10.0.0.1", True),          # mapped IPv4 matches IPv4
    (("::ffff:10.0.0.1",), (), "10.0.0.1", True),          # and a mapped entry, the IPv4 peer
    (("::1",), (), "::1", True),
    (("::1",), (), "0:0:0:0:0:0:0:1", True),               # any spelling of the address
    (("::1",), (), "127.0.0.1", False),
    (("fe80::1%eth0",), (), "fe80::1", True),                # a zone in the setting
    ((" 10.0.0.1 ",), (), "10.0.0.1", True),                # entries as the schema allows
    ((), ("10.0.0.0/8",), "10.255.1.2", True),
    ((), ("10.0.0.0/8",), "11.0.0.1", False),
    ((), ("10.0.0.0/8",), "::ffff:10.1.2.3", True),
    ((), ("192.168.1.7/24",), "192.168.1.200", True),      # host bits set: the network
    ((), ("192.168.1.0/24",), "192.168.2.1", False),
    ((), ("2001:db8::/32",), "2001:db8:ffff::1", True),
    ((), ("2001:db8::/32",), "2001:db9::1", False),
    ((), ("2001:db8::/32",), "10.0.0.1", False),
    ((), ("fe80::/10",), "fe80::1%eth0", True),            # a link-local peer with its zone
    ((), ("0.0.0.0/0",), "203.0.113.9", True),
    (("10.0.0.1",), ("172.16.0.0/12",), "172.20.0.1", True),
    (("10.0.0.1",), (), "not an ip", False),
    (("10.0.0.1",), (), "", False),
    (("10.0.0.1",), (), None, False),                       # a Unix socket has no address
])
def test_known_proxies_and_networks(proxies: tuple[str, ...], networks: tuple[str, ...],
                                    ip: str | None, known: bool) -> None:
    headers = forwarded(proxies=proxies, networks=networks)
    assert headers.enabled
    assert headers.is_known_proxy(ip) is known
    assert headers.is_known_proxy(ip) is known               # the cached answer too


# --- an untrusted peer changes nothing ------------------------------------------------

@pytest.mark.parametrize("headers", [
    [(XFF, b"1.2.3.4")],
    [(XFF, b"1.2.3.4"), (XFP, b"https"), (XFH, b"evil.example")],
    [(FWD, b"for=1.2.3.4;proto=https;host=evil.example")],
    [(XFF, b"10.0.0.1, 1.2.3.4")],
    [(XFF, b"garbage \x00\xff")],
    [],
])
@pytest.mark.parametrize("peer", ["10.0.0.2", "::1", "::ffff:10.0.0.2", None])
def test_an_untrusted_peer_changes_nothing(headers: list[tuple[bytes, bytes]],
                                           peer: str | None) -> None:
    result = view(headers, peer=peer, scheme="https", limit=5)
    assert result == ForwardedView(peer, PEER_PORT, "https", None, False)


def test_a_known_peer_without_forwarding_headers_keeps_its_own_view() -> None:
    result = view([(b"host", b"a"), (b"x-forwarded-port", b"1")])
    assert result == ForwardedView(PROXY, PEER_PORT, "http", None, True)


# --- X-Forwarded-* ----------------------------------------------------------------------

def test_a_trusted_single_hop() -> None:
    result = view([(XFF, b"203.0.113.7"), (XFP, b"https"), (XFH, b"shop.example")])
    assert result == ForwardedView("203.0.113.7", None, "https", b"shop.example", True)


@pytest.mark.parametrize(("limit", "expected"), [
    (1, "10.0.0.3"), (2, "10.0.0.2"), (3, "203.0.113.7"), (4, "203.0.113.7"),
])
def test_multi_hop_follows_known_proxies_up_to_the_limit(limit: int, expected: str) -> None:
    # client 203.0.113.7 → 10.0.0.2 → 10.0.0.3 → 10.0.0.1 (the peer); all proxies known
    headers = [(XFF, b"198.51.100.1, 203.0.113.7, 10.0.0.2, 10.0.0.3")]
    result = view(headers, networks=("10.0.0.0/24",), limit=limit)
    assert result.client_ip == expected


@pytest.mark.parametrize("limit", [1, 2, 3])
def test_multi_hop_protos_and_hosts_follow_the_same_hops(limit: int) -> None:
    headers = [(XFF, b"203.0.113.7, 10.0.0.2, 10.0.0.3"), (XFP, b"https, http, http"),
               (XFH, b"outer.example, middle.example, inner.example")]
    result = view(headers, networks=("10.0.0.0/24",), limit=limit)
    assert (result.client_ip, result.scheme, result.host) == [
        ("10.0.0.3", "http", b"inner.example"),
        ("10.0.0.2", "http", b"middle.example"),
        ("203.0.113.7", "https", b"outer.example")][limit - 1]


def test_the_first_unknown_address_is_the_client() -> None:
    # 10.0.0.9 is not a known proxy: whatever it claims (the left entries) is not read
    headers = [(XFF, b"1.1.1.1, 203.0.113.7, 10.0.0.9"), (XFP, b"ftp, https, http")]
    result = view(headers, networks=("10.0.0.0/29",), limit=3)
    assert (result.client_ip, result.scheme) == ("10.0.0.9", "http")


def test_an_untrusted_middle_stops_the_chain() -> None:
    # client → 10.0.0.2 (known) → 198.51.100.5 (NOT known) → 10.0.0.3 (known) → peer
    headers = [(XFF, b"203.0.113.7, 10.0.0.2, 198.51.100.5, 10.0.0.3")]
    result = view(headers, networks=("10.0.0.0/24",), limit=10)
    assert result.client_ip == "198.51.100.5"


def test_repeated_headers_are_one_list() -> None:
    headers = [(XFF, b"203.0.113.7"), (XFF, b"10.0.0.2, 10.0.0.3"), (XFP, b"https"),
               (XFP, b"http")]
    result = view(headers, networks=("10.0.0.0/24",), limit=3)
    assert (result.client_ip, result.scheme) == ("203.0.113.7", "https")
    assert view(headers, networks=("10.0.0.0/24",), limit=1).client_ip == "10.0.0.3"


@pytest.mark.parametrize(("value", "expected"), [
    (b"203.0.113.7", ("203.0.113.7", None)),
    (b"203.0.113.7:5678", ("203.0.113.7", 5678)),
    (b"  203.0.113.7:0 ", ("203.0.113.7", 0)),
    (b"203.0.113.7:65535", ("203.0.113.7", 65535)),
    (b"2001:db8::7", ("2001:db8::7", None)),
    (b"2001:DB8:0:0:0:0:0:7", ("2001:db8::7", None)),
    (b"[2001:db8::7]", ("2001:db8::7", None)),
    (b"[2001:db8::7]:443", ("2001:db8::7", 443)),
    (b"[::1]:80", ("::1", 80)),
    (b"::ffff:203.0.113.7", ("::ffff:203.0.113.7", None)),
    (b"[::FFFF:203.0.113.7]:1", ("::ffff:203.0.113.7", 1)),
])
def test_forwarded_for_with_ports_and_ipv6(value: bytes,
                                           expected: tuple[str, int | None]) -> None:
    assert client(view([(XFF, value)])) == expected


@pytest.mark.parametrize("value", [
    b"unknown", b"_hidden", b"example.com", b"203.0.113", b"203.0.113.7:", b"203.0.113.7:x",
    b"203.0.113.7:65536", b"203.0.113.7:123456", b"[2001:db8::7", b"[2001:db8::7]x",
    b"[2001:db8::7]:", b"[203.0.113.7]:80x", b"2001:db8::7%eth0", b"1.2.3.4 5.6.7.8",
    b"\xff\xfe", b"\x00", b"1.2.3.4;for=5.6.7.8", b'"1.2.3.4"', b"203.0.113.7:+80",
    b"203.0.113.7:\xd9\xa1", b"[203.0.113.7]:80", b"203.0.113.07", b"0x7f.0.0.1", b"127.1",
    b"[]", b"[]:80", b":80", b"[::1]:80:80",
])
def test_a_malformed_forwarded_for_is_ignored(value: bytes) -> None:
    result = view([(XFF, value), (XFP, b"https"), (XFH, b"shop.example")])
    # the hop stops before its proto and host are applied: nothing of it is believed
    assert result == ForwardedView(PROXY, PEER_PORT, "http", None, True)


def test_a_malformed_hop_keeps_what_was_read_before_it() -> None:
    headers = [(XFF, b"203.0.113.7, garbage, 10.0.0.2"), (XFP, b"http, http, https")]
    result = view(headers, networks=("10.0.0.0/24",), limit=3)
    assert (result.client_ip, result.scheme) == ("10.0.0.2", "https")


@pytest.mark.parametrize(("value", "scheme"), [
    (b"https", "https"), (b"HTTPS", "https"), (b"Http", "http"), (b" https ", "https"),
    (b"ftp", "http"), (b"javascript", "http"), (b"https ;x", "http"), (b"", "http"),
    (b"h\xfftp", "http"), (b"wss", "http"),
])
def test_only_http_and_https_protos_are_taken(value: bytes, scheme: str) -> None:
    assert view([(XFP, value)]).scheme == scheme


def test_a_bad_proto_does_not_stop_the_chain() -> None:
    headers = [(XFF, b"203.0.113.7, 10.0.0.2"), (XFP, b"https, gopher")]
    result = view(headers, networks=("10.0.0.0/24",), limit=2)
    assert (result.client_ip, result.scheme) == ("203.0.113.7", "https")


@pytest.mark.parametrize(("listener", "proto", "scheme"), [
    ("https", b"http", "http"), ("ws", b"https", "wss"), ("wss", b"http", "ws"),
])
def test_the_proto_keeps_the_listeners_family(listener: str, proto: bytes,
                                              scheme: str) -> None:
    assert view([(XFP, proto)], scheme=listener).scheme == scheme


@pytest.mark.parametrize(("value", "host"), [
    (b"shop.example", b"shop.example"),
    (b"shop.example:8443", b"shop.example:8443"),
    (b"SHOP.example", b"SHOP.example"),
    (b"203.0.113.7:80", b"203.0.113.7:80"),
    (b"[2001:db8::7]", b"[2001:db8::7]"),
    (b"[::1]:8080", b"[::1]:8080"),
    (b"a_b-c~d!$&'()", b"a_b-c~d!$&'()"),
    (b"shop.example/path", None),
    (b"user@shop.example", None),
    (b"shop example", None),
    (b"shop.example:", None),
    (b":8080", None),
    (b"shop.example:80x", None),
    (b"shop.example:80:80", None),
    (b"[::]", None),
    (b"[2001:db8::7", None),
    (b"[2001:db8::g]", None),
    (b"[::1]x", None),
    (b"sh*p.example", None),
    (b"shop.example;x", None),
    (b"shop%2eexample", None),
    (b"b\xc3\xbccher.example", None),
    (b"shop.example\r\nX: y", None),
])
def test_the_forwarded_host_is_validated(value: bytes, host: bytes | None) -> None:
    assert view([(XFH, value)]).host == host


def test_a_bad_host_is_skipped_and_the_earlier_good_one_kept() -> None:
    headers = [(XFF, b"203.0.113.7, 10.0.0.2"), (XFH, b"bad host, good.example")]
    result = view(headers, networks=("10.0.0.0/24",), limit=2)
    assert (result.client_ip, result.host) == ("203.0.113.7", b"good.example")


def test_empty_entries_are_skipped() -> None:
    headers = [(XFF, b""), (XFF, b"203.0.113.7, , ,10.0.0.2,"), (XFF, b" , ")]
    result = view(headers, networks=("10.0.0.0/24",), limit=2)
    assert result.client_ip == "203.0.113.7"


def test_proto_alone_is_read_without_an_address() -> None:
    # as ASP.NET: a hop without an address keeps the one before it (still a known proxy)
    result = view([(XFP, b"https, http")], limit=2)
    assert result == ForwardedView(PROXY, PEER_PORT, "https", None, True)


def test_more_hops_than_the_limit_are_ignored() -> None:
    headers = [(XFF, b", ".join(b"10.0.0.%d" % i for i in range(2, 60)))]
    result = view(headers, networks=("10.0.0.0/24",), limit=5)
    assert result.client_ip == "10.0.0.55"


# --- RFC 7239 Forwarded ---------------------------------------------------------------

@pytest.mark.parametrize(("value", "expected"), [
    (b"for=203.0.113.7", ("203.0.113.7", None, "http", None)),
    (b"For=203.0.113.7;PROTO=HTTPS;Host=shop.example",
     ("203.0.113.7", None, "https", b"shop.example")),
    (b'for="203.0.113.7:4711"', ("203.0.113.7", 4711, "http", None)),
    (b"for=203.0.113.7:4711", ("203.0.113.7", 4711, "http", None)),
    (b'for="[2001:db8:cafe::17]:4711"', ("2001:db8:cafe::17", 4711, "http", None)),
    (b'for="[2001:db8:cafe::17]"', ("2001:db8:cafe::17", None, "http", None)),
    (b'for="203.0.113.7:_port"', ("203.0.113.7", None, "http", None)),
    (b'for = 203.0.113.7 ; proto = https ', ("203.0.113.7", None, "https", None)),
    (b'for=203.0.113.7;by=10.0.0.1;secret=x;proto=https',
     ("203.0.113.7", None, "https", None)),
    (b'for="2\\03.0.113.7"', ("203.0.113.7", None, "http", None)),       # quoted-pair
    (b'host="shop.example:8443";for=203.0.113.7',
     ("203.0.113.7", None, "http", b"shop.example:8443")),
    (b"proto=https", (PROXY, PEER_PORT, "https", None)),
    (b";;for=203.0.113.7;;", ("203.0.113.7", None, "http", None)),         # empty pairs
    (b", , for=203.0.113.7 , ,", ("203.0.113.7", None, "http", None)),     # empty elements
    (b'for="_hidden, for=1.1.1.1";proto=https', (PROXY, PEER_PORT, "http", None)),
])
def test_forwarded_values(value: bytes,
                          expected: tuple[str, int | None, str, bytes | None]) -> None:
    result = view([(FWD, value)])
    assert (result.client_ip, result.client_port, result.scheme, result.host) == expected


@pytest.mark.parametrize("value", [
    b"for=unknown;proto=https", b"for=_hidden;proto=https", b'for="_SEVKISEK";proto=https',
    b"for=UNKNOWN;proto=https", b"for=;proto=https", b"for=shop.example;proto=https",
    b'for="[2001:db8::17";proto=https', b"for=[2001:db8::17]:80x;proto=https",
    # not RFC 7239 at all: the line does not parse
    b"203.0.113.7", b"for", b"for=1.2.3.4 5.6.7.8", b'for="203.0.113.7', b"for=a\"b",
    b"=203.0.113.7", b"for==1.2.3.4", b"for=1.2.3.4;proto=https;for=5.6.7.8",
    b"f\xffr=1.2.3.4", b"for=\xff", b"for=1.2.3.4;proto=https x",
])
def test_malformed_or_obfuscated_forwarded_is_ignored(value: bytes) -> None:
    assert view([(FWD, value)], limit=3) == ForwardedView(PROXY, PEER_PORT, "http", None, True)


@pytest.mark.parametrize(("limit", "expected"), [
    (1, ("10.0.0.3", "http")), (2, ("10.0.0.2", "http")), (3, ("203.0.113.7", "https")),
])
def test_forwarded_elements_are_read_right_to_left(limit: int,
                                                    expected: tuple[str, str]) -> None:
    headers = [(FWD, b'for=203.0.113.7;proto=https, for="10.0.0.2:1";proto=http'),
               (FWD, b"for=10.0.0.3;proto=http")]
    result = view(headers, networks=("10.0.0.0/24",), limit=limit)
    assert (result.client_ip, result.scheme) == expected


def test_forwarded_stops_at_an_unknown_or_obfuscated_hop() -> None:
    headers = [(FWD, b"for=203.0.113.7, for=_hidden;proto=https, for=10.0.0.2;proto=https")]
    result = view(headers, networks=("10.0.0.0/24",), limit=5)
    assert (result.client_ip, result.scheme) == ("10.0.0.2", "https")
    untrusted = [(FWD, b"for=203.0.113.7;proto=https, for=198.51.100.5;proto=http")]
    assert client(view(untrusted, networks=("10.0.0.0/24",), limit=5)) == \
        ("198.51.100.5", None)


def test_a_malformed_forwarded_line_is_a_stop_where_it_stands() -> None:
    headers = [(FWD, b"for=203.0.113.7"), (FWD, b"for=\"broken"), (FWD, b"for=10.0.0.2")]
    result = view(headers, networks=("10.0.0.0/24",), limit=5)
    assert result.client_ip == "10.0.0.2"


def test_a_comma_inside_a_quoted_string_is_not_an_element_separator() -> None:
    result = view([(FWD, b'for=203.0.113.7;ext="a, for=1.1.1.1"')], limit=2)
    assert result.client_ip == "203.0.113.7"


# --- both families ----------------------------------------------------------------------

@pytest.mark.parametrize("x_forwarded", [(XFF, b"203.0.113.7"), (XFP, b"http"),
                                         (XFH, b"x.example")])
def test_x_forwarded_headers_win_over_forwarded(x_forwarded: tuple[bytes, bytes]) -> None:
    # a proxy that writes X-Forwarded-* passes a client's own Forwarded through: not read
    headers = [(FWD, b"for=6.6.6.6;proto=https;host=evil.example"), x_forwarded]
    result = view(headers, limit=3)
    assert result.client_ip != "6.6.6.6"
    assert result.scheme == "http"
    assert result.host != b"evil.example"


def test_forwarded_is_read_when_no_x_forwarded_header_came() -> None:
    headers = [(b"x-forwarded-port", b"443"), (b"x-real-ip", b"6.6.6.6"),
               (FWD, b"for=203.0.113.7;proto=https")]
    assert view(headers) == ForwardedView("203.0.113.7", None, "https", None, True)


def test_header_names_are_matched_as_asgi_gives_them() -> None:
    # lower-case names only (ASGI, h11); another spelling is another header
    headers = [(b"X-Forwarded-For", b"6.6.6.6"), (b"x_forwarded_for", b"6.6.6.6")]
    assert view(headers).client_ip == PROXY


# --- bounded work -------------------------------------------------------------------------

HUGE = 10_000


@pytest.mark.parametrize("headers", [
    [(XFF, b", ".join(b"10.0.%d.%d" % divmod(i, 250) for i in range(HUGE)))],
    [(XFF, b"10.0.0.2")] * HUGE,
    [(XFF, b"," * (HUGE * 10) + b"10.0.0.2")],
    [(XFF, b"10.0.0.2" + b", " * HUGE)],
    [(FWD, b", ".join(b'for="10.0.%d.%d:1";proto=https' % divmod(i, 250)
                      for i in range(HUGE)))],
    [(FWD, b"for=10.0.0.2")] * HUGE,
    [(FWD, b'for="' + b"\\a" * HUGE * 5)],
    [(XFH, b"h," * HUGE), (XFP, b"https," * HUGE)],
])
def test_a_huge_header_takes_bounded_time(headers: list[tuple[bytes, bytes]]) -> None:
    trusted = forwarded(networks=("10.0.0.0/8",), limit=HUGE)
    limited = forwarded(networks=("10.0.0.0/8",), limit=3)
    started = time.perf_counter()
    for headers_object in (trusted, limited):
        result = headers_object.apply(PROXY, PEER_PORT, "http", headers)
        assert result.from_known_proxy
    assert time.perf_counter() - started < 2.0


def test_a_huge_chain_is_read_to_the_limit() -> None:
    value = b", ".join(b"10.0.%d.%d" % divmod(i, 250) for i in range(HUGE))
    result = forwarded(networks=("10.0.0.0/8",), limit=HUGE).apply(
        PROXY, PEER_PORT, "http", [(XFF, b"203.0.113.7, " + value)])
    assert result.client_ip == "10.0.0.0"   # the leftmost of HUGE hops (limit reached)
