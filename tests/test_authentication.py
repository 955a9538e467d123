"""Server authentication, the users file, forwarded identity and TLS settings, in memory.

The end-to-end matrix over both hosting models is in test_identity.py; these tests pin the
pieces: hashes, file errors, the MAC, the integration layer, configuration errors.
"""

from __future__ import annotations

import base64
import gc
import ssl
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import trustme

from hostkit import (
    Claim,
    ClaimsIdentity,
    ClaimsPrincipal,
    ConfigurationError,
    HttpContext,
    Pipeline,
    Stage,
)
from hostkit.authentication import (
    AuthenticateResult,
    AuthenticationMiddleware,
    Authenticator,
    BasicScheme,
    build_authenticator,
    certificate_principal,
    hash_password,
    verify_password,
)
from hostkit.authentication.passwords import MalformedHash
from hostkit.authentication.users_file import read_users, set_user
from hostkit.child_contract import ChildContract
from hostkit.claims import claims_transformation_middleware
from hostkit.configuration import load_configuration
from hostkit.pipeline import as_terminal_app
from hostkit.plugin_manager import Plugins

from hostkit_outofprocess.forwarded_identity import decode_identity, encode_identity
from hostkit_outofprocess.child.integration import IntegrationMiddleware
from tests.support.asgi import Exchange, ServerCycle, call, http_scope, stage

pytestmark = pytest.mark.anyio

FAST = 1000  # PBKDF2 iterations for tests; real files use the default


def basic_header(user: str, password: str) -> tuple[bytes, bytes]:
    return (b"authorization", b"Basic " + base64.b64encode(f"{user}:{password}".encode()))


# -- passwords and the users file -------------------------------------------------------------

def test_hashes_are_salted_and_verify_only_the_right_password() -> None:
    first, second = hash_password("s3cret", FAST), hash_password("s3cret", FAST)
    assert first != second  # a fresh salt each time
    assert first.startswith(f"pbkdf2_sha256${FAST}$")
    assert verify_password("s3cret", first) and verify_password("s3cret", second)
    assert not verify_password("s3cret ", first)
    with pytest.raises(MalformedHash):
        verify_password("x", "md5$1$abc$def")


def test_users_file_round_trip_keeps_comments(tmp_path: Path) -> None:
    path = tmp_path / "users.txt"
    assert set_user(path, "alice", hash_password("a", FAST)) is False
    set_user(path, "bob", hash_password("b", FAST))
    assert set_user(path, "alice", hash_password("a2", FAST)) is True
    assert list(read_users(path)) == ["bob", "alice"]
    assert path.read_text().startswith("# hostkit users file")
    assert path.stat().st_mode & 0o777 == 0o600
    assert set_user(path, "bob", None) is True
    assert list(read_users(path)) == ["alice"]


@pytest.mark.parametrize("line, problem", [
    ("alice", "expected NAME:HASH"),
    ("alice:plain-password", "expected pbkdf2_sha256"),
    ("alice:pbkdf2_sha256$many$AAAA$BBBB", "must be a number"),
    (":pbkdf2_sha256$1$AAAA$" + "A" * 44, "cannot be a user name"),
])
def test_a_malformed_users_file_names_file_and_line(tmp_path: Path, line: str,
                                                    problem: str) -> None:
    path = tmp_path / "users.txt"
    path.write_text(f"# users\n\n{line}\n")
    with pytest.raises(ConfigurationError, match=rf"{path}, line 3: .*{problem}"):
        read_users(path)


def test_the_cli_adds_lists_and_removes_users(tmp_path: Path) -> None:
    def hostkit(*args: str, stdin: str = "") -> subprocess.CompletedProcess[str]:
        return subprocess.run([sys.executable, "-m", "hostkit", "users", *args,
                               f"--content_root={tmp_path}"], input=stdin, text=True,
                              capture_output=True, timeout=30)

    added = hostkit("add", "alice", "--password-stdin", "--iterations=1000", stdin="pw\n")
    assert added.returncode == 0, added.stderr
    users = read_users(tmp_path / "users.txt")
    assert verify_password("pw", users["alice"])
    assert hostkit("list").stdout.split() == ["alice"]
    assert hostkit("add", "a:b", "--password-stdin", stdin="pw\n").returncode == 1
    assert hostkit("remove", "alice").returncode == 0
    missing = hostkit("remove", "alice")
    assert missing.returncode == 1 and "no user 'alice'" in missing.stderr


# -- the basic scheme -------------------------------------------------------------------------

@pytest.fixture
def users(tmp_path: Path) -> Path:
    path = tmp_path / "users.txt"
    set_user(path, "alice", hash_password("wonderland", FAST))
    return path


async def authenticate(scheme: Any, headers: list[tuple[bytes, bytes]]) -> AuthenticateResult:
    exchange = Exchange()
    context = HttpContext(http_scope(headers=headers), exchange.receive, exchange.send)
    return await scheme.authenticate(context)  # type: ignore[no-any-return]


async def test_basic_scheme_outcomes(users: Path) -> None:
    scheme = BasicScheme(users)
    ok = await authenticate(scheme, [basic_header("alice", "wonderland")])
    assert ok.succeeded and ok.principal is not None
    assert ok.principal.identity.name == "alice"
    assert ok.principal.identity.authentication_type == "Basic"
    assert (await authenticate(scheme, [basic_header("alice", "nope")])).failure
    assert (await authenticate(scheme, [basic_header("mallory", "wonderland")])).failure
    assert (await authenticate(scheme, [(b"authorization", b"Basic %%%")])).failure
    none = await authenticate(scheme, [(b"authorization", b"Bearer x")])
    assert not none.succeeded and none.failure is None
    # A remembered success does not outlive a password change.
    set_user(users, "alice", hash_password("changed", FAST))
    assert (await authenticate(scheme, [basic_header("alice", "wonderland")])).failure
    assert (await authenticate(scheme, [basic_header("alice", "changed")])).succeeded


async def test_a_users_file_broken_while_running_keeps_the_previous_users(users: Path) -> None:
    scheme = BasicScheme(users)
    users.write_text("this is not a users file\n")
    assert (await authenticate(scheme, [basic_header("alice", "wonderland")])).succeeded


# -- the certificate scheme -------------------------------------------------------------------

def test_certificate_principal_has_the_subject_claims() -> None:
    leaf = trustme.CA().issue_cert("bob@example.org", common_name="bob",
                                   organization_name="Example", organization_unit_name="Ops")
    der = leaf.cert_chain_pems[0].bytes()
    principal = certificate_principal(ssl.PEM_cert_to_DER_cert(der.decode()))
    identity = principal.identity
    assert identity.name == "bob" and identity.authentication_type == "Certificate"
    assert identity.has_claim("o", "Example") and identity.has_claim("ou", "Ops")
    assert identity.find_first("x500distinguishedname") is not None
    with pytest.raises(ValueError):
        certificate_principal(b"not a certificate")


# -- the authentication layer -----------------------------------------------------------------

class Always:
    """A scheme with a fixed outcome, to test how the authenticator combines schemes."""

    def __init__(self, name: str, result: str):
        self.name = name
        self.result = result

    async def authenticate(self, context: HttpContext) -> AuthenticateResult:
        if self.result == "fail":
            return AuthenticateResult.fail(self.name, "no")
        if self.result == "ok":
            return AuthenticateResult.success(self.name, ClaimsPrincipal(
                ClaimsIdentity([Claim("name", self.name)], self.name)))
        return AuthenticateResult.no_result(self.name)

    def challenge(self, display_name: str) -> str:
        return f"{self.name} realm={display_name}"


@pytest.mark.parametrize("outcomes, status, user", [
    (["none", "ok"], 200, "b"),
    (["ok", "ok"], 200, "a"),
    (["ok", "fail"], 401, None),  # wrong credentials are refused even next to good ones
    (["none", "none"], 200, None),
])
async def test_the_authenticator_combines_schemes(outcomes: list[str], status: int,
                                                  user: str | None) -> None:
    names = ["a", "b"]
    authenticator = Authenticator([Always(n, o) for n, o in zip(names, outcomes)], "Site")
    seen: list[Any] = []

    async def app(scope: Any, receive: Any, send: Any) -> None:
        seen.append(scope.get("user"))
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b""})

    layer = AuthenticationMiddleware(app, authenticator=authenticator, automatic=True,
                                     forwarded=False)
    exchange = await call(layer)
    assert exchange.status == status
    if status == 401:
        assert seen == []
        start = next(m for m in exchange.sent if m["type"] == "http.response.start")
        assert [v for k, v in start["headers"] if k == b"www-authenticate"] == [
            b"a realm=Site", b"b realm=Site"]
    else:
        principal = seen[0]
        assert (principal.identity.name if principal is not None else None) == user


# -- the forwarded identity -------------------------------------------------------------------

def forwarded_result() -> AuthenticateResult:
    identity = ClaimsIdentity([Claim("name", "alice"), Claim("role", "admin")], "Basic")
    return AuthenticateResult.success("basic", ClaimsPrincipal(identity))


def test_identity_round_trips_only_with_the_same_token() -> None:
    value = encode_identity(forwarded_result(), b"token-one")
    decoded = decode_identity(value, b"token-one")
    assert decoded is not None and decoded.principal is not None
    assert decoded.scheme == "basic"
    assert decoded.principal.identity.name == "alice"
    assert decoded.principal.is_in_role("admin")
    assert decode_identity(value, b"token-two") is None  # another child start
    payload, _, mac = value.partition(b".")
    forged = base64.urlsafe_b64encode(base64.urlsafe_b64decode(payload).replace(
        b"alice", b"admin"))
    assert decode_identity(forged + b"." + mac, b"token-one") is None
    assert decode_identity(b"garbage", b"token-one") is None


async def test_integration_accepts_only_identities_made_with_its_token() -> None:
    contract = ChildContract(port=1, token="T" * 43, path_base="/")
    seen: list[Any] = []

    async def app(scope: Any, receive: Any, send: Any) -> None:
        seen.append(scope)
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b""})

    layer = IntegrationMiddleware(app, contract=contract)
    token = contract.token.encode()
    good = encode_identity(forwarded_result(), token)
    stale = encode_identity(forwarded_result(), b"an earlier child's token")
    for headers, status in [
        ([(b"hostkit-token", token), (b"hostkit-identity", good)], 200),
        ([(b"hostkit-token", token), (b"hostkit-identity", stale)], 400),
        ([(b"hostkit-token", token), (b"hostkit-identity", good),
          (b"hostkit-identity", good)], 400),
        ([(b"hostkit-token", token), (b"hostkit-client-cert", b"%%%")], 400),
    ]:
        exchange = await call(layer, http_scope(headers=headers))
        assert exchange.status == status, headers
    assert len(seen) == 1
    assert all(not name.startswith(b"hostkit-") for name, _ in seen[0]["headers"])


# -- configuration ----------------------------------------------------------------------------

def site(tmp_path: Path, text: str) -> Path:
    (tmp_path / "hostkit.toml").write_text(text)
    return tmp_path


def test_a_missing_certificate_file_names_key_and_path(tmp_path: Path) -> None:
    site(tmp_path, 'urls = ["https://127.0.0.1:0"]\n[tls]\ncertificate = "nope.pem"\n'
                   'private_key = "nope.key"\n')
    with pytest.raises(ConfigurationError,
                       match=r"hostkit.toml.*tls.certificate = 'nope.pem': no such file "
                             rf"\({tmp_path / 'nope.pem'}\)"):
        load_configuration([], {}, content_root=tmp_path)


def test_client_certificates_need_a_client_ca(tmp_path: Path) -> None:
    (tmp_path / "s.pem").write_text("x")
    site(tmp_path, 'urls = ["https://127.0.0.1:0"]\n[tls]\ncertificate = "s.pem"\n'
                   'private_key = "s.pem"\nclient_certificate_mode = "required"\n')
    with pytest.raises(ConfigurationError, match=r"needs tls.client_ca"):
        load_configuration([], {}, content_root=tmp_path)


@pytest.mark.parametrize("text, problem", [
    ('[authentication]\nschemes = ["kerberos"]\n',
     r"unknown scheme 'kerberos'; allowed: basic, certificate"),
    ('[authentication]\nschemes = ["certificate"]\n',
     r"'certificate' but tls.client_certificate_mode is 'none'"),
    ('[authentication]\nschemes = ["basic"]\n',
     r"authentication.users_file = 'users.txt' \(the default\): no such file .*hostkit users add"),
    ('[authentication]\nschemes = ["basic", "BASIC"]\n', r"lists 'basic' twice"),
])
def test_authentication_configuration_errors(tmp_path: Path, text: str, problem: str) -> None:
    configuration = load_configuration([], {}, content_root=site(tmp_path, text))
    with pytest.raises(ConfigurationError, match=problem):
        build_authenticator(configuration, [])


def test_no_schemes_means_no_authenticator(tmp_path: Path) -> None:
    assert build_authenticator(load_configuration([], {}, content_root=tmp_path), []) is None


async def test_authenticated_requests_leave_no_reference_cycles(users: Path) -> None:
    """The layers' per-request callables are let go with the request, so the collector has
    nothing to do (its pauses would show as latency under load)."""
    pipeline = Pipeline()
    pipeline.use_asgi_middleware(
        AuthenticationMiddleware, Stage.AUTHENTICATION, automatic=False, forwarded=False,
        authenticator=Authenticator([BasicScheme(users)]))
    transform = claims_transformation_middleware(Plugins().manager, [lambda p, c: p])
    assert transform is not None
    pipeline.use(transform, Stage.AUTHENTICATION)

    async def whoami(context: HttpContext) -> None:
        await context.response.write((await context.authenticate()).identity.name or "")

    served = stage(pipeline.build(as_terminal_app(whoami)))
    gc.collect()
    gc.disable()
    try:
        for _ in range(20):
            scope = http_scope(headers=[basic_header("alice", "wonderland")])
            exchange = await call(served, scope, ServerCycle(scope))
            assert exchange.body == b"alice"
        assert gc.collect() == 0
    finally:
        gc.enable()
