"""The public listener's TLS follows Mozilla's "intermediate" profile in both models.

TLS 1.2 and 1.3 only, and for TLS 1.2 only forward-secret AEAD suites: a client that offers
nothing but CBC suites, or nothing newer than TLS 1.1, gets no handshake; an AEAD client
gets one. The context comes from the one builder (``hostkit.tls.server_context``), so the
same holds for the supervisor's own answers.
"""

from __future__ import annotations

import socket
import ssl
import warnings
from collections.abc import Iterator
from pathlib import Path

import pytest
import trustme

from hostkit.testing import Program, python, status_now, write_settings
from tests.support.paths import PROGRAMS

pytestmark = pytest.mark.integration

TIMEOUT = 15
CBC_ONLY = ":".join(("ECDHE-ECDSA-AES128-SHA256", "ECDHE-ECDSA-AES256-SHA384", "ECDHE-ECDSA-AES128-SHA",
                     "ECDHE-RSA-AES128-SHA256", "ECDHE-RSA-AES256-SHA384", "AES128-SHA"))


@pytest.fixture(scope="module", params=["InProcess", "OutOfProcess"])
def address(request: pytest.FixtureRequest, authority: tuple[trustme.CA, Path],
            tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, int, trustme.CA]]:
    ca, pem = authority
    root = tmp_path_factory.mktemp(f"tls-profile-{request.param}")
    write_settings(root, {"hosting_model": request.param, "urls": ["https://127.0.0.1:0"],
                          "shutdown_timeout": 5,
                          "tls": {"certificate": str(pem), "private_key": str(pem)}})
    context = ssl.create_default_context()
    ca.configure_trust(context)
    with Program(python(str(PROGRAMS / "probe.py")), cwd=root) as program:
        (url,) = program.wait_started()
        assert status_now(url, "/features", TIMEOUT, tls=context) == 200
        host, _, port = url.removeprefix("https://").rpartition(":")
        yield host, int(port), ca


def _client(ca: trustme.CA, *, ciphers: str | None = None,
            maximum: ssl.TLSVersion | None = None,
            minimum: ssl.TLSVersion | None = None) -> ssl.SSLContext:
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ca.configure_trust(context)
    if minimum is not None:
        context.minimum_version = minimum
    if maximum is not None:
        context.maximum_version = maximum
    if ciphers is not None:
        context.set_ciphers(ciphers)
    return context


def _handshake(address: tuple[str, int, trustme.CA], context: ssl.SSLContext
               ) -> tuple[str, str] | None:
    """(protocol, cipher) of a completed handshake, or None when the server refused it."""
    host, port, _ = address
    with socket.create_connection((host, port), timeout=TIMEOUT) as raw:
        try:
            with context.wrap_socket(raw, server_hostname=host) as tls:
                version, (cipher, _, _) = tls.version(), tls.cipher()
                assert version is not None
                return version, cipher
        except (ssl.SSLError, ConnectionResetError):
            return None


def test_tls12_offers_only_aead_suites(address: tuple[str, int, trustme.CA]) -> None:
    ca = address[2]
    assert _handshake(address, _client(ca, ciphers=CBC_ONLY,
                                       maximum=ssl.TLSVersion.TLSv1_2)) is None
    version, cipher = _handshake(address, _client(ca, maximum=ssl.TLSVersion.TLSv1_2)) \
        or ("", "")
    assert version == "TLSv1.2"
    assert "GCM" in cipher or "CHACHA20" in cipher


def test_tls13_is_served_and_older_than_tls12_is_not(
        address: tuple[str, int, trustme.CA]) -> None:
    ca = address[2]
    assert (_handshake(address, _client(ca, minimum=ssl.TLSVersion.TLSv1_3)) or ("",))[0] \
        == "TLSv1.3"
    # The client's OpenSSL may refuse TLS 1.1 itself: either way no handshake happens.
    try:
        with warnings.catch_warnings():  # deprecated: which is why the server refuses them
            warnings.simplefilter("ignore", DeprecationWarning)
            old = _client(ca, minimum=ssl.TLSVersion.TLSv1, maximum=ssl.TLSVersion.TLSv1_1)
        old.set_ciphers("ALL:@SECLEVEL=0")
    except ssl.SSLError:
        return
    assert _handshake(address, old) is None
