"""HTTP/2 on hypercorn's connections: the flood defences.

hypercorn speaks HTTP/2 itself (``h2``, by ALPN ``h2`` over TLS, by the prior-knowledge
preface or an ``h2c`` upgrade in cleartext), with the stream and header-list limits of
``[server] http2_max_concurrent_streams`` and ``http2_max_header_list_size`` (``server.py``
puts them in its Config). What it does not bound is the rate of frames that cost it work and
carry no request (SETTINGS and PING it acknowledges, RST_STREAM, CONTINUATION, empty frames):
each connection that turns HTTP/2 gets a :class:`FloodGuard`, which reads every byte the
client sends through a :class:`hostkit.plugin.FrameWatch` before ``h2`` does. On a violation
the connection gets ``GOAWAY`` with ``ENHANCE_YOUR_CALM``, is closed, and one warning is
logged (``hostkit.http2``); the bytes that broke the limit never reach ``h2``.

The guard is fitted to a connection where hypercorn makes its protocol
(``hypercorn_internals.py``, which names the parts of hypercorn this needs).
"""

from __future__ import annotations

import logging

from hypercorn.config import Config

from hostkit.plugin import FloodLimits, FrameWatch

logger = logging.getLogger("hostkit.http2")


def flood_limits(config: Config) -> FloodLimits:
    """The limits of a connection served with ``config`` (whose ``h2_*`` settings
    ``server.py`` took from ``[server]``)."""
    return FloodLimits(max_concurrent_streams=config.h2_max_concurrent_streams,
                       max_header_list_size=config.h2_max_header_list_size)


class FloodGuard:
    """The flood defences of one hypercorn connection, HTTP/2 from the start (ALPN) or from
    the moment hypercorn switches it (prior knowledge, ``h2c``).

    Until :meth:`start`, every byte passes (the connection speaks HTTP/1.1, which has the
    request rules instead)."""

    __slots__ = ("limits", "client", "watch", "refused")

    def __init__(self, limits: FloodLimits, client: tuple[str, int] | None):
        self.limits = limits
        self.client = client
        self.watch: FrameWatch | None = None
        #: the reason the connection was refused, once it was (``None``: it was not)
        self.refused: str | None = None

    def start(self) -> None:
        """The connection speaks HTTP/2 from its next byte, the client's preface."""
        if self.watch is None:
            self.watch = FrameWatch(self.limits, preface=True)

    def admit(self, data: bytes) -> bool:
        """Whether ``data``, the next bytes from the client, may go to ``h2``. False once the
        client is past a limit: the caller then sends GOAWAY ENHANCE_YOUR_CALM and closes
        (this logs why, once), and drops everything the client sends after."""
        watch = self.watch
        if watch is None:
            return self.refused is None
        if self.refused is not None:
            return False
        reason = watch.feed(data)
        if reason is None:
            return True
        self.refused = reason
        client = "%s:%s" % self.client if self.client else "a client"
        logger.warning("HTTP/2 flood from %s (%s): GOAWAY ENHANCE_YOUR_CALM after %d frames",
                       client, reason, watch.frames)
        return False
