"""Identity end to end (SPEC §5–6): TLS client certificates, server authentication, forwarded
identity and claims transformation, the same in both hosting models.

One program per {InProcess, OutOfProcess} × {asyncio, trio} serves https with
``client_certificate_mode = "optional"``, the ``basic`` and ``certificate`` schemes and a
plugin's ``apikey`` scheme; the same requests must give the same user, claims and certificate
bytes in every cell.
"""

from __future__ import annotations

import base64
import contextlib
import datetime
import hashlib
import shutil
import ssl
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
import trustme

from hostkit.authentication.passwords import hash_password
from hostkit.authentication.users_file import set_user

from hostkit.testing import Program, python, write_settings
from tests.support.paths import PROGRAMS, SAMPLES

pytestmark = [pytest.mark.anyio, pytest.mark.integration]

TIMEOUT = 10
USER, PASSWORD = "alice", "wonder land:1"
# Fast hashes keep the suite quick; the format and the code path are those of real ones.
TEST_ITERATIONS = 1000
TRANSFORMED = ["transformed", "yes"]


@dataclass
class Pki:
    """A CA, the server's certificate, and client certificates: good, expired, untrusted."""

    authority: trustme.CA
    root: Path
    client: trustme.LeafCert
    expired: trustme.LeafCert
    untrusted: trustme.LeafCert

    def client_context(self, certificate: trustme.LeafCert | None = None) -> ssl.SSLContext:
        context = ssl.create_default_context()
        self.authority.configure_trust(context)
        if certificate is not None:
            certificate.configure_cert(context)
        return context


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Pki:
    root = tmp_path_factory.mktemp("pki")
    authority = trustme.CA()
    authority.issue_cert("127.0.0.1").private_key_and_cert_chain_pem.write_to_path(
        str(root / "server.pem"))
    authority.cert_pem.write_to_path(str(root / "clients-ca.pem"))
    client = authority.issue_cert("alice@example.org", common_name=USER,
                                  organization_name="Wonderland")
    expired = authority.issue_cert(
        "alice@example.org", common_name=USER,
        not_before=datetime.datetime(2000, 1, 1, tzinfo=datetime.timezone.utc),
        not_after=datetime.datetime(2001, 1, 1, tzinfo=datetime.timezone.utc))
    untrusted = trustme.CA().issue_cert("alice@example.org", common_name=USER)
    return Pki(authority, root, client, expired, untrusted)


def write_site(root: Path, pki: Pki, model: str,
               tables: Mapping[str, Mapping[str, object]] | None = None,
               authentication: Mapping[str, object] | None = None) -> None:
    """hostkit.toml (https, optional client certificates, basic + certificate + a plugin's
    apikey scheme) and users; ``tables`` adds tables, ``authentication`` keys of
    ``[authentication]``."""
    set_user(root / "users.txt", USER, hash_password(PASSWORD, TEST_ITERATIONS))
    write_settings(root, {
        "hosting_model": model,
        "urls": ["https://127.0.0.1:0"],
        "plugins": ["apikey_scheme"],
        "shutdown_timeout": 5,
        "tls": {"certificate": str(pki.root / "server.pem"),
                "private_key": str(pki.root / "server.pem"),
                "client_ca": str(pki.root / "clients-ca.pem"),
                "client_certificate_mode": "optional"},
        "authentication": {"schemes": ["basic", "certificate", "apikey"],
                           "authentication_display_name": "Wonderland",
                           **(authentication or {})},
        **(tables or {}),
    })


@contextlib.contextmanager
def started(root: Path, backend: str) -> Iterator[str]:
    """The identity probe running in ``root``: its URL, for the ``with`` block."""
    with Program(python(str(PROGRAMS / "identity_probe.py"), f"--async_backend={backend}"),
                 cwd=root) as program:
        (url,) = program.wait_started()
        yield url


@pytest.fixture(scope="module", params=["InProcess", "OutOfProcess"])
def site(request: pytest.FixtureRequest, anyio_backend: str, pki: Pki,
         tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, str]]:
    """(model, url) of the identity probe with automatic authentication."""
    model = request.param
    root = tmp_path_factory.mktemp(f"identity-{model}")
    write_site(root, pki, model)
    with started(root, anyio_backend) as url:
        yield model, url


async def get(url: str, pki: Pki, certificate: trustme.LeafCert | None = None,
              headers: Any = None) -> httpx.Response:
    async with httpx.AsyncClient(verify=pki.client_context(certificate),
                                 timeout=TIMEOUT) as client:
        return await client.get(url, headers=headers)


def basic(user: str, password: str) -> dict[str, str]:
    token = base64.b64encode(f"{user}:{password}".encode()).decode()
    return {"Authorization": f"Basic {token}"}


def der_of(certificate: trustme.LeafCert) -> bytes:
    return ssl.PEM_cert_to_DER_cert(certificate.cert_chain_pems[0].bytes().decode())


def expected_view(kind: str, pki: Pki) -> dict[str, Any]:
    """What the app must see for each kind of client, whatever the model."""
    if kind == "anonymous":
        return {"authenticated": False, "authentication_type": None, "name": None,
                "claims": [TRANSFORMED], "certificate": None}
    if kind == "basic":
        return {"authenticated": True, "authentication_type": "Basic", "name": USER,
                "claims": [["name", USER], ["nameidentifier", USER], TRANSFORMED],
                "certificate": None}
    if kind == "apikey":
        return {"authenticated": True, "authentication_type": "ApiKey",
                "name": "reporting-service", "claims": [["name", "reporting-service"],
                                                        TRANSFORMED], "certificate": None}
    der = der_of(pki.client)
    return {"authenticated": True, "authentication_type": "Certificate", "name": USER,
            "certificate": base64.b64encode(der).decode(),
            "claims": None}  # checked claim by claim below: trustme adds its own subject fields


CLIENTS = ["anonymous", "basic", "certificate", "apikey"]
CREDENTIALS = {"basic": basic(USER, PASSWORD), "apikey": {"X-Api-Key": "k-123"}}


@pytest.mark.parametrize("kind", CLIENTS)
async def test_the_app_sees_the_same_identity_in_both_models(
        site: tuple[str, str], kind: str, pki: Pki) -> None:
    model, url = site
    response = await get(url + "/whoami", pki,
                         certificate=pki.client if kind == "certificate" else None,
                         headers=CREDENTIALS.get(kind))
    assert response.status_code == 200, response.text
    seen = response.json()
    assert seen["model"] == model
    expected = expected_view(kind, pki)
    for key, value in expected.items():
        if value is not None or key != "claims":
            assert seen[key] == value, key
    if kind == "certificate":
        der = der_of(pki.client)
        claims = [tuple(claim) for claim in seen["claims"]]
        assert claims[0] == ("name", USER)
        assert ("cn", USER) in claims and ("o", "Wonderland") in claims
        assert ("thumbprint", hashlib.sha1(der).hexdigest().upper()) in claims
        assert claims.count(tuple(TRANSFORMED)) == 1
    assert seen["scheme"] == "https" and seen["remote_ip"] == "127.0.0.1"
    assert not [name for name, _ in seen["headers"] if name.lower().startswith("hostkit")]


async def test_wrong_or_malformed_credentials_get_401_and_the_server_keeps_serving(
        site: tuple[str, str], pki: Pki) -> None:
    _, url = site
    for headers in (basic(USER, "wrong"), basic("nobody", PASSWORD), {"X-Api-Key": "k-999"},
                    {"Authorization": "Basic !!not-base64!!"},
                    {"Authorization": "Basic " + base64.b64encode(b"no-colon").decode()}):
        response = await get(url + "/whoami", pki, headers=headers)
        assert response.status_code == 401, headers
        assert response.content == b""
        assert response.headers.get_list("www-authenticate") == [
            'Basic realm="Wonderland", charset="UTF-8"', "Certificate", "ApiKey"]
    assert (await get(url + "/whoami", pki, headers=basic(USER, PASSWORD))).status_code == 200


async def test_other_authorization_schemes_are_left_to_the_app(
        site: tuple[str, str], pki: Pki) -> None:
    _, url = site
    response = await get(url + "/whoami", pki, headers={"Authorization": "Bearer abc"})
    assert response.status_code == 200
    assert response.json()["authenticated"] is False


@pytest.mark.parametrize("which", ["expired", "untrusted"])
async def test_a_bad_client_certificate_fails_the_handshake_and_the_server_keeps_serving(
        site: tuple[str, str], pki: Pki, which: str) -> None:
    _, url = site
    with pytest.raises(httpx.HTTPError) as failure:
        response = await get(url + "/whoami", pki, certificate=getattr(pki, which))
        # TLS 1.3 reports the client's rejected certificate after the handshake; the request
        # itself then fails, never reaching the app.
        pytest.fail(f"a {which} certificate was accepted: {response.status_code}")
    assert failure.value is not None
    assert (await get(url + "/whoami", pki, certificate=pki.client)).status_code == 200


# Every spelling a client might use to pass itself off as the module.
SPOOFS = [
    [("Hostkit-Identity", "eyJzY2hlbWUiOiJiYXNpYyJ9.AAAA")],
    [("HOSTKIT-IDENTITY", "x"), ("hostkit-identity", "y")],
    [("hostkit_identity", "eyJ9.AAAA"), ("Hostkit_Client_Cert", "AAAA")],
    [("Hostkit-Client-Cert", "MIIB")],
    [("Connection", "Hostkit-Client-Cert, X-Forwarded-For"), ("Hostkit-Client-Cert", "MIIB"),
     ("X-Forwarded-For", "203.0.113.9")],
    [("X-Forwarded-For", "203.0.113.9"), ("x-forwarded-for", "198.51.100.7")],
    [("X_Forwarded_For", "203.0.113.9"), ("X-Forwarded-Proto", "http")],
    [("Hostkit-Token", "guess"), ("HOSTKIT_TOKEN", "guess")],
]


@pytest.mark.parametrize("spoof", SPOOFS, ids=lambda spoof: "+".join(n for n, _ in spoof))
async def test_clients_cannot_forge_identity_certificate_or_address(
        site: tuple[str, str], pki: Pki, spoof: list[tuple[str, str]]) -> None:
    model, url = site
    response = await get(url + "/whoami", pki, headers=spoof)
    assert response.status_code == 200, response.text
    seen = response.json()
    assert seen["authenticated"] is False
    assert seen["certificate"] is None
    assert seen["remote_ip"] == "127.0.0.1"
    assert seen["scheme"] == "https"
    if model == "OutOfProcess":
        # Nothing the client sent in these namespaces reaches the child: only the module's
        # own forwarding headers, with what the module saw.
        assert sorted(seen["headers"]) == [["x-forwarded-for", "127.0.0.1"],
                                           ["x-forwarded-proto", "https"]]


async def test_spoofed_headers_do_not_override_a_real_identity(
        site: tuple[str, str], pki: Pki) -> None:
    _, url = site
    headers = [*basic(USER, PASSWORD).items(), ("Hostkit-Identity", "forged"),
               ("hostkit_client_cert", base64.b64encode(der_of(pki.untrusted)).decode())]
    response = await get(url + "/whoami", pki, certificate=pki.client, headers=headers)
    seen = response.json()
    assert seen["authentication_type"] == "Basic" and seen["name"] == USER
    assert seen["certificate"] == base64.b64encode(der_of(pki.client)).decode()


@pytest.fixture(scope="module", params=["InProcess", "OutOfProcess"])
def explicit_site(request: pytest.FixtureRequest, anyio_backend: str, pki: Pki,
                  tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    root = tmp_path_factory.mktemp(f"explicit-{request.param}")
    write_site(root, pki, request.param, authentication={"automatic_authentication": False})
    with started(root, anyio_backend) as url:
        yield url


async def test_without_automatic_authentication_the_user_waits_for_authenticate(
        explicit_site: str, pki: Pki) -> None:
    credentials = basic(USER, PASSWORD)
    implicit = (await get(explicit_site + "/whoami", pki, headers=credentials)).json()
    assert implicit["authenticated"] is False
    explicit = (await get(explicit_site + "/explicit", pki, headers=credentials)).json()
    assert explicit["authenticated"] is True and explicit["name"] == USER
    # Claims transformation ran once on the principal authenticate() returned.
    assert explicit["claims"].count(TRANSFORMED) == 1
    challenged = await get(explicit_site + "/challenge", pki)
    assert challenged.status_code == 401
    assert challenged.headers.get_list("www-authenticate") == [
        'Basic realm="Wonderland", charset="UTF-8"', "Certificate", "ApiKey"]
    # Wrong credentials are refused by the server even when the app authenticates itself.
    refused = await get(explicit_site + "/explicit", pki, headers=basic(USER, "wrong"))
    assert refused.status_code == 401


async def test_forward_identity_and_certificate_can_be_turned_off(
        anyio_backend: str, pki: Pki, tmp_path: Path) -> None:
    write_site(tmp_path, pki, "OutOfProcess",
               tables={"module": {"forward_identity": False},
                       "integration": {"forward_client_certificate": False}})
    with started(tmp_path, anyio_backend) as url:
        by_password = (await get(url + "/whoami", pki, headers=basic(USER, PASSWORD))).json()
        assert by_password["authenticated"] is False
        by_certificate = (await get(url + "/whoami", pki, certificate=pki.client)).json()
        assert by_certificate["authenticated"] is False
        assert by_certificate["certificate"] is None
        # The module still authenticates: wrong credentials never reach the child.
        assert (await get(url + "/whoami", pki, headers=basic(USER, "x"))).status_code == 401


@pytest.mark.parametrize("model", ["InProcess", "OutOfProcess"])
async def test_claims_sample_adds_roles_from_its_configuration(
        anyio_backend: str, model: str, tmp_path: Path) -> None:
    shutil.copytree(SAMPLES / "claims", tmp_path, dirs_exist_ok=True)
    set_user(tmp_path / "users.txt", "alice", hash_password("a-pass", TEST_ITERATIONS))
    set_user(tmp_path / "users.txt", "bob", hash_password("b-pass", TEST_ITERATIONS))
    with Program(python("app.py", "--urls=http://127.0.0.1:0", f"--hosting_model={model}",
                        f"--async_backend={anyio_backend}"), cwd=tmp_path) as program:
        (url,) = program.wait_started()
        async with httpx.AsyncClient(timeout=TIMEOUT) as client:
            alice = (await client.get(url + "/", auth=("alice", "a-pass"))).json()
            bob_admin = await client.get(url + "/admin", auth=("bob", "b-pass"))
            anonymous_admin = await client.get(url + "/admin")
            alice_admin = await client.get(url + "/admin", auth=("alice", "a-pass"))
        assert alice == {"name": "alice", "authenticated": True,
                         "roles": ["admin", "editor"], "model": model}
        assert bob_admin.status_code == 403
        assert anonymous_admin.status_code == 401
        assert anonymous_admin.headers["www-authenticate"] == (
            'Basic realm="hostkit claims sample", charset="UTF-8"')
        assert alice_admin.status_code == 200


def test_anonymous_principals_are_alike_however_made_and_each_its_own() -> None:
    from hostkit import ClaimsIdentity, ClaimsPrincipal
    from hostkit.identity import new_anonymous_principal

    made = [ClaimsPrincipal(), ClaimsPrincipal.anonymous(), new_anonymous_principal()]
    for principal in made:
        assert len(principal.identities) == 1 and principal.identities is principal.identities
        assert not principal.identity.is_authenticated and principal.identity.claims == []
        assert repr(principal) == repr(ClaimsPrincipal([ClaimsIdentity()]))
    made[0].add_identity(ClaimsIdentity(authentication_type="test"))
    assert [len(principal.identities) for principal in made] == [2, 1, 1]
    made[1].identities = [ClaimsIdentity(authentication_type="set")]
    assert made[1].identity.is_authenticated and not made[2].identity.is_authenticated
