"""The users file of the ``basic`` scheme: who may sign in, and their password hashes.

Format (UTF-8 text, one user per line)::

    # comments and blank lines are ignored
    alice:pbkdf2_sha256$600000$<salt base64>$<hash base64>

A name is any text without ``:`` or control characters (RFC 7617 forbids ``:`` in a
user-id). Write the file with ``hostkit users add NAME`` / ``hostkit users remove NAME``.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

from hostkit.authentication.passwords import MalformedHash, check_hash
from hostkit.errors import ConfigurationError


def check_name(name: str) -> str:
    """``name`` if it can be a user name; else ``ValueError`` saying why."""
    if not name or ":" in name or any(ord(ch) < 0x20 or ord(ch) == 0x7F for ch in name) \
            or name != name.strip():
        raise ValueError(f"{name!r} cannot be a user name: it must be non-empty, without ':', "
                         "control characters or surrounding spaces")
    return name


def read_users(path: Path) -> dict[str, str]:
    """The users of ``path``, name → stored hash.

    Raises :class:`hostkit.ConfigurationError` naming the file and line of the first bad
    line, and when the file cannot be read.
    """
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as error:
        raise ConfigurationError(f"users file {path}: cannot be read: {error}") from None
    users: dict[str, str] = {}
    for number, line in enumerate(text.splitlines(), start=1):
        stripped = line.strip()
        if not stripped or stripped.startswith("#"):
            continue
        name, colon, encoded = stripped.partition(":")
        try:
            if not colon:
                raise ValueError("expected NAME:HASH")
            check_name(name)
            check_hash(encoded)
        except (ValueError, MalformedHash) as error:
            raise ConfigurationError(f"{path}, line {number}: {error}") from None
        if name in users:
            raise ConfigurationError(f"{path}, line {number}: user {name!r} appears twice")
        users[name] = encoded
    return users


def set_user(path: Path, name: str, encoded: str | None) -> bool:
    """Add or replace ``name`` (``encoded`` a stored hash), or remove it (``None``).

    Keeps every other line, comments included, and replaces the file atomically, readable
    by its owner only when it is new. Returns whether the user existed before.
    """
    check_name(name)
    if path.exists():
        read_users(path)  # refuse to rewrite a malformed file
        lines = path.read_text(encoding="utf-8").splitlines()
    else:
        lines = ["# hostkit users file (basic authentication): "
                 "NAME:pbkdf2_sha256$ITERATIONS$SALT$HASH"]
    kept = [line for line in lines if line.strip().partition(":")[0] != name
            or line.strip().startswith("#")]
    existed = len(kept) != len(lines)
    if encoded is not None:
        kept.append(f"{name}:{encoded}")
    path.parent.mkdir(parents=True, exist_ok=True)
    mode = path.stat().st_mode & 0o777 if path.exists() else 0o600
    with tempfile.NamedTemporaryFile("w", encoding="utf-8", dir=path.parent, delete=False,
                                     prefix=f".{path.name}.") as temporary:
        temporary.write("\n".join(kept) + "\n")
    os.chmod(temporary.name, mode)
    os.replace(temporary.name, path)
    return existed
