"""Request ids: unique and cheap to make, after ASP.NET Core's ``TraceIdentifier``.

An id is a random prefix chosen once per process and a counter in hexadecimal,
``0HN7K3F2QJ1ABC:1F``: unique across processes (the prefix: 65 random bits in 13 base-32
characters) and within one (the counter). A client's ``X-Request-Id`` is kept
only when :func:`valid_client_id` accepts it and the peer is a known proxy (the caller decides
that: :meth:`hostkit.gateway.Gateway.request_id`).
"""

from __future__ import annotations

import itertools
import re
import secrets
from collections.abc import Callable

#: The response header (and, OutOfProcess, the front → child header) carrying the id.
REQUEST_ID_HEADER = b"x-request-id"
#: The longest client id kept; a longer one is replaced by a new id.
MAX_CLIENT_ID_LENGTH = 200

_BASE32 = "0123456789ABCDEFGHIJKLMNOPQRSTUV"
_printable = re.compile(rb"[\x20-\x7e]{1,%d}" % MAX_CLIENT_ID_LENGTH).fullmatch


def _random_prefix() -> str:
    number = secrets.randbits(65)
    return "0" + "".join(_BASE32[(number >> shift) & 31] for shift in range(60, -1, -5))


class RequestIds:
    """Makes the ids of one process: :attr:`new` per request."""

    __slots__ = ("prefix", "new")

    def __init__(self) -> None:
        #: What every id of this process starts with (the random part and ``:``).
        self.prefix = _random_prefix() + ":"
        #: A new id, never given out before by this process: the prefix and the counter in
        #: hexadecimal. Made by C-level calls alone (no Python frame): it runs per request.
        self.new: Callable[[], str] = map(
            self.prefix.__add__, map("%X".__mod__, itertools.count(1))).__next__


def valid_client_id(value: bytes) -> str | None:
    """``value`` (an ``X-Request-Id`` a client sent) as text when it is printable ASCII of 1 to
    :data:`MAX_CLIENT_ID_LENGTH` characters, else None."""
    if _printable(value) is None:
        return None
    return value.decode("ascii")


#: This process's ids: what the gateway gives out, and ``context.trace_identifier`` when
#: nothing set one.
PROCESS_REQUEST_IDS = RequestIds()
