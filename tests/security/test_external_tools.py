"""sslscan and h2load against both hosting models.

sslscan lists every protocol and cipher suite the TLS listener accepts, InProcess and at the
front, on asyncio and trio, with an ECDSA and an RSA certificate (a server offers only the
TLS 1.2 suites of its certificate's kind): nothing outside Mozilla's "intermediate" profile
(TLS 1.2 and 1.3; for TLS 1.2 only ECDHE/DHE with AES-GCM or ChaCha20-Poly1305), no
compression, no insecure renegotiation. The same check flags a listener that offers CBC
suites and TLS 1.0, so it is not vacuous. h2load runs 2000 requests over HTTP/2, over TLS
(ALPN ``h2``) and in cleartext (prior knowledge), where it is served (:data:`H2_MODELS`),
with none failed.

A tool not installed is a failure that says how to install it (``make tools``).
"""

from __future__ import annotations

import socket
import ssl
import subprocess
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
import trustme

from tests.hardening import external_tools
from tests.hardening.external_tools import KEYS, MODELS, QUICK_H2, Served
from tests.support.processes import LOOPBACK

pytestmark = pytest.mark.integration

#: Where HTTP/2 is served: both models (InProcess by hypercorn, the front by its own
#: HTTP/2 connections).
H2_MODELS = MODELS


@pytest.fixture(scope="module")
def kept() -> Iterator[dict[tuple[str, str], Served]]:
    """The servers with the default (ECDSA) certificate by ``(model, backend)``: started once
    for the sslscan and the h2load tests (as ``python -m tests.hardening`` runs both tools
    on one server), stopped at the end of the module."""
    servers: dict[tuple[str, str], Served] = {}
    try:
        yield servers
    finally:
        for server in servers.values():
            server.stop()


def _kept(kept: dict[tuple[str, str], Served], model: str, backend: str) -> Served:
    """The kept server of ``model`` on ``backend``, started now if there is none yet."""
    if (model, backend) not in kept:
        kept[model, backend] = Served(model, backend, key=KEYS[0])
    return kept[model, backend]


@pytest.fixture(scope="module", params=[(model, backend, key) for model in MODELS
                                        for backend in ("asyncio", "trio") for key in KEYS],
                ids=lambda p: "-".join(p))
def served(request: pytest.FixtureRequest, kept: dict[tuple[str, str], Served]
           ) -> Iterator[Served]:
    model, backend, key = request.param
    if key == KEYS[0]:
        yield _kept(kept, model, backend)
        return
    with Served(model, backend, key=key) as started:
        yield started


def test_sslscan_finds_only_the_intermediate_profile(served: Served) -> None:
    figures = external_tools.run_sslscan(served)
    assert figures.problems() == [], figures.lines()
    assert set(figures.protocols) == {"TLSv1.2", "TLSv1.3"}, figures.lines()
    kind = "ECDSA" if served.key == "ECDSA" else "RSA"
    assert {suite for protocol, suite in figures.suites if protocol == "TLSv1.2"} == \
        {f"ECDHE-{kind}-AES128-GCM-SHA256", f"ECDHE-{kind}-AES256-GCM-SHA384",
         f"ECDHE-{kind}-CHACHA20-POLY1305"}, figures.lines()


@pytest.fixture(scope="module", params=[(model, backend) for model in H2_MODELS
                                        for backend in ("asyncio", "trio")],
                ids=lambda p: "-".join(p))
def served_h2(request: pytest.FixtureRequest, kept: dict[tuple[str, str], Served]) -> Served:
    model, backend = request.param
    return _kept(kept, model, backend)


@pytest.mark.parametrize("secure", [True, False], ids=["h2", "h2c"])
def test_h2load_over_http2_has_no_failed_request(served_h2: Served, secure: bool) -> None:
    if secure:
        assert served_h2.speaks_h2(), f"{served_h2.model} does not negotiate h2 (ALPN)"
    figures = external_tools.run_h2load(served_h2, QUICK_H2, secure=secure)
    assert figures.problems() == [], (figures.lines(), figures.output_tail)
    assert figures.per_second > 0, figures.lines()


class _WeakListener:
    """A TLS listener on loopback outside the profile: TLS 1.0 to 1.2 with CBC suites, in a
    thread that completes handshakes until the end of its ``with`` block."""

    def __init__(self, folder: Path):
        pem = folder / "weak.pem"
        trustme.CA().issue_cert(LOOPBACK, key_type=trustme.KeyType.RSA) \
            .private_key_and_cert_chain_pem.write_to_path(str(pem))
        self.context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        self.context.minimum_version = ssl.TLSVersion.MINIMUM_SUPPORTED
        self.context.maximum_version = ssl.TLSVersion.TLSv1_2
        self.context.set_ciphers("AES128-SHA:ECDHE-RSA-AES128-SHA:ECDHE-RSA-AES128-GCM-SHA256"
                                 ":@SECLEVEL=0")
        self.context.load_cert_chain(str(pem))
        self.socket = socket.create_server((LOOPBACK, 0))
        self.socket.settimeout(0.2)
        self.port = self.socket.getsockname()[1]
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._serve, daemon=True)

    def _serve(self) -> None:
        while not self._stop.is_set():
            try:
                connection, _ = self.socket.accept()
            except OSError:
                continue
            connection.settimeout(5)
            try:
                with self.context.wrap_socket(connection, server_side=True):
                    pass
            except (OSError, ssl.SSLError):
                connection.close()

    def __enter__(self) -> _WeakListener:
        self._thread.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self._stop.set()
        self._thread.join(5)
        self.socket.close()


def test_the_sslscan_check_flags_cbc_suites_and_old_protocols(tmp_path: Path) -> None:
    with _WeakListener(tmp_path) as listener:
        result = subprocess.run([external_tools.tool("sslscan"), "--no-colour", "--xml=-",
                                 "--no-heartbleed", f"{LOOPBACK}:{listener.port}"],
                                capture_output=True, text=True, timeout=120, check=False)
    figures = external_tools.parse_sslscan("weak", "threads", result.stdout)
    problems = figures.problems()
    assert {"TLSv1.0", "TLSv1.1", "TLSv1.2"} <= set(figures.protocols), figures.lines()
    assert any(problem.endswith("TLSv1.0 offered") for problem in problems), problems
    assert any(problem.endswith("TLSv1.2 ECDHE-RSA-AES128-SHA is outside the intermediate "
                                "profile") for problem in problems), problems
    assert ("TLSv1.2", "ECDHE-RSA-AES128-GCM-SHA256") in figures.suites  # AEAD: allowed
    assert not any("GCM" in problem for problem in problems), problems


def test_a_missing_tool_fails_and_says_how_to_install_it(
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PATH", "/nonexistent")
    for name in ("sslscan", "h2load"):
        with pytest.raises(external_tools.ToolMissing, match=r"make tools.*apt-get install"):
            external_tools.tool(name)
