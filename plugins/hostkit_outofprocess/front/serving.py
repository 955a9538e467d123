"""What every client connection of the front holds, whichever HTTP it speaks:
:class:`ServedConnection`, the base of
:class:`~hostkit_outofprocess.front.connection.ClientConnection` (HTTP/1.1) and
:class:`~hostkit_outofprocess.front.http2.Http2Connection`.

It is the connection's stream and who its client is, and the parts of the gateway its
exchanges use (``hostkit.plugin.Gateway``: the request ids, the access log, the metrics, the
limit, the health paths), read once per connection so that a request reads them as plain
attributes.
"""

from __future__ import annotations

import anyio

from hostkit.plugin import Gateway

from hostkit_outofprocess.front.identity import ConnectionIdentity
from hostkit_outofprocess.front.pages import ErrorPages
from hostkit_outofprocess.front.streams import Stream
from hostkit_outofprocess.front.upstream import Upstream


class ServedConnection:
    """One accepted client connection's stream, client and gateway parts (module docstring).

    Made by the server for each connection it accepts (through a subclass); nothing here
    changes once made.
    """

    def __init__(self, stream: Stream, upstream: Upstream, pages: ErrorPages, *,
                 identity: ConnectionIdentity, gateway: Gateway, head_timeout: float,
                 stopping: anyio.Event):
        self.stream = stream
        self.upstream = upstream
        self.pages = pages
        self.identity = identity
        self.gateway = gateway
        #: a new request id (for a request whose peer is no known proxy).
        self.new_request_id = gateway.request_ids.new
        self.access_log = gateway.access_log
        self.metrics = gateway.metrics
        self.limit = gateway.limit
        self.health_paths = gateway.has_health_paths
        #: whether an exchange's end is recorded (:mod:`~hostkit_outofprocess.front.records`).
        self.records = self.access_log is not None or self.metrics is not None
        #: seconds a client may take to send a request head (``request_header_timeout``).
        self.head_timeout = head_timeout
        #: set when the front begins stopping.
        self.stopping = stopping
