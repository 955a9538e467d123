"""The gateway's request rules (hostkit/request_rules.py), the same on every public listener.

- the rules themselves, on requests h11 parsed (no server);
- end to end, in both hosting models (InProcess: the ``hostkit_inprocess`` guard in front of
  hypercorn; OutOfProcess: the front), on asyncio and trio, over real sockets: each refusal
  is a 400 with ``Connection: close`` after which the server closes the connection, an
  absolute-form target reaches the app as its path with ``Host`` from the target, and an
  overflowing chunk size is refused at once (the client keeps its connection open);
- a child (``CHILD`` role, on its token port) speaks HTTP/1.1 only: an ``Upgrade: h2c`` is
  answered in HTTP/1.1 (never 101), curl's h2c upgrade included, and an HTTP/2 preface (the
  ``h2`` library as a prior-knowledge client) gets a 505.
"""

from __future__ import annotations

import json
import subprocess
import time
from collections.abc import Iterator

import anyio
import h11
import pytest

from hostkit import request_rules
from hostkit.testing import Program, connect
from tests.hardening.direct import HandStartedChild
from tests.support.models import MODELS, serve_in
from tests.support.paths import PROGRAMS

TIMEOUT = 5


def _parsed(data: bytes) -> tuple[h11.Request, bytes | None]:
    parser = h11.Connection(h11.SERVER)
    parser.receive_data(data)
    event = parser.next_event()
    assert type(event) is h11.Request, event
    return event, request_rules.head_of(data)


def _verdict(data: bytes) -> request_rules.Refusal | request_rules.Forwarded:
    request, raw_head = _parsed(data)
    return request_rules.check(request, raw_head)


@pytest.mark.parametrize("host", [b"a", b"a:8080", b"example.com", b"[::1]:80", b"1.2.3.4",
                                  b"xn--bcher-kva.example", b"a_b.local", b"%41"])
def test_a_valid_host_is_forwarded_as_sent(host: bytes) -> None:
    verdict = _verdict(b"GET /x HTTP/1.1\r\nHost: " + host + b"\r\n\r\n")
    assert verdict == request_rules.Forwarded(b"/x", host)


@pytest.mark.parametrize("host", [b"a b", b"a/b", b"a?b", b"a#b", b"u@a", b"a:x", b"a, b",
                                  b"\"a\"", b"a\\b", b"caf\xe9", b"[::1"])
def test_an_invalid_host_is_refused(host: bytes) -> None:
    verdict = _verdict(b"GET /x HTTP/1.1\r\nHost: " + host + b"\r\n\r\n")
    assert isinstance(verdict, request_rules.Refusal) and verdict.status == 400, verdict


def test_an_empty_host_is_refused_on_http_11_and_taken_on_http_10() -> None:
    assert _verdict(b"GET /x HTTP/1.1\r\nHost:\r\n\r\n") == \
        request_rules.Refusal(400, "the Host header is not a host[:port]")
    assert _verdict(b"GET /x HTTP/1.0\r\nHost:\r\n\r\n") == request_rules.Forwarded(b"/x", b"")
    assert _verdict(b"GET /x HTTP/1.0\r\n\r\n") == request_rules.Forwarded(b"/x", b"")


def test_a_fragment_is_refused_in_either_form() -> None:
    assert _verdict(b"GET /x#y HTTP/1.1\r\nHost: a\r\n\r\n").status == 400  # type: ignore[union-attr]
    assert _verdict(b"GET http://a/x#y HTTP/1.1\r\nHost: a\r\n\r\n").status == 400  # type: ignore[union-attr]


def test_transfer_encoding_on_http_10_is_refused() -> None:
    verdict = _verdict(b"POST /x HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n")
    assert verdict == request_rules.Refusal(400, "Transfer-Encoding on an HTTP/1.0 request")


def test_an_absolute_form_authority_is_checked_like_a_host() -> None:
    assert _verdict(b"GET http://evil:81/x?q HTTP/1.1\r\nHost: a\r\n\r\n") == \
        request_rules.Forwarded(b"/x?q", b"evil:81")
    assert isinstance(_verdict(b"GET http://ev%il/x HTTP/1.1\r\nHost: a\r\n\r\n"),
                      request_rules.Refusal)


def _chunked_parser(size: bytes) -> h11.Connection:
    parser = h11.Connection(h11.SERVER)
    parser.receive_data(b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n"
                        + size + b"\r\nhello")
    assert type(parser.next_event()) is h11.Request
    request_rules.limit_chunk_sizes(parser)
    return parser


@pytest.mark.parametrize("size", [b"8000000000000000", b"ffffffffffffffff",
                                  b"10000000000000005", b"fffffffffffffffffffff"[:20]])
def test_h11_refuses_a_chunk_size_over_the_limit_once_its_line_is_read(size: bytes) -> None:
    """Also fails if a new h11 renames what limit_chunk_sizes wraps (its reader)."""
    parser = _chunked_parser(size)
    with pytest.raises(h11.RemoteProtocolError) as refused:
        parser.next_event()
    assert refused.value.error_status_hint == 400


def test_h11_reads_a_chunk_size_at_the_limit() -> None:
    assert int(b"7fffffffffffffff", 16) == request_rules.MAX_CHUNK_SIZE
    event = _chunked_parser(b"7fffffffffffffff").next_event()
    assert type(event) is h11.Data and event.data == b"hello"
    event = _chunked_parser(b"00000000000000000005").next_event()  # leading zeros: 5
    assert type(event) is h11.Data and event.chunk_end


# -- end to end, both models -------------------------------------------------------------


@pytest.fixture(scope="module", params=MODELS)
def server(request: pytest.FixtureRequest, anyio_backend: str,
           tmp_path_factory: pytest.TempPathFactory) -> Iterator[Program]:
    root = tmp_path_factory.mktemp(f"rules-{request.param}")
    with serve_in(request.param, PROGRAMS / "hardening_app.py", anyio_backend, root) as program:
        yield program


async def _exchange(program: Program, data: bytes, *, seconds: float = TIMEOUT
                    ) -> tuple[bytes, bool]:
    """Send ``data`` (and keep the connection open); what came back, and whether the server
    closed the connection after it, within ``seconds``."""
    received = b""
    with anyio.move_on_after(seconds):
        stream = await connect(program.urls[0])
        try:
            await stream.send(data)
            while True:
                try:
                    received += await stream.receive()
                except (anyio.EndOfStream, anyio.BrokenResourceError):
                    return received, True
        finally:
            await stream.aclose()
    return received, False


def _body(answer: bytes) -> bytes:
    """The body of the first response in ``answer``, however it is framed."""
    client = h11.Connection(h11.CLIENT)
    client.send(h11.Request(method="GET", target="/", headers=[("Host", "a")]))
    client.send(h11.EndOfMessage())
    client.receive_data(answer)
    client.receive_data(b"")
    body = b""
    while type(event := client.next_event()) is not h11.EndOfMessage:
        if type(event) is h11.Data:
            body += event.data
    return body


def _status_and_headers(answer: bytes) -> tuple[int, dict[bytes, bytes]]:
    head = answer.split(b"\r\n\r\n", 1)[0].split(b"\r\n")
    headers = dict(line.lower().split(b": ", 1) for line in head[1:] if b": " in line)
    return int(head[0].split(b" ")[1]), headers


REFUSED = {
    "CL with TE": b"POST /x HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\n"
                  b"Transfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
    "TE with CL": b"POST /x HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n"
                  b"Content-Length: 5\r\n\r\nhello",
    "two CL": b"POST /x HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\nContent-Length: 5\r\n\r\nhello",
    "a CL list": b"POST /x HTTP/1.1\r\nHost: a\r\nContent-Length: 5, 5\r\n\r\nhello",
    "an invalid CL": b"POST /x HTTP/1.1\r\nHost: a\r\nContent-Length: +5\r\n\r\nhello",
    "obs-fold": b"GET /x HTTP/1.1\r\nHost: a\r\nX: a\r\n b\r\n\r\n",
    "a control character": b"GET /x HTTP/1.1\r\nHost: a\r\nX: a\x01b\r\n\r\n",
    "Host with a space": b"GET /x HTTP/1.1\r\nHost: a b\r\n\r\n",
    "Host with a path": b"GET /x HTTP/1.1\r\nHost: a/b\r\n\r\n",
    "Host with userinfo": b"GET /x HTTP/1.1\r\nHost: u@a\r\n\r\n",
    "an empty Host on 1.1": b"GET /x HTTP/1.1\r\nHost:\r\n\r\n",
    "no Host on 1.1": b"GET /x HTTP/1.1\r\n\r\n",
    "two Host": b"GET /x HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n",
    "a fragment": b"GET /x#frag HTTP/1.1\r\nHost: a\r\n\r\n",
    "TE on HTTP/1.0": b"POST /x HTTP/1.0\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n"
                      b"5\r\nhello\r\n0\r\n\r\n",
    "an overflowing chunk size": b"POST /x HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked"
                                 b"\r\n\r\n10000000000000005\r\nhello\r\n",
    "a 20-digit chunk size": b"POST /x HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked"
                             b"\r\n\r\nffffffffffffffffffff\r\nhello\r\n",
}


@pytest.mark.anyio
@pytest.mark.parametrize("name", list(REFUSED))
async def test_a_refused_request_gets_400_and_the_connection_closes(server: Program,
                                                                   name: str) -> None:
    started = time.monotonic()
    answer, closed = await _exchange(server, REFUSED[name])
    assert answer.startswith(b"HTTP/1.1 400 Bad Request\r\n"), answer
    status, headers = _status_and_headers(answer)
    assert headers.get(b"connection") == b"close", answer
    assert closed, f"the connection stayed open after {answer!r}"
    assert time.monotonic() - started < 3, "not refused at once"
    assert b"hello" not in answer.split(b"\r\n\r\n", 1)[1]  # the app never ran


@pytest.mark.anyio
async def test_an_absolute_form_target_reaches_the_app_as_its_path_with_its_host(
        server: Program) -> None:
    answer, _ = await _exchange(server, b"GET http://evil:8080/whoami?q=1 HTTP/1.1\r\n"
                                        b"Host: a\r\nConnection: close\r\n\r\n")
    status, _ = _status_and_headers(answer)
    assert status == 200, answer
    seen = json.loads(_body(answer))  # the /whoami route: the path was used
    assert seen["host"] == "evil:8080"
    assert [["host", "evil:8080"]] == [h for h in seen["headers"] if h[0] == "host"]


@pytest.mark.anyio
async def test_http_10_without_host_is_served(server: Program) -> None:
    answer, closed = await _exchange(server, b"GET / HTTP/1.0\r\n\r\n")
    assert _status_and_headers(answer)[0] == 200 and _body(answer) == b"hello", answer
    assert closed


@pytest.mark.anyio
async def test_a_valid_chunked_body_and_keep_alive_still_work(server: Program) -> None:
    answer, _ = await _exchange(
        server, b"POST /whoami HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n"
                b"0005;x=y\r\nhello\r\n0\r\n\r\nGET / HTTP/1.1\r\nHost: a:1\r\n"
                b"Connection: close\r\n\r\n")
    assert answer.count(b"HTTP/1.1 200 OK\r\n") == 2, answer
    assert b'"host": "a"' in answer and answer.endswith(b"hello\r\n0\r\n\r\n"), answer


# -- the child speaks HTTP/1.1 only ------------------------------------------------------


@pytest.fixture(scope="module", params=["asyncio", "trio"])
def child(request: pytest.FixtureRequest) -> Iterator[HandStartedChild]:
    with HandStartedChild(request.param) as started:
        yield started


def _child_exchange(child: HandStartedChild, data: bytes) -> bytes:
    import socket

    with socket.create_connection(("127.0.0.1", child.port), timeout=TIMEOUT) as sock:
        sock.sendall(data)
        received = b""
        while b"\r\n\r\n" not in received:
            chunk = sock.recv(65536)
            if not chunk:
                break
            received += chunk
        return received


def test_the_child_answers_an_h2c_upgrade_in_http_11(child: HandStartedChild) -> None:
    answer = _child_exchange(
        child, b"GET / HTTP/1.1\r\nHost: a\r\nHostkit-Token: " + child.token.encode()
        + b"\r\nConnection: Upgrade, HTTP2-Settings\r\nUpgrade: h2c\r\n"
          b"HTTP2-Settings: AAMAAABkAAQAAP__\r\n\r\n")
    assert answer.startswith(b"HTTP/1.1 200 OK\r\n"), answer
    assert b"101" not in answer.split(b"\r\n", 1)[0]


def test_curl_asking_the_child_for_h2c_gets_http_11(child: HandStartedChild) -> None:
    result = subprocess.run(
        ["curl", "-s", "--http2", "-o", "/dev/null", "-w", "%{http_version} %{http_code}",
         "--max-time", str(TIMEOUT), "-H", f"Hostkit-Token: {child.token}",
         f"http://127.0.0.1:{child.port}/"], capture_output=True, text=True, timeout=TIMEOUT + 5)
    assert result.stdout == "1.1 200", result


def test_the_child_refuses_the_http2_preface(child: HandStartedChild) -> None:
    import h2.config
    import h2.connection

    client = h2.connection.H2Connection(h2.config.H2Configuration(client_side=True))
    client.initiate_connection()
    client.send_headers(1, [(":method", "GET"), (":path", "/"), (":scheme", "http"),
                            (":authority", "a"), ("hostkit-token", child.token)],
                        end_stream=True)
    answer = _child_exchange(child, client.data_to_send())
    assert answer.startswith(b"HTTP/1.1 505 HTTP Version Not Supported\r\n"), answer
