"""The frame headers of what a WebSocket client sends, read before wsproto parses the frames.

A frame header (RFC 6455 §5.2) declares its payload's length before the payload comes, up to
2**63 - 1 bytes. wsproto hands a payload on piece by piece as it arrives, and hypercorn counts
a message against ``websocket_max_message_size`` only as it buffers those pieces, so a client
declaring 2**62 bytes is answered only once the limit's worth has arrived and been buffered.
:class:`MessageLengths` reads the headers as the bytes come and says at once when a frame
would take its message past the limit: the server then closes with 1009 (message too big)
without reading or buffering that payload (``hypercorn_internals.py``).
"""

from __future__ import annotations

_FIN = 0x80
_OPCODE = 0x0F
_CONTROL = 0x08
_CONTINUATION = 0x0
_MASKED = 0x80
_LENGTH = 0x7F


def _header_size(first_two: bytes | bytearray) -> int:
    """The size of a frame header from its first two bytes: 2, the extended length (2 or 8),
    and the masking key (4) when the frame is masked."""
    length = first_two[1] & _LENGTH
    extended = 2 if length == 126 else 8 if length == 127 else 0
    return 2 + extended + (4 if first_two[1] & _MASKED else 0)


def _payload_length(header: bytes | bytearray) -> int:
    length = header[1] & _LENGTH
    if length == 126:
        return int.from_bytes(header[2:4], "big")
    if length == 127:
        return int.from_bytes(header[2:10], "big")
    return length


class MessageLengths:
    """The frames of one WebSocket connection's client-to-server bytes, fed in order as they
    arrive (frame headers may be split across feeds)."""

    def __init__(self, limit: int):
        self.limit = limit
        self._header = bytearray()
        self._payload_left = 0
        #: payload bytes declared so far by the data frames of the message being received
        self._message = 0

    def feed(self, data: bytes) -> int | None:
        """``None`` while every message stays within ``limit`` bytes; otherwise the offset
        in ``data`` at which the header of the frame that would take its message past the
        limit begins (0 when it began in an earlier feed): the bytes before it may be
        parsed, that frame may not."""
        position = 0
        size = len(data)
        while position < size:
            if self._payload_left:
                taken = min(self._payload_left, size - position)
                self._payload_left -= taken
                position += taken
                continue
            header_began = position - len(self._header)
            needed = 2 if len(self._header) < 2 else _header_size(self._header)
            while len(self._header) < needed and position < size:
                self._header.append(data[position])
                position += 1
                if len(self._header) == 2:
                    needed = _header_size(self._header)
            if len(self._header) < needed:
                return None  # the rest of this header comes in a later feed
            header, self._header = self._header, bytearray()
            length = _payload_length(header)
            opcode = header[0] & _OPCODE
            if not opcode & _CONTROL:
                message = length + (self._message if opcode == _CONTINUATION else 0)
                if message > self.limit:
                    return max(header_began, 0)
                self._message = 0 if header[0] & _FIN else message
            self._payload_left = length
        return None
