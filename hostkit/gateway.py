"""The gateway: what the process that owns the public listener does for every request before
the app, and after it (SPEC §9).

One :class:`Gateway` per process, built by ``HostBuilder.build()`` (:func:`gateway_for`) and
handed to the server in ``ServerRequest.gateway`` and to the host. InProcess (``SERVE``) the
host serves the request stage behind :class:`GatewayStage`; OutOfProcess the front (``FRONT``)
does the same duties in its own request loop, with the same object; a ``CHILD`` has none
(its front did them). Per HTTP request, in this order:

1. the forwarded view (only when ``[forwarded_headers]`` trusts someone): the client, scheme
   and host a known proxy reports (:class:`hostkit.forwarded_headers.ForwardedHeaders`);
2. the request id: the client's ``X-Request-Id`` when the peer is a known proxy and the id
   well-formed, else a new one (:mod:`hostkit.request_ids`); it is ``context.trace_identifier``
   and :data:`hostkit.logs.REQUEST_ID` while the request is served;
3. the health paths (``[health] liveness_path``, ``readiness_path``), answered here, before
   authentication and the app, never counted by the limit (:meth:`Gateway.health_answer`;
   :class:`Readiness` says why the process is not ready);
4. the limit (:class:`hostkit.request_limit.RequestLimit`): past the queue, 503 with
   ``Retry-After`` at once;
5. the app; then ``X-Request-Id`` on the response (hostkit's own answers included), the
   access log line (:mod:`hostkit.access_log`) and the metrics (:mod:`hostkit.metrics`).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING

from hostkit.request_ids import PROCESS_REQUEST_IDS, REQUEST_ID_HEADER, RequestIds, valid_client_id
from hostkit.request_limit import RequestLimit

if TYPE_CHECKING:
    from hostkit.access_log import AccessLog
    from hostkit.configuration import Configuration
    from hostkit.forwarded_headers import ForwardedHeaders, ForwardedView
    from hostkit.metrics import Metrics

#: The seconds a 503 of the gateway (not ready, queue full) asks the client to wait.
RETRY_AFTER = 1
RETRY_AFTER_HEADER = (b"retry-after", str(RETRY_AFTER).encode())

#: Readiness states (:meth:`Readiness.set_state`).
STARTING = "starting"
READY = "ready"
DRAINING = "draining"
START_FAILED = "start_failed"
_STATES = (STARTING, READY, DRAINING, START_FAILED)

_LIVE = (200, b"ok\n")
_READY = (200, b"ready\n")


class Readiness:
    """Whether this process should get traffic: what ``readiness_path`` answers, and the
    ``ready`` metric.

    Its state is set by the host (``starting`` until the app started and the server listens,
    then ``ready``; ``draining`` once a stop is asked for; ``start_failed`` while the 500.30
    page is served); a server adds its own reasons with :meth:`add_check` (a front:
    ``offline``, ``rapid-failed``) and calls :meth:`refresh` when one may have changed.
    """

    __slots__ = ("_state", "_checks", "_metrics")

    def __init__(self, metrics: Metrics | None = None):
        self._state = STARTING
        self._checks: list[Callable[[], str | None]] = []
        self._metrics = metrics
        self.refresh()

    @property
    def state(self) -> str:
        return self._state

    def set_state(self, state: str) -> None:
        """``"starting"``, ``"ready"``, ``"draining"`` or ``"start_failed"``; raises
        ValueError for anything else."""
        if state not in _STATES:
            raise ValueError(f"unknown readiness state {state!r}; allowed: {', '.join(_STATES)}")
        self._state = state
        self.refresh()

    def add_check(self, check: Callable[[], str | None]) -> None:
        """Add a server's own reason not to be ready: ``check()`` returns it (e.g.
        ``"offline"``), or None while all is well. Asked on every readiness probe, in the
        order added, after the state."""
        self._checks.append(check)
        self.refresh()

    @property
    def unready_reason(self) -> str | None:
        """Why the process is not ready (its state, or the first check's reason); None when
        it is."""
        if self._state != READY:
            return self._state
        for check in self._checks:
            reason = check()
            if reason:
                return reason
        return None

    def refresh(self) -> None:
        """Tell the metrics whether the process is ready now; called by :meth:`set_state`
        and by a server when one of its checks may have changed."""
        if self._metrics is not None:
            self._metrics.set_ready(self.unready_reason is None)


class Gateway:
    """The per-request duties of the process that owns the public listener (module
    docstring). Built by :func:`gateway_for`; its parts are read per request."""

    __slots__ = ("forwarded", "access_log", "metrics", "readiness", "limit", "request_ids",
                 "_health")

    def __init__(self, *, forwarded: ForwardedHeaders, access_log: AccessLog | None,
                 metrics: Metrics | None, readiness: Readiness, limit: RequestLimit | None,
                 liveness_path: str = "", readiness_path: str = "",
                 request_ids: RequestIds | None = None):
        #: the trusted proxies; ``forwarded.enabled`` is False when nobody is trusted.
        self.forwarded = forwarded
        #: None: ``[logging] access_log = false``.
        self.access_log = access_log
        #: None: ``[metrics] urls`` is empty.
        self.metrics = metrics
        self.readiness = readiness
        #: None: ``[server] max_concurrent_requests = 0`` (no limit).
        self.limit = limit
        self.request_ids = request_ids if request_ids is not None else PROCESS_REQUEST_IDS
        health: dict[str, bool] = {}
        if liveness_path:
            health[liveness_path] = False
        if readiness_path:
            health[readiness_path] = True
        # path -> whether it is the readiness path; None: no health path at all.
        self._health = health or None

    @property
    def has_health_paths(self) -> bool:
        """Whether a liveness or readiness path is set."""
        return self._health is not None

    def health_answer(self, path: str) -> tuple[int, bytes] | None:
        """The answer to a request for ``path`` (the path alone, no query) when it is a
        health path: liveness 200; readiness 200, or 503 with the reason (the caller adds
        ``Retry-After``, :data:`RETRY_AFTER_HEADER`). None: not a health path."""
        health = self._health
        if health is None:
            return None
        is_readiness = health.get(path)
        if is_readiness is None:
            return None
        if not is_readiness:
            return _LIVE
        reason = self.readiness.unready_reason
        if reason is None:
            return _READY
        return 503, f"not ready: {reason}\n".encode()

    def new_request_id(self) -> str:
        """A new request id (:class:`hostkit.request_ids.RequestIds`)."""
        return self.request_ids.new()

    def request_id(self, view: ForwardedView | None,
                   headers: Iterable[tuple[bytes, bytes]]) -> str:
        """The request's id: the client's ``X-Request-Id`` when ``view`` says the peer is a
        known proxy and the id is printable ASCII of at most 200 characters, else a new one.
        ``view`` None (nobody is trusted): a new one, without looking at ``headers``
        (lower-case byte names, as ASGI and h11 give them)."""
        if view is not None and view.from_known_proxy:
            for name, value in headers:
                if name == REQUEST_ID_HEADER:
                    kept = valid_client_id(value)
                    if kept is not None:
                        return kept
                    break
        return self.request_ids.new()


def gateway_for(configuration: Configuration, metrics: Metrics | None) -> Gateway:
    """The gateway of a process serving ``configuration``: its trusted proxies, access log,
    health paths, limit and ``metrics`` (None: no metrics). Called once, by
    ``HostBuilder.build()``."""
    from hostkit.access_log import access_log_for
    from hostkit.forwarded_headers import ForwardedHeaders

    options = configuration.options
    server = options.server_options
    limit = (RequestLimit(server.max_concurrent_requests, server.request_queue_length, metrics)
             if server.max_concurrent_requests else None)
    return Gateway(forwarded=ForwardedHeaders(options.forwarded_headers),
                   access_log=access_log_for(options.logging), metrics=metrics,
                   readiness=Readiness(metrics), limit=limit,
                   liveness_path=options.health.liveness_path,
                   readiness_path=options.health.readiness_path)


__all__ = ["DRAINING", "Gateway", "READY", "RETRY_AFTER", "RETRY_AFTER_HEADER", "Readiness",
           "RequestLimit", "START_FAILED", "STARTING", "gateway_for"]
