"""What the front records of each request once it is over: its access log line
(``[logging] access_log``) and its metrics (``[metrics]``), as the gateway's ``AccessLog``
and ``Metrics`` take them.

Called only when one of the two is on (``ClientConnection.records``). A request is recorded
once its exchange ends, whoever answered it (the child, or the front itself: a refusal, a
401, 502, 503, 504, a health path); a head that never parsed or never arrived whole gets its
400 or 408 recorded by :func:`unparsed_head`. A connection that never sent a byte of a head
records nothing. A request whose response never started (the client left first, or the
front stopped) is recorded with status 499, as nginx logs it and as the gateway does
InProcess. Health paths get an access log line and no metrics, as InProcess.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING

from hostkit.plugin import AccessEntry, AccessLog, Metrics

if TYPE_CHECKING:
    from hostkit_outofprocess.front.exchange import Exchange

#: The status recorded for a request that got no response.
CLIENT_CLOSED = 499

_PROTOCOLS = {b"1.1": "HTTP/1.1", b"1.0": "HTTP/1.0", b"2": "HTTP/2"}
_METHODS = {method.encode(): method for method in ("GET", "HEAD", "POST", "PUT", "DELETE",
                                                   "OPTIONS", "PATCH")}


def exchange_ended(exchange: Exchange) -> None:
    """Record ``exchange``, which is over (``Exchange.finish``)."""
    connection = exchange.connection
    status = exchange.status or CLIENT_CLOSED
    seconds = time.perf_counter() - exchange.clock
    method = _METHODS.get(exchange.method) or exchange.method.decode("ascii")  # a token
    metrics = connection.metrics
    if exchange.counted and metrics is not None:
        metrics.request_finished(method, status, seconds)
    access_log = connection.access_log
    if access_log is None:
        return
    request = exchange.request
    referer = agent = None
    for name, value in exchange.headers:
        if name == b"user-agent":
            agent = value.decode("latin-1")
        elif name == b"referer":
            referer = value.decode("latin-1")
    user = None
    authenticated = exchange.authenticated
    if authenticated is not None and authenticated.principal is not None:
        identity = authenticated.principal.identity
        user = identity.name if identity.is_authenticated else None
    access_log.write_request(
        exchange.origin.client_ip, user, method, request.target.decode("latin-1"),
        _PROTOCOLS.get(exchange.client_version, "HTTP/1.1"), status, exchange.bytes_sent,
        exchange.started, seconds, exchange.request_id, referer, agent)


def unparsed_head(access_log: AccessLog | None, metrics: Metrics | None, *,
                  client_ip: str | None, status: int, request_id: str,
                  waited: float) -> None:
    """Record the front's ``status`` (400, 408 …) to a head that did not parse or did not
    arrive in time, from ``client_ip`` (the peer: no header of it can be believed), whose
    wait for it began ``waited`` seconds ago. Nothing of a request is known: its method,
    target and protocol are logged as ``-``."""
    if metrics is not None:
        metrics.request_started()
        metrics.request_finished("-", status, waited)
    if access_log is not None:
        access_log.write(AccessEntry(client_ip, None, "-", "-", "-", status, 0,
                                     time.time() - waited, waited, request_id))
