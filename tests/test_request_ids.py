"""Request ids: unique, cheap, and a client's kept only from a known proxy and only when
well-formed."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from hostkit.configuration import load_configuration
from hostkit.gateway import Gateway, gateway_for
from hostkit.request_ids import MAX_CLIENT_ID_LENGTH, RequestIds, valid_client_id

ID = re.compile(r"0[0-9A-V]{13}:[1-9A-F][0-9A-F]*")


def test_ids_are_unique_within_a_process_and_across_processes() -> None:
    first, second = RequestIds(), RequestIds()
    ids = [first.new() for _ in range(10_000)] + [second.new() for _ in range(10_000)]
    assert len(set(ids)) == len(ids)
    assert all(ID.fullmatch(request_id) for request_id in ids), ids[:3]
    assert first.prefix != second.prefix
    assert (ids[0], ids[1], ids[9_999]) == (
        f"{first.prefix}1", f"{first.prefix}2", f"{first.prefix}2710")  # 10000


@pytest.mark.parametrize("value", [b"abc-123", b"a b", b"~" * MAX_CLIENT_ID_LENGTH,
                                   b"0HN7K3F2QJ1ABC:1F", b"!\"#$%&'()*+,-./:;<=>?@[\\]^_`{|}"])
def test_printable_ascii_ids_up_to_the_limit_are_valid(value: bytes) -> None:
    assert valid_client_id(value) == value.decode()


@pytest.mark.parametrize("value", [b"", b"x" * (MAX_CLIENT_ID_LENGTH + 1), b"a\r\nb", b"a\tb",
                                   b"caf\xc3\xa9", b"\x00", b"a\x7f"])
def test_empty_long_control_and_non_ascii_ids_are_not(value: bytes) -> None:
    assert valid_client_id(value) is None


def gateway(tmp_path: Path, *args: str) -> Gateway:
    return gateway_for(load_configuration(list(args), {}, content_root=tmp_path), None)


HEADERS = [(b"host", b"example"), (b"x-request-id", b"from-the-proxy-1")]


def test_a_client_id_is_kept_only_when_the_peer_is_a_known_proxy(tmp_path: Path) -> None:
    trusting = gateway(tmp_path, '--forwarded_headers:known_networks=["127.0.0.0/8"]')
    view = trusting.forwarded.apply("127.0.0.1", 4000, "http", HEADERS)
    assert trusting.request_id(view, HEADERS) == "from-the-proxy-1"

    stranger = trusting.forwarded.apply("192.0.2.7", 4000, "http", HEADERS)
    assert ID.fullmatch(trusting.request_id(stranger, HEADERS))
    # nobody trusted: the caller has no view at all, and the header is not even read
    assert ID.fullmatch(gateway(tmp_path).request_id(None, HEADERS))


def test_a_malformed_id_from_a_known_proxy_is_replaced(tmp_path: Path) -> None:
    trusting = gateway(tmp_path, '--forwarded_headers:known_proxies=["127.0.0.1"]')
    for bad in (b"", b"x" * 201, b"line\nbreak"):
        headers = [(b"x-request-id", bad)]
        view = trusting.forwarded.apply("127.0.0.1", 1, "http", headers)
        assert ID.fullmatch(trusting.request_id(view, headers)), bad
    headers = [(b"x-request-id", b"first"), (b"x-request-id", b"second")]
    view = trusting.forwarded.apply("127.0.0.1", 1, "http", headers)
    assert trusting.request_id(view, headers) == "first"
