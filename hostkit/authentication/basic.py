"""The ``basic`` scheme (RFC 7617): a user name and password checked against the users file.

Password checks are deliberately slow (PBKDF2), so they run in worker threads, at most
:data:`CONCURRENT_CHECKS` at a time, and a successful check is remembered for
:data:`REMEMBER_SECONDS` (keyed by a keyed digest of the credentials, never the password
itself) so a client sending the same header on every request pays once. An unknown user
costs the same as a wrong password, so response times do not reveal which names exist.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import logging
import secrets
import time
from collections import OrderedDict
from pathlib import Path
from typing import TYPE_CHECKING

import anyio
import anyio.to_thread

from hostkit.authentication.passwords import (
    DEFAULT_ITERATIONS,
    check_hash,
    hash_password,
    verify_password,
)
from hostkit.authentication.scheme import AuthenticateResult
from hostkit.authentication.users_file import read_users
from hostkit.identity import Claim, ClaimsIdentity, ClaimsPrincipal, ClaimTypes

if TYPE_CHECKING:
    from hostkit.context import HttpContext

logger = logging.getLogger("hostkit.authentication")

CONCURRENT_CHECKS = 2
REMEMBER_SECONDS = 300.0
_REMEMBERED_MAX = 1024
AUTHENTICATION_TYPE = "Basic"


class BasicScheme:
    """Checks ``Authorization: Basic …`` against the users file at ``users_file``.

    The file is read when the scheme is made (a missing or malformed file is a
    configuration error then) and read again when it changes.
    """

    name = "basic"

    def __init__(self, users_file: Path):
        self.users_file = users_file
        self._users = read_users(users_file)
        self._stamp = self._file_stamp()
        self._decoy = self._make_decoy()
        self._limiter = anyio.CapacityLimiter(CONCURRENT_CHECKS)
        self._remember_key = secrets.token_bytes(32)
        self._remembered: OrderedDict[bytes, tuple[str, float]] = OrderedDict()

    def challenge(self, display_name: str) -> str:
        realm = (display_name or "hostkit").replace("\\", "\\\\").replace('"', '\\"')
        return f'Basic realm="{realm}", charset="UTF-8"'

    async def authenticate(self, context: HttpContext) -> AuthenticateResult:
        header = context.request.headers.get("authorization", "")
        kind, _, credentials = header.strip().partition(" ")
        if kind.lower() != "basic":
            return AuthenticateResult.no_result(self.name)
        try:
            decoded = base64.b64decode(credentials.strip(), validate=True).decode("utf-8")
        except (binascii.Error, UnicodeDecodeError):
            return AuthenticateResult.fail(self.name, "malformed Basic credentials")
        user, colon, password = decoded.partition(":")
        if not colon or not user:
            return AuthenticateResult.fail(self.name, "Basic credentials without user:password")
        if not await self._check(user, password):
            return AuthenticateResult.fail(self.name, f"wrong password for {user!r}")
        identity = ClaimsIdentity([Claim(ClaimTypes.NAME, user),
                                   Claim(ClaimTypes.NAME_IDENTIFIER, user)],
                                  AUTHENTICATION_TYPE)
        return AuthenticateResult.success(self.name, ClaimsPrincipal(identity))

    async def _check(self, user: str, password: str) -> bool:
        self._reload_if_changed()
        stored = self._users.get(user)
        key = hmac.new(self._remember_key, f"{user}:{password}".encode(),
                       hashlib.sha256).digest()
        now = time.monotonic()
        remembered = self._remembered.get(key)
        if remembered is not None and remembered[0] == stored and remembered[1] > now:
            return True
        async with self._limiter:
            ok = await anyio.to_thread.run_sync(
                verify_password, password, stored if stored is not None else self._decoy)
        if ok and stored is not None:
            self._remembered[key] = (stored, now + REMEMBER_SECONDS)
            if len(self._remembered) > _REMEMBERED_MAX:
                self._remembered.popitem(last=False)
            return True
        return False

    def _make_decoy(self) -> str:
        """A hash no password matches, as slow to check as the users' own: verifying against
        it makes an unknown user cost what a known one does."""
        iterations = max((check_hash(stored)[0] for stored in self._users.values()),
                         default=DEFAULT_ITERATIONS)
        return hash_password(secrets.token_urlsafe(16), iterations)

    def _file_stamp(self) -> tuple[int, int] | None:
        try:
            stat = self.users_file.stat()
        except OSError:
            return None
        return stat.st_mtime_ns, stat.st_size

    def _reload_if_changed(self) -> None:
        stamp = self._file_stamp()
        if stamp == self._stamp:
            return
        self._stamp = stamp
        try:
            self._users = read_users(self.users_file)
            self._decoy = self._make_decoy()
        except Exception as error:  # keep serving with the users we had
            logger.error("users file not reloaded, keeping the previous users: %s", error)
