"""The front's request parser (llhttp) reads every request as h11 did, event for event.

The reference is what the front ran before: an ``h11.Connection`` per request, with
:func:`hostkit.request_rules.limit_chunk_sizes`. Both are driven as
``client_input.ClientInput`` drives them (bytes fed as they come, the events taken until
``NEED_DATA``, a new parser for what follows each request) and must give the same events,
states, errors and status hints, and keep the same bytes for the next request. The cases
where llhttp alone is looser than h11 each have a test naming them; the smuggling corpus and
generated mutations of it are compared whole, in pieces and with the client's end.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import h11
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from hostkit.plugin import request_rules
from hostkit_outofprocess.front.client_input import request_parser
from hostkit_outofprocess.front.request_parser import MAX_HEAD_SIZE, RequestParser, h11_parser
from tests.hardening import corpus, mutations

Parser = RequestParser | h11.Connection


def _reference() -> h11.Connection:
    return h11_parser()


def _outcome(new_parser: Callable[[], Parser], pieces: Sequence[bytes],
             close: bool) -> list[object]:
    """What the front would see of ``pieces`` (then the client's end, if ``close``)."""
    reference = new_parser is _reference
    parser = new_parser()
    seen: list[object] = []
    for piece in [*pieces, b""] if close else pieces:
        parser.receive_data(piece)
        for _ in range(100):
            try:
                event = parser.next_event()
            except h11.RemoteProtocolError as error:
                seen.append(("refused", error.error_status_hint, parser.their_state))
                return seen
            if type(event) is h11.Request:
                if reference:
                    request_rules.limit_chunk_sizes(parser)
                elif parser.fallback is not None:
                    parser = parser.fallback
                seen.append(("request", event.method, event.target, event.http_version,
                             list(event.headers), parser.their_http_version,
                             parser.they_are_waiting_for_100_continue, parser.their_state))
            elif type(event) is h11.Data:
                seen.append(("data", bytes(event.data), parser.they_are_waiting_for_100_continue))
            elif type(event) is h11.EndOfMessage:
                rest, closed = parser.trailing_data
                seen.append(("end", parser.their_state, rest, closed))
                if parser.their_state is not h11.DONE:
                    return seen
                parser = new_parser()  # as ClientInput.next_request
                if rest:
                    parser.receive_data(rest)
                if closed:
                    parser.receive_data(b"")
            elif event is h11.NEED_DATA:
                seen.append("need data")
                break
            else:
                seen.append((type(event).__name__, parser.their_state))
                return seen
    return seen


def _pieces(data: bytes, size: int | None) -> list[bytes]:
    if size is None:
        return [data]
    return [data[at:at + size] for at in range(0, len(data), size)]


def assert_same(data: bytes, sizes: Sequence[int | None] = (None, 1, 7)) -> list[object]:
    """``data`` reads the same with both parsers, whole and in pieces of ``sizes``, with and
    without the client's end after it; returns what was read whole."""
    for size in sizes:
        for close in (False, True):
            pieces = _pieces(data, size)
            expected = _outcome(_reference, pieces, close)
            assert _outcome(RequestParser, pieces, close) == expected, (size, close)
    return _outcome(_reference, [data], False)


def _fast(data: bytes) -> RequestParser:
    """The parser after reading the request in ``data``, which it must read itself."""
    parser = RequestParser()
    parser.receive_data(data)
    assert type(parser.next_event()) is h11.Request
    assert parser.fallback is None
    return parser


def _falls_back(data: bytes) -> None:
    """``data`` is read by h11 (and the same as h11 read it)."""
    assert_same(data)
    parser = RequestParser()
    parser.receive_data(data)
    try:
        parser.next_event()
    except h11.RemoteProtocolError:
        pass
    assert parser.fallback is not None


GET = b"GET / HTTP/1.1\r\nHost: a\r\n\r\n"


# -- the common requests are read by llhttp ------------------------------------------------------

def test_client_input_makes_this_parser() -> None:
    assert type(request_parser()) is RequestParser


@pytest.mark.parametrize("data", [
    GET,
    b"GET /a?b=c HTTP/1.1\r\nHost: a:8080\r\nUser-Agent: x\r\nAccept: */*\r\n\r\n",
    b"HEAD / HTTP/1.1\r\nHost: a\r\n\r\n",
    b"GET / HTTP/1.0\r\n\r\n",
    b"OPTIONS * HTTP/1.1\r\nHost: a\r\n\r\n",
    b"GET http://a/b HTTP/1.1\r\nHost: a\r\n\r\n",
    b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\n\r\nhello",
    b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 0\r\n\r\n",
])
def test_common_requests_are_read_without_h11(data: bytes) -> None:
    assert_same(data)
    _fast(data)


def test_the_request_is_h11s_event() -> None:
    request = _fast(b"GET /x HTTP/1.1\r\nHost: a\r\nX-A:  b  c \t\r\n\r\n")
    assert request.their_http_version == b"1.1"
    assert request.their_state is h11.SEND_BODY
    seen = assert_same(b"GET /x HTTP/1.1\r\nHost: a\r\nX-A:  b  c \t\r\n\r\n")
    assert seen[0][:5] == ("request", b"GET", b"/x", b"1.1", [(b"host", b"a"), (b"x-a", b"b  c")])


def test_a_body_is_read_as_it_comes() -> None:
    seen = assert_same(b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 10\r\n\r\nhello", (None,))
    assert seen[1:] == [("data", b"hello", False), "need data"]


def test_whitespace_after_a_value_is_not_part_of_it() -> None:
    # llhttp keeps the OWS after a value; h11 drops it.
    seen = assert_same(b"GET / HTTP/1.1\r\nHost: a \t\r\nX: \t\r\nContent-Length: 0 \r\n\r\n")
    assert seen[0][4] == [(b"host", b"a"), (b"x", b""), (b"content-length", b"0")]


# -- what llhttp takes and h11 refuses (or reads otherwise): h11 decides -------------------------

def test_an_empty_line_before_the_request_is_refused() -> None:
    # llhttp skips it; h11 refuses it (and any first byte below "!" at once).
    _falls_back(b"\r\n" + GET)
    _falls_back(b"\n" + GET)
    _falls_back(b" " + GET)
    assert assert_same(b"\x01GE", (None,))[0][:2] == ("refused", 400)


def test_two_spaces_in_the_request_line_are_refused() -> None:
    # llhttp takes them.
    _falls_back(b"GET  / HTTP/1.1\r\nHost: a\r\n\r\n")
    _falls_back(b"GET /  HTTP/1.1\r\nHost: a\r\n\r\n")


@pytest.mark.parametrize("version", [b"2.0", b"0.9", b"1.2", b"3.1"])
def test_versions_other_than_1_0_and_1_1_go_to_h11(version: bytes) -> None:
    # llhttp takes 2.0 and 0.9, which h11 reads as a request (the rules answer 505).
    _falls_back(b"GET / HTTP/" + version + b"\r\nHost: a\r\n\r\n")


def test_the_http2_preface_is_h11s_request() -> None:
    seen = assert_same(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n", (None,))
    assert seen[0][:4] == ("request", b"PRI", b"*", b"2.0")


def test_a_missing_host_on_http_1_1_is_refused() -> None:
    _falls_back(b"GET / HTTP/1.1\r\nX: a\r\n\r\n")
    assert assert_same(b"GET / HTTP/1.1\r\n\r\n")[0][:2] == ("refused", 400)
    assert assert_same(b"GET / HTTP/1.0\r\n\r\n")[0][0] == "request"


def test_a_second_host_is_refused() -> None:
    _falls_back(b"GET / HTTP/1.1\r\nHost: a\r\nhost: b\r\n\r\n")
    assert assert_same(b"GET / HTTP/1.0\r\nHost: a\r\nHOST: a\r\n\r\n")[0][:2] == ("refused", 400)


def test_a_content_length_of_more_than_20_digits_is_refused() -> None:
    # llhttp takes any number that fits in 64 bits, leading zeros included.
    data = b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: " + b"0" * 20 + b"5\r\n\r\nhello"
    _falls_back(data)
    assert assert_same(data)[0][:2] == ("refused", 400)
    _fast(b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: " + b"0" * 19 + b"5\r\n\r\nhello")


@pytest.mark.parametrize("value", [b"5, 5", b"5,5", b"+5", b"-1", b"0x5", b"5 5", b"", b"1e2"])
def test_content_length_values_h11_refuses_or_merges(value: bytes) -> None:
    _falls_back(b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: " + value + b"\r\n\r\nhello")


def test_a_repeated_content_length_is_h11s() -> None:
    # llhttp refuses it; h11 merges identical ones (the rules refuse them from the raw head).
    _falls_back(b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\nContent-Length: 5\r\n\r\n"
                b"hello")


def test_a_head_ended_by_a_bare_lf_is_h11s() -> None:
    # h11 ends a head at LF LF (or LF CR LF), llhttp refuses a bare LF.
    _falls_back(b"GET / HTTP/1.1\nHost: a\n\n")
    _falls_back(b"GET / HTTP/1.1\r\nHost: a\n\r\n")
    _falls_back(b"GET / HTTP/1.1\r\nHost: a\r\nX: b\n\r\n")
    # ... also when the head comes in pieces.
    assert_same(b"GET / HTTP/1.1\r\nHost: a\n\r\nGET / HTTP/1.1\r\nHost: a\r\n\r\n", (1, 2, 3))


@pytest.mark.parametrize("data", [
    b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n",
    b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n5;a=b\r\nhello\r\n0\r\n\r\n",
    b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: gzip, chunked\r\n\r\n0\r\n\r\n",
    b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: gzip\r\n\r\n",
    b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\nTransfer-Encoding: chunked"
    b"\r\n\r\n0\r\n\r\n",
    b"POST / HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
])
def test_transfer_encoding_is_h11s(data: bytes) -> None:
    # Chunk extensions, codings other than chunked (h11: 501), repeated ones: h11 reads them.
    _falls_back(data)


def test_a_chunk_size_over_the_limit_is_refused_at_once() -> None:
    data = (b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n"
            + b"%x\r\n" % (request_rules.MAX_CHUNK_SIZE + 1))
    assert assert_same(data)[-1][:2] == ("refused", 400)


@pytest.mark.parametrize("data", [
    b"GET / HTTP/1.1\r\nHost: a\r\nUpgrade: websocket\r\nConnection: upgrade\r\n\r\nframes",
    b"GET / HTTP/1.1\r\nHost: a\r\nUpgrade: websocket\r\n\r\nframes",
    b"CONNECT a:443 HTTP/1.1\r\nHost: a:443\r\n\r\ntunnel",
])
def test_protocol_switches_are_h11s(data: bytes) -> None:
    # h11 waits in MIGHT_SWITCH_PROTOCOL (an Upgrade alone is enough); llhttp pauses only
    # when Connection names it, and on CONNECT.
    _falls_back(data)
    parser = RequestParser()
    parser.receive_data(data)
    parser.next_event()
    assert parser.fallback is not None
    assert parser.fallback.their_state is h11.SEND_BODY


@pytest.mark.parametrize("method", [b"FOO", b"get", b"X-CUSTOM", b"PRI"])
def test_methods_llhttp_does_not_know_are_h11s(method: bytes) -> None:
    _falls_back(method + b" / HTTP/1.1\r\nHost: a\r\n\r\n")


@pytest.mark.parametrize("method", [b"M-SEARCH", b"PURGE", b"PROPFIND", b"DELETE"])
def test_methods_llhttp_knows(method: bytes) -> None:
    assert_same(method + b" / HTTP/1.1\r\nHost: a\r\n\r\n")
    _fast(method + b" / HTTP/1.1\r\nHost: a\r\n\r\n")


@pytest.mark.parametrize("data", [
    b"GET / HTTP/1.1\r\nHost: a\r\n b\r\n\r\n",  # obs-fold
    b"GET / HTTP/1.1\r\nX: a\r\n\tb\r\nHost: a\r\n\r\n",
    b"GET / HTTP/1.1\r\nHost : a\r\n\r\n",  # space before the colon
    b"GET / HTTP/1.1\r\nHost: a\rX: b\r\n\r\n",  # a bare CR
    b"GET / HTTP/1.1\r\nHost: a\r\nX: a\x00b\r\n\r\n",
    b"GET / HTTP/1.1\r\nHost: a\r\nX: a\x01\x7fb\r\n\r\n",  # h11 takes them, the rules do not
    b"GET / HTTP/1.1\r\nHost: a\r\nX: a\x0bb\x0c\r\n\r\n",
    b"GET / HTTP/1.1\r\nHost: a\r\nX{: a\r\n\r\n",
    b"GET / HTTP/1.1\r\n: a\r\nHost: a\r\n\r\n",
    b"GET /\x80 HTTP/1.1\r\nHost: a\r\n\r\n",
    b"GET / http/1.1\r\nHost: a\r\n\r\n",
    b"GET / HTTP/1.1 \r\nHost: a\r\n\r\n",
])
def test_what_llhttp_refuses_is_h11s(data: bytes) -> None:
    _falls_back(data)


def test_header_bytes_h11_takes() -> None:
    _fast(b"GET / HTTP/1.1\r\nHost: a\r\nX-A_b!#$%&'*+.^`|~: \x80\xff \"q\" a\tb\r\n\r\n")
    assert_same(b"GET / HTTP/1.1\r\nHost: a\r\nX-A_b!#$%&'*+.^`|~: \x80\xff \"q\" a\tb\r\n\r\n")


@pytest.mark.parametrize("byte", range(256))
def test_every_byte_in_a_target_and_a_value(byte: int) -> None:
    one = bytes([byte])
    for data in (b"GET /a" + one + b"b HTTP/1.1\r\nHost: a\r\n\r\n",
                 b"GET /?" + one + b" HTTP/1.1\r\nHost: a\r\n\r\n",
                 b"GET http://a" + one + b"/ HTTP/1.1\r\nHost: a\r\n\r\n",
                 b"GET / HTTP/1.1\r\nHost: a\r\nX: a" + one + b"b\r\n\r\n",
                 b"GET / HTTP/1.1\r\nHost: a\r\nX" + one + b"Y: a\r\n\r\n",
                 b"GET / HTTP/1.1\r\nHost: a" + one + b"\r\n\r\n"):
        assert_same(data, (None, 5))


# -- the ends, and what the front relies on -----------------------------------------------------

def test_a_head_over_the_limit_is_431() -> None:
    data = b"GET / HTTP/1.1\r\nHost: a\r\nX: " + b"a" * MAX_HEAD_SIZE
    seen = assert_same(data, (None, 1000))
    assert seen[-1][:2] == ("refused", 431)
    # A head over the limit that is all there already is the rules' to refuse (431).
    assert assert_same(data + b"\r\n\r\n", (None,))[0][0] == "request"


def test_the_client_ending_mid_head_or_mid_body() -> None:
    assert assert_same(b"GET / HTTP/1.1\r\nHo", (None,))[-1] == "need data"
    assert _outcome(RequestParser, [b"GET / HTTP/1.1\r\nHo"], True)[-1][:2] == ("refused", 400)
    seen = _outcome(RequestParser, [b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 9\r\n\r\nab"],
                    True)
    assert seen[-1][:2] == ("refused", 400)
    assert_same(b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 9\r\n\r\nab")


def test_a_closed_connection_between_requests() -> None:
    assert _outcome(RequestParser, [], True) == [("ConnectionClosed", h11.CLOSED)]
    assert_same(b"")
    assert_same(GET)


def test_100_continue() -> None:
    data = b"POST / HTTP/1.1\r\nHost: a\r\nExpect: 100-Continue\r\nContent-Length: 2\r\n\r\n"
    assert _fast(data).they_are_waiting_for_100_continue
    seen = assert_same(data + b"ab")
    assert seen[0][6] is True and seen[1] == ("data", b"ab", False)
    assert not _fast(data.replace(b"1.1", b"1.0")).they_are_waiting_for_100_continue
    assert not _fast(data.replace(b"100-Continue", b"200-ok")).they_are_waiting_for_100_continue
    assert_same(data.replace(b"100-Continue", b"a, 100-continue ,"))
    assert_same(data.replace(b"1.1", b"1.0"))


@pytest.mark.parametrize("data, state", [
    (b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 1\r\n\r\nx", h11.DONE),
    (b"POST / HTTP/1.1\r\nHost: a\r\nConnection: keep-alive, Close\r\nContent-Length: 1"
     b"\r\n\r\nx", h11.MUST_CLOSE),
    (b"POST / HTTP/1.0\r\nConnection: keep-alive\r\nContent-Length: 1\r\n\r\nx", h11.MUST_CLOSE),
])
def test_the_state_after_the_body_says_whether_the_connection_goes_on(data: bytes,
                                                                      state: object) -> None:
    assert [s for s in assert_same(data) if s[0] == "end"][0][:2] == ("end", state)


def test_pipelined_requests_keep_what_follows() -> None:
    second = b"POST /2 HTTP/1.1\r\nHost: a\r\nContent-Length: 3\r\n\r\nabc"
    seen = assert_same(GET + second + GET, (None, 1, 5, 13))
    assert [s[0] for s in seen if isinstance(s, tuple)].count("request") == 3
    parser = _fast(GET + second)
    assert parser.trailing_data == (second, False)


# -- the smuggling corpus and its mutations -----------------------------------------------------

@pytest.mark.parametrize("vector", corpus.vectors(), ids=lambda v: f"{v.category}: {v.name}")
def test_the_smuggling_corpus(vector: corpus.Vector) -> None:
    assert_same(vector.data, (None, 1, 3, 16) if len(vector.data) < 4096 else (None, 3, 1000))


@settings(max_examples=1500, deadline=None, suppress_health_check=list(HealthCheck))
@given(data=mutations.mutated_requests(), cuts=st.lists(st.integers(0, 400), max_size=4),
       close=st.booleans())
def test_generated_requests(data: bytes, cuts: list[int], close: bool) -> None:
    bounds = sorted({0, len(data), *(cut for cut in cuts if cut < len(data))})
    pieces = [data[a:b] for a, b in zip(bounds, bounds[1:])]
    assert _outcome(RequestParser, pieces, close) == _outcome(_reference, pieces, close)


@settings(max_examples=500, deadline=None, suppress_health_check=list(HealthCheck))
@given(data=mutations.requests())
def test_generated_valid_requests(data: bytes) -> None:
    assert _outcome(RequestParser, [data], True) == _outcome(_reference, [data], True)
