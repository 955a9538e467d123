"""HTTP/2 flood defences: the frames a client sends, counted against budgets.

An HTTP/2 server does work for frames that carry no request: it acknowledges every SETTINGS
and PING, tears down a stream for every RST_STREAM, reassembles CONTINUATION frames until a
header block ends, and reads empty, PRIORITY and WINDOW_UPDATE frames. A client that sends
those as fast as it can (CVE-2019-9512/9515/9518, rapid reset CVE-2023-44487, the CONTINUATION
flood CVE-2024-27316) costs the server far more than it costs the client. The ``h2`` library
(the HTTP/2 state machine hostkit's servers use) enforces the protocol, not rates; so every
server that speaks HTTP/2 on a public listener feeds the client's bytes to a
:class:`FrameWatch` before ``h2`` sees them, and on a violation sends ``GOAWAY`` with
``ENHANCE_YOUR_CALM`` and closes the connection.

:class:`FrameWatch` reads only frame headers (9 bytes each; one byte more of a padded DATA or
HEADERS frame), so its cost is per frame, not per byte. Rates are token buckets, as nghttp2
bounds stream resets (a burst, then a steady rate): a budget holds ``burst`` frames and refills
``per_second`` frames a second, so a legitimate client (a browser, ``h2load`` with many
streams, a long download that sends WINDOW_UPDATE frames) never runs out, and a flood runs out
after ``burst`` frames plus what the refill gave during the flood. The header-block bounds are
absolute, as Go's ``x/net/http2`` and nghttp2 bound them after CVE-2024-27316: a block longer
than the header-list limit (plus slack for HPACK's and padding's overhead) or of more
CONTINUATION frames than such a block needs. New streams are bounded per ``feed`` as nginx
bounds them per read after CVE-2023-44487: a client cannot have more than
``max_concurrent_streams`` open, so more than twice that many new streams in one read is a
flood, whatever the server answered meanwhile.
"""

from __future__ import annotations

import dataclasses
import struct
import time
from collections.abc import Callable
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from hostkit.configuration.tables import ServerOptions

__all__ = ["Budget", "FloodLimits", "FrameWatch", "CLIENT_PREFACE", "ENHANCE_YOUR_CALM"]

#: The client connection preface (RFC 9113 §3.4), which precedes the client's first frame.
CLIENT_PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"
#: The GOAWAY error code of a connection closed for a flood (RFC 9113 §7).
ENHANCE_YOUR_CALM = 0xB

_FRAME_HEADER = 9
#: A frame header: the length's top 16 bits and low 8, the type, the flags, the stream id.
_unpack_header = struct.Struct(">HBBBL").unpack_from
_DATA, _HEADERS, _PRIORITY, _RST_STREAM, _SETTINGS = 0x0, 0x1, 0x2, 0x3, 0x4
_PUSH_PROMISE, _PING, _GOAWAY, _WINDOW_UPDATE, _CONTINUATION = 0x5, 0x6, 0x7, 0x8, 0x9
_KNOWN_TYPES = frozenset(range(0xA))
_END_STREAM, _ACK, _END_HEADERS, _PADDED, _PRIORITY_FLAG = 0x1, 0x1, 0x4, 0x8, 0x20
#: Bytes a header block may have beyond ``max_header_list_size``: a block is HPACK-encoded
#: (rarely larger than the list it decodes to, which counts 32 bytes more per field) and may
#: carry padding and a dynamic-table size update.
_HEADER_BLOCK_SLACK = 1024
#: The frame size every peer accepts (SETTINGS_MAX_FRAME_SIZE's initial value).
_MIN_FRAME_SIZE = 16384


@dataclasses.dataclass(frozen=True)
class Budget:
    """A token bucket of frames: ``burst`` at once, refilled at ``per_second``."""

    burst: int
    per_second: float


@dataclasses.dataclass(frozen=True)
class FloodLimits:
    """What one HTTP/2 connection's client may send (see the module's docstring for why).

    ``max_concurrent_streams`` and ``max_header_list_size`` are the server's own settings
    (``[server] http2_max_concurrent_streams`` and ``http2_max_header_list_size``: the server
    advertises them in its SETTINGS too); the budgets are hostkit's, each a :class:`Budget` of
    one kind of frame.
    """

    max_concurrent_streams: int = 100
    max_header_list_size: int = 65536
    #: SETTINGS frames that are not ACKs (a client sends one or two per connection).
    settings: Budget = Budget(32, 4)
    #: PING frames that are not ACKs (liveness checks: a few a minute).
    pings: Budget = Budget(64, 16)
    #: RST_STREAM frames from the client; ``None``: twice ``max_concurrent_streams`` (all its
    #: streams cancelled, twice over) and 33 a second, nghttp2's rate.
    resets: Budget | None = None
    #: DATA frames without data or END_STREAM, HEADERS and CONTINUATION frames without a
    #: byte of header block or END_HEADERS: they do nothing.
    empty_frames: Budget = Budget(32, 8)
    #: PRIORITY frames (a client may send a few per stream it opens).
    priorities: Budget = Budget(256, 128)
    #: WINDOW_UPDATE frames (one per half window a stream or the connection reads: a client
    #: with the smallest window reading 100 MB/s sends about 6,400 a second).
    window_updates: Budget = Budget(20_000, 20_000)
    #: Frames of a type RFC 9113 does not define (an extension's, which a server ignores).
    unknown_frames: Budget = Budget(64, 16)

    @classmethod
    def of(cls, server_options: ServerOptions) -> FloodLimits:
        """The limits of a server's ``[server]`` settings, with hostkit's budgets."""
        return cls(max_concurrent_streams=server_options.http2_max_concurrent_streams,
                   max_header_list_size=server_options.http2_max_header_list_size)

    @property
    def reset_budget(self) -> Budget:
        """The budget of the client's RST_STREAM frames (:attr:`resets` or its default)."""
        if self.resets is not None:
            return self.resets
        return Budget(max(2 * self.max_concurrent_streams, 100), 33)

    @property
    def max_header_block(self) -> int:
        """Bytes a header block (HEADERS or PUSH_PROMISE and its CONTINUATION frames, padding
        included) may have before it is a flood."""
        return self.max_header_list_size + _HEADER_BLOCK_SLACK

    @property
    def max_continuations(self) -> int:
        """CONTINUATION frames one header block may have: what a block of
        :attr:`max_header_block` bytes needs in frames of the smallest size, and four more
        (nghttp2 allows 8 for its 64 KiB limit; this gives 9)."""
        return -(-self.max_header_block // _MIN_FRAME_SIZE) + 4


class _Bucket:
    """One :class:`Budget` being spent."""

    __slots__ = ("burst", "per_second", "tokens", "updated")

    def __init__(self, budget: Budget, now: float):
        self.burst = float(budget.burst)
        self.per_second = float(budget.per_second)
        self.tokens = self.burst
        self.updated = now

    def take(self, now: float) -> bool:
        """Spend one frame at ``now``; False when the budget has none left."""
        tokens = self.tokens + (now - self.updated) * self.per_second
        self.updated = now
        if tokens > self.burst:
            tokens = self.burst
        if tokens < 1.0:
            self.tokens = tokens
            return False
        self.tokens = tokens - 1.0
        return True


class FrameWatch:
    """Reads the frame headers of every byte a client sends on one HTTP/2 connection
    (the server feeds it the bytes before it gives them to h2) and counts what floods are
    made of: SETTINGS and PING frames (not ACKs), RST_STREAM from the client (rapid reset),
    HEADERS opening streams, CONTINUATION frames and bytes of one header block, empty frames,
    PRIORITY, WINDOW_UPDATE and unknown frames.

    Made once per connection, when it turns out to be HTTP/2 (ALPN ``h2``, or the preface of
    prior knowledge), and fed every byte the client sends from then on, in order. It judges
    only rates and sizes; whether a frame is valid is the ``h2`` library's business.
    """

    def __init__(self, limits: FloodLimits, *, preface: bool = True,
                 clock: Callable[[], float] = time.monotonic):
        self.limits = limits
        self._clock = clock
        now = clock()
        self._settings = _Bucket(limits.settings, now)
        self._pings = _Bucket(limits.pings, now)
        self._resets = _Bucket(limits.reset_budget, now)
        self._empty = _Bucket(limits.empty_frames, now)
        self._priorities = _Bucket(limits.priorities, now)
        self._window_updates = _Bucket(limits.window_updates, now)
        self._unknown = _Bucket(limits.unknown_frames, now)
        self._max_new_streams = 2 * limits.max_concurrent_streams
        self._max_block = limits.max_header_block
        self._max_continuations = limits.max_continuations
        #: preface bytes still to skip
        self._preface = len(CLIENT_PREFACE) if preface else 0
        #: the start of a frame header split across feeds
        self._partial = b""
        #: payload bytes of the current frame still to skip
        self._skip = 0
        #: the current frame (type, flags, length) while its pad-length byte is awaited
        self._awaiting_pad: tuple[int, int, int] | None = None
        #: the header block being received: its bytes and CONTINUATION frames so far
        #: (``_block_bytes`` is -1 between blocks)
        self._block_bytes = -1
        self._continuations = 0
        #: the highest stream id a client's HEADERS opened
        self.last_stream_id = 0
        #: frames read so far (complete headers), for the log line and tests
        self.frames = 0
        #: why the client is past its limits (``None``: it is not); once set, it stays
        self.violation: str | None = None

    def feed(self, data: bytes) -> str | None:
        """None while the client stays within the limits; otherwise why not (for one log
        line): the server then sends GOAWAY with ENHANCE_YOUR_CALM and closes.

        Call it with each chunk of bytes read from the client (decrypted), before ``h2``
        gets the chunk; a frame header may be split across calls. A chunk that returns a
        reason should not be given to ``h2`` at all. Once a reason is returned, every later
        call returns it again."""
        if self.violation is not None:
            return self.violation
        size = len(data)
        offset = 0
        if self._preface:
            taken = min(self._preface, size)
            self._preface -= taken
            offset = taken
        if self._awaiting_pad is not None and offset < size:
            kind, flags, length = self._awaiting_pad
            self._awaiting_pad = None
            self._skip = length
            reason = self._payload_start(kind, flags, length, data[offset])
            if reason is not None:
                return self._violate(reason)
        if self._skip:
            taken = min(self._skip, size - offset)
            self._skip -= taken
            offset += taken
        now = self._clock()
        new_streams = 0
        while offset < size:
            if self._partial:
                needed = _FRAME_HEADER - len(self._partial)
                self._partial += bytes(data[offset:offset + needed])
                offset += min(needed, size - offset)
                if len(self._partial) < _FRAME_HEADER:
                    break
                header = self._partial
                self._partial = b""
                start = 0
            elif size - offset < _FRAME_HEADER:
                self._partial = bytes(data[offset:])
                break
            else:
                header = data
                start = offset
                offset += _FRAME_HEADER
            high, low, kind, flags, stream_id = _unpack_header(header, start)
            length = (high << 8) | low
            stream_id &= 0x7FFFFFFF
            self.frames += 1
            reason, opened = self._frame(kind, flags, length, stream_id, now)
            if reason is not None:
                return self._violate(reason)
            if opened:
                new_streams += 1
                if new_streams > self._max_new_streams:
                    return self._violate(
                        f"stream flood: {new_streams} new streams in one read (the limit is "
                        f"{self.limits.max_concurrent_streams} open at once)")
            # A padded DATA or HEADERS frame: its first byte says how much is padding.
            if length and flags & _PADDED and kind in (_DATA, _HEADERS):
                if offset < size:
                    reason = self._payload_start(kind, flags, length, data[offset])
                    if reason is not None:
                        return self._violate(reason)
                else:
                    self._awaiting_pad = (kind, flags, length)
                    break
            taken = min(length, size - offset)
            self._skip = length - taken
            offset += taken
        return None

    def _violate(self, reason: str) -> str:
        self.violation = reason
        return reason

    def _frame(self, kind: int, flags: int, length: int, stream_id: int,
               now: float) -> tuple[str | None, bool]:
        """Count one frame whose header was just read: (why it breaks a limit or ``None``,
        whether it opens a stream)."""
        if self._block_bytes >= 0 and kind != _CONTINUATION:
            self._block_bytes = -1  # h2 rejects the frame; the block is over either way
        if kind == _DATA:
            if length == 0 and not flags & _END_STREAM and not self._empty.take(now):
                return self._flood("empty frame", self.limits.empty_frames), False
            return None, False
        if kind == _HEADERS:
            opened = stream_id > self.last_stream_id and stream_id & 1 == 1
            if opened:
                self.last_stream_id = stream_id
            if not flags & _PADDED:
                reason = self._header_block(flags, length - (5 if flags & _PRIORITY_FLAG else 0),
                                            now)
                if reason is not None:
                    return reason, opened
            return None, opened
        if kind == _CONTINUATION:
            if self._block_bytes < 0:
                return None, False  # not in a block: h2's protocol error, not a flood
            self._continuations += 1
            if self._continuations > self._max_continuations:
                return (f"CONTINUATION flood: more than {self._max_continuations} "
                        "CONTINUATION frames in one header block"), False
            return self._block_part(flags, length, now), False
        if kind == _SETTINGS:
            if not flags & _ACK and not self._settings.take(now):
                return self._flood("SETTINGS", self.limits.settings), False
            return None, False
        if kind == _PING:
            if not flags & _ACK and not self._pings.take(now):
                return self._flood("PING", self.limits.pings), False
            return None, False
        if kind == _RST_STREAM:
            if not self._resets.take(now):
                return self._flood("RST_STREAM (rapid reset)", self.limits.reset_budget), False
            return None, False
        if kind == _PRIORITY:
            if not self._priorities.take(now):
                return self._flood("PRIORITY", self.limits.priorities), False
            return None, False
        if kind == _WINDOW_UPDATE:
            if not self._window_updates.take(now):
                return self._flood("WINDOW_UPDATE", self.limits.window_updates), False
            return None, False
        if kind == _PUSH_PROMISE or kind == _GOAWAY:
            return None, False  # a client's PUSH_PROMISE is h2's protocol error; GOAWAY ends
        if kind not in _KNOWN_TYPES and not self._unknown.take(now):
            return self._flood("unknown-type frame", self.limits.unknown_frames), False
        return None, False

    def _payload_start(self, kind: int, flags: int, length: int, pad_length: int) -> str | None:
        """Count a padded DATA or HEADERS frame once its pad-length byte is in."""
        content = length - 1 - pad_length
        now = self._clock()
        if kind == _DATA:
            if content <= 0 and not flags & _END_STREAM and not self._empty.take(now):
                return self._flood("empty frame", self.limits.empty_frames)
            return None
        if flags & _PRIORITY_FLAG:
            content -= 5
        # The padding counts towards the block's bytes: it is read and buffered all the same.
        return self._header_block(flags, length, now, content=content)

    def _header_block(self, flags: int, length: int, now: float, *,
                      content: int | None = None) -> str | None:
        """A HEADERS frame begins a header block of ``length`` bytes so far."""
        self._block_bytes = 0
        self._continuations = 0
        return self._block_part(flags, length, now, content=content)

    def _block_part(self, flags: int, length: int, now: float, *,
                    content: int | None = None) -> str | None:
        """A HEADERS or CONTINUATION frame adds ``length`` bytes to the header block."""
        self._block_bytes += max(length, 0)
        if self._block_bytes > self._max_block:
            return (f"header block flood: more than {self._max_block} bytes of one header "
                    f"block (http2_max_header_list_size is {self.limits.max_header_list_size})")
        ended = bool(flags & _END_HEADERS)
        if (length if content is None else content) <= 0 and not ended \
                and not self._empty.take(now):
            return self._flood("empty frame", self.limits.empty_frames)
        if ended:
            self._block_bytes = -1
        return None

    @staticmethod
    def _flood(what: str, budget: Budget) -> str:
        return (f"{what} flood: more than {budget.burst} {what} frames at once, or more "
                f"than {budget.per_second:g} a second")
