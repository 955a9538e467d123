"""How the module frames the responses it writes to clients (``hostkit_outofprocess.front.wire``).

Each case is read back with h11 as the client would read it, so a framing that a client could
read differently from what the module meant fails here.
"""

from __future__ import annotations

import h11
import pytest

from hostkit_outofprocess.front.wire import (
    BODY_AS_IS,
    BODY_CHUNKED,
    BODY_NONE,
    CONTINUE,
    LAST_CHUNK,
    chunk,
    informational_head,
    own_response,
    response_head,
)

BODY = b"hello, world"


def _write(status: int, headers: list[tuple[bytes, bytes]], *, method: bytes = b"GET",
           http_11: bool = True, close: bool = False) -> tuple[bytes, int, bool]:
    head, body, closes = response_head(status, b"OK", headers, method=method,
                                       http_11=http_11, close=close)
    if body == BODY_AS_IS:
        head += BODY
    elif body == BODY_CHUNKED:
        head += chunk(BODY[:5]) + chunk(BODY[5:]) + LAST_CHUNK
    return head, body, closes


def _read(data: bytes, *, method: bytes = b"GET",
          closes: bool) -> tuple[h11.Response, bytes, type]:
    """What an h11 client reads from ``data``: the response, its body, and its state after.

    (h11 sends HTTP/1.1 only; a body without length or chunks is read to the end of the
    connection whatever the request's version.)
    """
    client = h11.Connection(h11.CLIENT)
    client.send(h11.Request(method=method, target="/", headers=[("host", "a")]))
    client.send(h11.EndOfMessage())
    client.receive_data(data)
    if closes:
        client.receive_data(b"")
    response = client.next_event()
    assert isinstance(response, h11.Response)
    body = b""
    while isinstance(event := client.next_event(), h11.Data):
        body += event.data
    assert isinstance(event, h11.EndOfMessage)
    return response, body, client.their_state


def test_a_content_length_is_kept_and_the_connection_goes_on() -> None:
    data, body, closes = _write(200, [(b"content-length", str(len(BODY)).encode())])
    assert (body, closes) == (BODY_AS_IS, False)
    response, received, state = _read(data, closes=closes)
    assert (response.status_code, received, state) == (200, BODY, h11.DONE)
    assert b"transfer-encoding" not in data


def test_no_length_is_chunked_for_an_http_11_client() -> None:
    data, body, closes = _write(200, [(b"content-type", b"text/plain")])
    assert (body, closes) == (BODY_CHUNKED, False)
    response, received, state = _read(data, closes=closes)
    assert (received, state) == (BODY, h11.DONE)
    assert (b"transfer-encoding", b"chunked") in response.headers


def test_no_length_ends_with_the_connection_for_an_http_10_client() -> None:
    data, body, closes = _write(200, [(b"content-type", b"text/plain")], http_11=False)
    assert (body, closes) == (BODY_AS_IS, True)
    response, received, _ = _read(data, closes=closes)
    assert received == BODY
    assert (b"connection", b"close") in response.headers
    assert b"transfer-encoding" not in data


@pytest.mark.parametrize("status, method", [(204, b"GET"), (304, b"GET"), (200, b"HEAD")])
def test_responses_without_a_body_write_none(status: int, method: bytes) -> None:
    data, body, closes = _write(status, [(b"content-length", b"5")], method=method)
    assert (body, closes) == (BODY_NONE, False)
    _, received, state = _read(data, method=method, closes=closes)
    assert (received, state) == (b"", h11.DONE)
    assert data.endswith(b"\r\n\r\n")


def test_a_head_response_without_length_keeps_an_http_10_connection_framing_free() -> None:
    data, body, closes = _write(200, [], method=b"HEAD", http_11=False)
    assert (body, closes) == (BODY_NONE, False)
    assert b"transfer-encoding" not in data and b"connection" not in data


def test_close_says_so_in_the_head() -> None:
    data, body, closes = _write(200, [(b"content-length", str(len(BODY)).encode())],
                                close=True)
    assert (body, closes) == (BODY_AS_IS, True)
    response, received, _ = _read(data, closes=closes)
    assert received == BODY
    assert (b"connection", b"close") in response.headers


# -- the status line ----------------------------------------------------------------------


@pytest.mark.parametrize("status, reason, line", [
    (200, b"", b"HTTP/1.1 200 OK"),  # none from the child: the standard one
    (404, b"", b"HTTP/1.1 404 Not Found"),
    (201, b"Created", b"HTTP/1.1 201 Created"),
    (200, b"All good", b"HTTP/1.1 200 All good"),  # the child's own: kept
    (599, b"", b"HTTP/1.1 599 "),  # none, and no standard one
    (599, b"Custom", b"HTTP/1.1 599 Custom"),
])
def test_the_status_line_keeps_a_phrase_or_has_the_standard_one(status: int, reason: bytes,
                                                                 line: bytes) -> None:
    head, _, _ = response_head(status, reason, [(b"content-length", b"0")], method=b"GET",
                               http_11=True, close=False)
    assert head.split(b"\r\n", 1)[0] == line
    response, _, _ = _read(head, closes=False)
    assert (response.status_code, response.reason) == (status, line[13:])


def test_the_fronts_own_responses_have_the_standard_phrase() -> None:
    data, _ = own_response(503, b"down", content_type=b"text/plain", extra=[], method=b"GET",
                           http_11=True, close=False)
    response, received, _ = _read(data, closes=False)
    assert (response.status_code, response.reason, received) == (503, b"Service Unavailable",
                                                                 b"down")


def test_informational_heads_have_the_standard_phrase() -> None:
    assert informational_head(101, b"", [(b"upgrade", b"websocket")]).startswith(
        b"HTTP/1.1 101 Switching Protocols\r\n")
    assert CONTINUE == b"HTTP/1.1 100 Continue\r\n\r\n"
