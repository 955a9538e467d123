"""HTTP/1.1 status lines with the standard reason phrase, made once for every server.

uvicorn, Kestrel, IIS and nginx send the standard phrase (``HTTP/1.1 200 OK``); so does every
server that owns a public listener in hostkit, whichever plugin it is, from this one table.
"""

from __future__ import annotations

import http

#: The standard phrase of each status code ``http.HTTPStatus`` knows.
STANDARD_PHRASES: dict[int, bytes] = {
    status.value: status.phrase.encode("ascii") for status in http.HTTPStatus}
#: The HTTP/1.1 status line (CRLF included) of each standard code, with its standard phrase.
STANDARD_STATUS_LINES: dict[int, bytes] = {
    code: b"HTTP/1.1 %d %s\r\n" % (code, phrase) for code, phrase in STANDARD_PHRASES.items()}


def status_line(status: int, reason: bytes = b"") -> bytes:
    """The HTTP/1.1 status line of a response: with ``reason`` when one was chosen, else with
    the standard phrase (none for a status without one)."""
    if not reason or reason == STANDARD_PHRASES.get(status):
        line = STANDARD_STATUS_LINES.get(status)
        if line is not None:
            return line
    return b"HTTP/1.1 %d %s\r\n" % (status, reason)
