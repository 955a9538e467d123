"""Salted PBKDF2-SHA256 password hashes (standard library ``hashlib``).

A hash is one text field, ``pbkdf2_sha256$ITERATIONS$SALT$HASH`` (salt and hash in
base64), the format Django uses, so the iteration count can rise without breaking stored
hashes.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets

ALGORITHM = "pbkdf2_sha256"
#: OWASP's 2023 recommendation for PBKDF2-HMAC-SHA256.
DEFAULT_ITERATIONS = 600_000
_SALT_BYTES = 16


class MalformedHash(ValueError):
    """A stored hash that is not ``pbkdf2_sha256$ITERATIONS$SALT$HASH``."""


def hash_password(password: str, iterations: int = DEFAULT_ITERATIONS) -> str:
    """A new salted hash of ``password``."""
    salt = secrets.token_bytes(_SALT_BYTES)
    digest = hashlib.pbkdf2_hmac("sha256", password.encode("utf-8"), salt, iterations)
    return f"{ALGORITHM}${iterations}${_b64(salt)}${_b64(digest)}"


def check_hash(encoded: str) -> tuple[int, bytes, bytes]:
    """The iterations, salt and digest of a stored hash. Raises :class:`MalformedHash`."""
    parts = encoded.split("$")
    if len(parts) != 4 or parts[0] != ALGORITHM:
        raise MalformedHash(f"expected {ALGORITHM}$ITERATIONS$SALT$HASH")
    try:
        iterations = int(parts[1])
        salt = base64.b64decode(parts[2], validate=True)
        digest = base64.b64decode(parts[3], validate=True)
    except ValueError:
        raise MalformedHash("the iterations must be a number and the salt and hash base64") \
            from None
    if iterations < 1 or not salt or len(digest) != hashlib.sha256().digest_size:
        raise MalformedHash("the iterations, salt or hash are out of range")
    return iterations, salt, digest


def verify_password(password: str, encoded: str) -> bool:
    """Whether ``password`` matches the stored hash; compared in constant time."""
    iterations, salt, expected = check_hash(encoded)
    digest = hashlib.pbkdf2_hmac("sha256", password.encode("utf-8"), salt, iterations)
    return hmac.compare_digest(digest, expected)


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")
