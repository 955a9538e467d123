"""GatewayStage: the gateway's duties (:mod:`hostkit.gateway`) as the ASGI layer an InProcess
host serves, outside the request stage.

Built by the host in the ``SERVE`` role (an InProcess host, a supervisor's InProcess worker)
around its :class:`hostkit.request_stage.RequestStage`; every HTTP request and WebSocket
passes it first. Per HTTP request: the forwarded view, the request id (and
:data:`hostkit.logs.REQUEST_ID` for the request's task), the health paths, the limit, then
the request stage; ``X-Request-Id`` on the response, whoever answers; the access log line
and the metrics once the response is over. A WebSocket gets the forwarded view, the id and
one access log line when it closes (status 101 once accepted); no health path, no limit.

The layer is on every request's path: what is off costs a None check, and what is on is
done with as few calls and objects as the request needs (one :class:`_Response` per request).
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Iterable

import anyio
from anyio.abc import TaskGroup

from hostkit.access_log import AccessLog
from hostkit.asgi import ASGIApp, Message, Receive, Scope, Send
from hostkit.context import REQUEST_STATE_KEY
from hostkit.forwarded_headers import ForwardedHeaders, ForwardedView
from hostkit.gateway import RETRY_AFTER_HEADER, Gateway
from hostkit.logs import REQUEST_ID
from hostkit.request_ids import REQUEST_ID_HEADER
from hostkit.request_limit import RequestLimit
from hostkit.request_stage import answer_lifespan

_ID_LENGTH = len(REQUEST_ID_HEADER)
_PROTOCOLS = {"1.1": "HTTP/1.1", "1.0": "HTTP/1.0", "2": "HTTP/2", "3": "HTTP/3"}
_TEXT = (b"content-type", b"text/plain; charset=utf-8")
#: Body bytes read ahead while a request waits for the limit (to see its client go away).
_WATCHED_BODY = 1 << 16
#: The status logged for a request whose response never started (the client went away
#: first), as nginx logs it.
CLIENT_CLOSED = 499


class _Response:
    """One request's response as the gateway sees it: :meth:`send` is the ``send`` the
    request stage gets; it adds ``X-Request-Id`` to the head and notes the status and the
    body bytes."""

    __slots__ = ("_send", "_id_header", "status", "bytes_sent")

    def __init__(self, send: Send, request_id: str):
        self._send = send
        self._id_header = (REQUEST_ID_HEADER, request_id.encode("latin-1"))
        self.status = 0
        self.bytes_sent = 0

    def send(self, message: Message) -> Awaitable[None]:
        """A plain function returning the server's awaitable: no coroutine of its own."""
        kind = message["type"]
        if kind == "http.response.body":
            self.bytes_sent += len(message.get("body", b""))
        elif kind == "http.response.start":
            self.status = message["status"]
            message = dict(message, headers=self._with_id(message.get("headers", ())))
        return self._send(message)

    def _with_id(self, headers: Iterable[tuple[bytes, bytes]]) -> list[tuple[bytes, bytes]]:
        """``headers`` with the request's ``X-Request-Id``, replacing one the app set (as
        the front replaces a child's), so a response carries exactly one."""
        if type(headers) is not list and type(headers) is not tuple:
            headers = list(headers)  # read twice below
        for header in headers:
            # len() first: only a name of X-Request-Id's length is worth lowering.
            name = header[0]
            if len(name) == _ID_LENGTH and name.lower() == REQUEST_ID_HEADER:
                kept = [header for header in headers if header[0].lower() != REQUEST_ID_HEADER]
                kept.append(self._id_header)
                return kept
        return [*headers, self._id_header]

    def send_websocket(self, message: Message) -> Awaitable[None]:
        """:meth:`send` for a WebSocket: the id on the handshake's answer (an accept, or a
        denial response), 101 once accepted, 403 for a close before it."""
        kind = message["type"]
        if kind == "websocket.send":
            data = message.get("bytes")
            if data is None:
                data = (message.get("text") or "").encode()
            self.bytes_sent += len(data)
        elif kind == "websocket.accept" or kind == "websocket.http.response.start":
            self.status = 101 if kind == "websocket.accept" else message["status"]
            message = {**message, "headers": self._with_id(message.get("headers", ()))}
        elif kind == "websocket.close" and not self.status:
            self.status = 403  # closed before the handshake: the server refuses it
        elif kind == "websocket.http.response.body":
            self.bytes_sent += len(message.get("body", b""))
        return self._send(message)

    async def answer(self, status: int, body: bytes, *, retry_after: bool = False) -> None:
        """The gateway's own answer: text ``body``, with ``Retry-After`` when asked."""
        headers = [_TEXT, (b"content-length", str(len(body)).encode())]
        if retry_after:
            headers.append(RETRY_AFTER_HEADER)
        await self.send({"type": "http.response.start", "status": status, "headers": headers})
        await self.send({"type": "http.response.body", "body": body, "more_body": False})


def _apply_forwarded(forwarded: ForwardedHeaders, scope: Scope) -> ForwardedView:
    """Rewrite the scope's client, scheme and Host as a known proxy reports them (as
    uvicorn's ProxyHeadersMiddleware does); returns the view."""
    client = scope.get("client")
    peer_ip, peer_port = (client[0], client[1]) if client else (None, None)
    view = forwarded.apply(peer_ip, peer_port, scope["scheme"], scope["headers"])
    if view.from_known_proxy:
        if view.client_ip is not None:
            scope["client"] = (view.client_ip, view.client_port or 0)
        scope["scheme"] = view.scheme
        if view.host is not None:
            host = view.host
            scope["headers"] = [(name, host if name == b"host" else value)
                                for name, value in scope["headers"]]
    return view


class _Queued:
    """A request that waited for a slot of the limit: whether its client went away meanwhile
    (it then holds no slot), and the ``receive`` the request stage gets (what was read while
    it waited first)."""

    __slots__ = ("abandoned", "_read", "_receive")

    def __init__(self, receive: Receive):
        self.abandoned = False
        self._read: list[Message] = []
        self._receive = receive

    async def watch(self, task_group: TaskGroup) -> None:
        """Read the server's ``receive`` while the request waits, so that a client that goes
        away is seen (servers do not cancel a request whose client left); cancels
        ``task_group`` then. Stops reading past :data:`_WATCHED_BODY` bytes of body, leaving
        the rest to flow control."""
        body = 0
        while body <= _WATCHED_BODY:
            message = await self._receive()
            self._read.append(message)
            if message["type"] == "http.disconnect":
                self.abandoned = True
                task_group.cancel_scope.cancel()
                return
            body += len(message.get("body", b""))
        await anyio.sleep_forever()

    async def receive(self) -> Message:
        """What was read while the request waited, then the server's ``receive``."""
        if self._read:
            return self._read.pop(0)
        return await self._receive()


async def _wait_in_queue(limit: RequestLimit, receive: Receive) -> _Queued | None:
    """Wait in ``limit``'s queue, watching for the client to go away; None at once when the
    queue is full. A request that got a slot holds it (:meth:`RequestLimit.leave` is the
    caller's); one whose client went away has left the queue and holds none."""
    queued = _Queued(receive)
    entered = False
    async with anyio.create_task_group() as task_group:
        task_group.start_soon(queued.watch, task_group)
        entered = await limit.enter()
        task_group.cancel_scope.cancel()
    if queued.abandoned:
        if entered:
            limit.leave()
        return queued
    return queued if entered else None


class GatewayStage:
    """The ASGI app an InProcess host serves: :class:`Gateway`'s duties, then the request
    stage. See the module docstring.

    The host may serve it before the app has started (a host that owns its listener listens
    first, so its health paths answer while the app starts): until :meth:`open` hands it the
    request stage, health paths are answered and every other request waits.
    """

    def __init__(self, gateway: Gateway, stage: ASGIApp | None = None):
        self.gateway = gateway
        #: the request stage; None until :meth:`open`.
        self.stage: ASGIApp | None = stage
        self._opened: anyio.Event | None = None
        self._forwarded = gateway.forwarded if gateway.forwarded.enabled else None
        self._health = gateway.has_health_paths
        self._limit = gateway.limit
        self._access_log = gateway.access_log
        self._metrics = gateway.metrics
        self._new_id = gateway.request_ids.new

    def open(self, stage: ASGIApp) -> None:
        """Serve ``stage`` from now on; the requests that waited for it go on. Called by the
        host once the app started (or failed to)."""
        self.stage = stage
        if self._opened is not None:
            self._opened.set()

    async def _stage(self) -> ASGIApp:
        """The request stage, once :meth:`open` gave it."""
        while self.stage is None:
            if self._opened is None:
                self._opened = anyio.Event()
            await self._opened.wait()
        return self.stage

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Called by the server for every ASGI connection; an HTTP request runs inline."""
        kind = scope["type"]
        if kind != "http":
            if kind == "websocket":
                await self._serve_websocket(scope, receive, send)
            elif self.stage is None:
                await answer_lifespan(receive, send)  # before the host opened the stage
            else:
                await self.stage(scope, receive, send)
            return
        started = time.time()
        request_id = self._new_id() if self._forwarded is None else self._request_id(scope)
        token = REQUEST_ID.set(request_id)
        response = _Response(send, request_id)
        metrics = self._metrics
        try:
            health = self.gateway.health_answer(scope["path"]) if self._health else None
            if health is None:
                if metrics is not None:
                    metrics.request_started()
                stage = self.stage
                if stage is not None and self._limit is None:
                    await stage(scope, receive, response.send)
                else:
                    await self._pass(scope, receive, response)
            else:
                metrics = None  # a probe is not a request the metrics count
                status, body = health
                await response.answer(status, body, retry_after=status == 503)
        finally:
            access_log = self._access_log
            if metrics is not None or access_log is not None:
                seconds = time.time() - started
                if metrics is not None:
                    metrics.request_finished(scope["method"], response.status or CLIENT_CLOSED,
                                             seconds)
                if access_log is not None:
                    _log(access_log, scope, request_id, response, started, seconds)
            REQUEST_ID.reset(token)

    def _request_id(self, scope: Scope) -> str:
        """With trusted proxies: the forwarded view applied to ``scope``, then the id a known
        proxy sent, when well-formed, else a new one."""
        assert self._forwarded is not None
        return self.gateway.request_id(_apply_forwarded(self._forwarded, scope),
                                       scope["headers"])

    async def _pass(self, scope: Scope, receive: Receive, response: _Response) -> None:
        """The request stage once it is open, within the limit: 503 with ``Retry-After`` at
        once when the limit's queue is full. (An open stage without a limit is called
        inline, by :meth:`__call__`.)"""
        stage = self.stage or await self._stage()
        limit = self._limit
        if limit is None:
            await stage(scope, receive, response.send)
            return
        if not limit.try_enter():
            queued = await _wait_in_queue(limit, receive)
            if queued is None:
                await response.answer(503, b"server busy: too many requests\n",
                                      retry_after=True)
                return
            if queued.abandoned:
                return  # the client went away while its request waited: nothing to answer
            receive = queued.receive
        try:
            await stage(scope, receive, response.send)
        finally:
            limit.leave()

    async def _serve_websocket(self, scope: Scope, receive: Receive, send: Send) -> None:
        """A WebSocket: the forwarded view and the id, then the request stage; its access
        log line once it is over."""
        started = time.time()
        request_id = self._new_id() if self._forwarded is None else self._request_id(scope)
        token = REQUEST_ID.set(request_id)
        response = _Response(send, request_id)
        try:
            stage = self.stage or await self._stage()
            await stage(scope, receive, response.send_websocket)
        finally:
            if self._access_log is not None:
                _log(self._access_log, scope, request_id, response, started,
                     time.time() - started)
            REQUEST_ID.reset(token)


def _log(access_log: AccessLog, scope: Scope, request_id: str, response: _Response,
         started: float, seconds: float) -> None:
    """Write the request's access log line (a WebSocket's at its close)."""
    referer = agent = None
    for name, value in scope["headers"]:
        if name == b"user-agent":
            agent = value.decode("latin-1")
        elif name == b"referer":
            referer = value.decode("latin-1")
    target = scope["raw_path"].decode("latin-1") if scope.get("raw_path") else scope["path"]
    query = scope.get("query_string")
    if query:
        target = f"{target}?{query.decode('latin-1')}"
    client = scope.get("client")
    # The user: the principal the request state holds (set even when an inner layer copied
    # the scope), else the one in this scope. The request stage's anonymous principal has no
    # identities until one is asked for: not making them keeps an anonymous line cheap.
    state = scope.get(REQUEST_STATE_KEY)
    principal = state.user if state is not None else None
    if principal is None:
        principal = scope.get("user")
        if getattr(principal, "_identities", None) is None:
            principal = None
    user = None
    if principal is not None:
        identity = principal.identity
        if identity.is_authenticated:
            user = identity.name
    access_log.write_request(
        client[0] if client else None, user, scope.get("method", "GET"), target,
        _PROTOCOLS.get(scope.get("http_version", "1.1"), "HTTP/1.1"),
        response.status or CLIENT_CLOSED, response.bytes_sent, started, seconds, request_id,
        referer, agent)
