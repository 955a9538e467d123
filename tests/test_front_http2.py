"""HTTP/2 at the OutOfProcess front: prior knowledge and ALPN, forwarded to the child as
HTTP/1.1.

A real front (on asyncio and on trio, its ``async_backend``) with ``tests/programs/h2_app.py``
as its child, listening on http and https (a trustme certificate); real clients: curl
(``--http2-prior-knowledge``, ``--http2``) and the ``h2`` library (tests/support/h2client.py),
which also sends what h2 itself would refuse to.
"""

from __future__ import annotations

import hashlib
import json
import os
import ssl
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
import trustme

from hostkit.testing import Program, python, write_settings
from tests.support.fronts import child_program, front_settings
from tests.support.h2client import H2Client
from tests.support.paths import PROGRAMS

pytestmark = pytest.mark.integration

TIMEOUT = 15
APP = PROGRAMS / "h2_app.py"


class Front:
    """The running front, its plain and TLS addresses and the CA its certificate is from."""

    def __init__(self, program: Program, ca: trustme.CA, pem: Path):
        self.program = program
        plain, secure = program.urls
        self.http_url, self.https_url = plain, secure
        self.port = int(plain.rpartition(":")[2])
        self.tls_port = int(secure.rpartition(":")[2])
        self.ca, self.pem = ca, pem

    def tls(self) -> ssl.SSLContext:
        context = ssl.create_default_context()
        self.ca.configure_trust(context)
        return context

    def client(self, *, tls: bool = False, **options: object) -> H2Client:
        if tls:
            return H2Client("127.0.0.1", self.tls_port, tls=self.tls(), **options)  # type: ignore[arg-type]
        return H2Client("127.0.0.1", self.port, **options)  # type: ignore[arg-type]


@pytest.fixture(scope="module", params=["asyncio", "trio"])
def front(request: pytest.FixtureRequest, authority: tuple[trustme.CA, Path],
          tmp_path_factory: pytest.TempPathFactory) -> Iterator[Front]:
    ca, pem = authority
    root = tmp_path_factory.mktemp(f"front-h2-{request.param}")
    write_settings(root, front_settings(
        module={**child_program(APP), "eager_start": True},
        urls=["http://127.0.0.1:0", "https://127.0.0.1:0"],
        tls={"certificate": str(pem), "private_key": str(pem)}))
    with Program(python(str(APP), f"--async_backend={request.param}"), cwd=root) as program:
        program.wait_started()
        program.wait_for_line("listening after")
        yield Front(program, ca, pem)


def curl(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["curl", "-sS", "--max-time", str(TIMEOUT), *args],
                          capture_output=True, text=True, timeout=TIMEOUT + 5, check=False)


def seen(response_body: bytes | str) -> dict[str, object]:
    return json.loads(response_body)  # type: ignore[no-any-return]


def app_headers(answer: dict[str, object]) -> dict[str, list[str]]:
    headers: dict[str, list[str]] = {}
    for name, value in answer["headers"]:  # type: ignore[union-attr]
        headers.setdefault(name, []).append(value)
    return headers


# -- the two ways in -----------------------------------------------------------------------


def test_curl_with_prior_knowledge(front: Front) -> None:
    done = curl("--http2-prior-knowledge", "-w", "\n%{http_version}",
                front.http_url + "/headers?curl-prior")
    body, _, version = done.stdout.rpartition("\n")
    assert (done.returncode, version) == (0, "2"), done.stderr
    headers = app_headers(seen(body))
    assert headers["host"] == [front.http_url.removeprefix("http://")]
    assert headers["x-forwarded-for"] == ["127.0.0.1"]
    assert headers["x-forwarded-proto"] == ["http"]


def test_curl_over_tls_by_alpn(front: Front) -> None:
    done = curl("--http2", "--cacert", str(front.pem), "-w", "\n%{http_version}",
                front.https_url + "/headers")
    body, _, version = done.stdout.rpartition("\n")
    assert (done.returncode, version) == (0, "2"), done.stderr
    assert app_headers(seen(body))["x-forwarded-proto"] == ["https"]


def test_http11_still_served_on_both_listeners(front: Front) -> None:
    for url in (front.http_url, front.https_url):
        done = curl("--http1.1", "--cacert", str(front.pem), "-w", "\n%{http_version}",
                    url + "/headers")
        body, _, version = done.stdout.rpartition("\n")
        assert (done.returncode, version) == (0, "1.1"), done.stderr
        assert app_headers(seen(body))["host"] == [url.partition("://")[2]]


def test_alpn_offers_h2_and_the_h2_library_speaks_it(front: Front) -> None:
    with front.client(tls=True) as client:
        assert client.alpn == "h2"
        response = client.get(b"/headers")
    assert response.status == 200
    assert response.header(b"x-request-id")
    assert app_headers(seen(bytes(response.body)))["x-forwarded-proto"] == ["https"]


# -- what the app sees -----------------------------------------------------------------------


def test_reserved_and_forwarding_headers_are_the_fronts(front: Front) -> None:
    spoofed = [(b"hostkit-token", b"evil"), (b"hostkit-http-version", b"1.0"),
               (b"hostkit-client-port", b"1"), (b"x-forwarded-for", b"6.6.6.6"),
               (b"x-forwarded-proto", b"https"), (b"x-forwarded-host", b"evil"),
               (b"forwarded", b"for=6.6.6.6"), (b"x-real-ip", b"6.6.6.6"),
               (b"x-request-id", b"mine"), (b"x-kept", b"yes")]
    with front.client() as client:
        response = client.get(b"/headers", spoofed)
    assert response.status == 200
    headers = app_headers(seen(bytes(response.body)))
    assert headers["x-forwarded-for"] == ["127.0.0.1"]
    assert headers["x-forwarded-proto"] == ["http"]
    assert headers["x-kept"] == ["yes"]
    for name in ("hostkit-token", "hostkit-client-port", "x-forwarded-host", "forwarded",
                 "x-real-ip"):
        assert name not in headers, headers
    # The front's own version header only (the child removes it before the app).
    assert headers.get("hostkit-http-version", ["2"]) == ["2"]
    assert headers.get("x-request-id") != ["mine"]


def test_the_app_sees_http_version_2(front: Front) -> None:
    with front.client() as client:
        response = client.get(b"/headers")
    assert seen(bytes(response.body))["http_version"] == "2"


def test_the_access_log_line_says_http2(front: Front) -> None:
    with front.client() as client:
        assert client.get(b"/headers?logged-as-h2").status == 200
    line = front.program.wait_for_line("/headers?logged-as-h2")
    assert '"GET /headers?logged-as-h2 HTTP/2" 200' in line


# -- bodies and flow control ------------------------------------------------------------------


def test_post_with_a_streamed_body(front: Front) -> None:
    body = os.urandom(3 * 1024 * 1024 + 5)
    with front.client() as client:
        stream_id = client.request(b"POST", b"/upload", body=body)
        response = client.response(stream_id)
    assert response.status == 200
    assert seen(bytes(response.body)) == {"length": len(body),
                                          "sha256": hashlib.sha256(body).hexdigest()}


def test_post_without_content_length_by_curl(front: Front, tmp_path: Path) -> None:
    data = tmp_path / "body"
    data.write_bytes(os.urandom(1_000_000))
    done = curl("--http2-prior-knowledge", "-T", str(data), "-X", "POST",
                "-H", "transfer-encoding:", front.http_url + "/upload")
    assert done.returncode == 0, done.stderr
    assert seen(done.stdout)["sha256"] == hashlib.sha256(data.read_bytes()).hexdigest()


def test_a_large_response_follows_the_clients_window(front: Front) -> None:
    size = 8 * 1024 * 1024
    with front.client(read_body=False) as client:
        stream_id = client.request(b"GET", f"/stream?{size}".encode())
        response = client.responses[stream_id]
        client.wait(lambda: len(response.body) >= 65535, 5)
        client.wait(lambda: False, 0.5)  # anything more would come now
        # The window (65,535 bytes for the stream and for the connection) is all it gets.
        assert len(response.body) == 65535
        client.read_body = True
        client.h2.acknowledge_received_data(len(response.body), stream_id)
        client.flush()
        final = client.response(stream_id, TIMEOUT)
    assert final.status == 200 and len(final.body) == size


def test_a_large_chunked_response_streams_whole(front: Front) -> None:
    size = 20 * 1024 * 1024
    with front.client() as client:
        response = client.get(f"/stream-chunked?{size}".encode())
    assert response.status == 200 and len(response.body) == size
    assert response.header(b"transfer-encoding") is None


def test_many_concurrent_streams_on_one_connection(front: Front) -> None:
    with front.client() as client:
        ids = [client.request(b"GET", f"/headers?n={n}".encode()) for n in range(60)]
        answers = [client.response(stream_id) for stream_id in ids]
    assert [a.status for a in answers] == [200] * 60
    assert [seen(bytes(a.body))["query"] for a in answers] == [f"n={n}" for n in range(60)]


def test_request_ids_are_never_indexed(front: Front) -> None:
    # Each response's id is new: indexed, every one would take room in the client's HPACK
    # table (and the front's encoder would search them all for every header it sends).
    with front.client() as client:
        answers = [client.get(b"/headers") for _ in range(20)]
        table = list(client.h2.decoder.header_table.dynamic_entries)
    ids = {answer.header(b"x-request-id") for answer in answers}
    assert len(ids) == 20 and None not in ids
    assert table and all(name != b"x-request-id" for name, _ in table), table


def test_h2load_many_streams(front: Front) -> None:
    done = subprocess.run(["h2load", "-n", "400", "-c", "4", "-m", "20",
                           front.http_url + "/"], capture_output=True, text=True,
                          timeout=60, check=False)
    assert "400 succeeded, 0 failed" in done.stdout, done.stdout + done.stderr


# -- what is refused, never forwarded ----------------------------------------------------------

_REQUEST = [(b":method", b"GET"), (b":scheme", b"http"), (b":authority", b"a"),
            (b":path", b"/headers")]
REFUSED = {
    "connection": (_REQUEST, [(b"connection", b"close")]),
    "keep-alive": (_REQUEST, [(b"keep-alive", b"5")]),
    "proxy-connection": (_REQUEST, [(b"proxy-connection", b"close")]),
    "transfer-encoding": (_REQUEST, [(b"transfer-encoding", b"chunked")]),
    "upgrade": (_REQUEST, [(b"upgrade", b"websocket")]),
    "te gzip": (_REQUEST, [(b"te", b"gzip")]),
    "uppercase name": (_REQUEST, [(b"X-Upper", b"1")]),
    "CR LF in a value": (_REQUEST, [(b"x-a", b"1\r\nx-injected: 1")]),
    "LF in a value": (_REQUEST, [(b"x-a", b"1\nx-injected: 1")]),
    "NUL in a value": (_REQUEST, [(b"x-a", b"1\x002")]),
    "CR LF in a name": (_REQUEST, [(b"x-a\r\nx-b", b"1")]),
    "missing :method": (_REQUEST[1:], []),
    "missing :path": (_REQUEST[:3], []),
    "missing :scheme": ([_REQUEST[0], *_REQUEST[2:]], []),
    "duplicated :path": ([*_REQUEST, (b":path", b"/other")], []),
    "unknown pseudo-header": ([*_REQUEST, (b":evil", b"1")], []),
    "pseudo after regular": (_REQUEST[:3], [(b"x-a", b"1"), (b":path", b"/headers")]),
    ":path without /": ([*_REQUEST[:3], (b":path", b"headers")], []),
    ":path with a space": ([*_REQUEST[:3], (b":path", b"/headers x")], []),
    ":path absolute-form": ([*_REQUEST[:3], (b":path", b"http://evil/headers")], []),
    ":path * for GET": ([*_REQUEST[:3], (b":path", b"*")], []),
    "host disagrees with :authority": (_REQUEST, [(b"host", b"evil")]),
    "invalid :authority": ([*_REQUEST[:2], (b":authority", b"a b"), _REQUEST[3]], []),
    "CONNECT": ([(b":method", b"CONNECT"), (b":authority", b"evil:443")], []),
}


@pytest.mark.parametrize("case", sorted(REFUSED))
def test_malformed_requests_are_refused(front: Front, case: str) -> None:
    pseudo, headers = REFUSED[case]
    with front.client() as client:
        stream_id = client.request(b"GET", b"", headers, pseudo=pseudo)
        response = client.responses[stream_id]
        client.wait(lambda: response.done or client.goaway is not None, TIMEOUT)
        # A stream error, a connection error, or a 4xx/5xx of the front's own: never the
        # app's answer.
        assert response.reset is not None or client.goaway is not None \
            or response.status >= 400, (case, response)
        assert response.status != 200


def test_a_content_length_the_data_disagrees_with_is_refused(front: Front) -> None:
    for length, sent in ((b"10", b"12345"), (b"3", b"12345")):
        with front.client() as client:
            stream_id = client.request(b"POST", b"/upload", [(b"content-length", length)],
                                       body=sent)
            response = client.responses[stream_id]
            client.wait(lambda: response.done or client.goaway is not None, TIMEOUT)
            assert response.status != 200 and (response.reset is not None
                                               or client.goaway is not None
                                               or response.status >= 400), response


def test_the_connection_goes_on_after_a_stream_is_refused_with_400(front: Front) -> None:
    with front.client() as client:
        bad = client.request(b"GET", b"", pseudo=[*_REQUEST[:3], (b":path", b"headers")])
        refused = client.response(bad)
        good = client.get(b"/headers")
    assert (refused.status, good.status) == (400, 200)
    assert refused.header(b"x-request-id")


def test_the_request_rules_apply_to_the_translated_request(front: Front) -> None:
    with front.client() as client:
        fragment = client.get(b"/headers#frag")
        bad_host = client.request(b"GET", b"/headers", authority=b"a/b")
        answer = client.response(bad_host)
    assert fragment.status == 400
    assert answer.status == 400


@pytest.mark.parametrize("backend", ["asyncio", "trio"])
def test_stopping_lets_a_stream_in_flight_finish(backend: str, tmp_path: Path) -> None:
    import signal

    write_settings(tmp_path, front_settings(module={**child_program(APP), "eager_start": True},
                                            urls=["http://127.0.0.1:0"]))
    with Program(python(str(APP), f"--async_backend={backend}"), cwd=tmp_path) as program:
        (url,) = program.wait_started()
        program.wait_for_line("listening after")
        size = 30 * 1024 * 1024
        with H2Client("127.0.0.1", int(url.rpartition(":")[2])) as client:
            stream_id = client.request(b"GET", f"/stream?{size}".encode())
            response = client.responses[stream_id]
            assert client.wait(lambda: len(response.body) > 0, TIMEOUT)
            program.process.send_signal(signal.SIGTERM)
            final = client.response(stream_id, TIMEOUT)
            assert (final.status, len(final.body)) == (200, size)
            # Then the front closes the connection at once, not at shutdown_timeout (5 s).
            assert client.wait_closed(2)
        assert program.process.wait(TIMEOUT) == 0


def test_a_body_declared_over_the_limit_gets_413_on_its_stream(front: Front) -> None:
    with front.client() as client:
        stream_id = client.request(b"POST", b"/upload", [(b"content-length", b"40000000")],
                                   body=b"x" * 1000, end=False)
        response = client.response(stream_id)
        assert response.status == 413
        assert client.get(b"/headers").status == 200  # the connection goes on
