"""HttpContext: the hostkit-native view of one request (SPEC §5).

The context is a thin view over the ASGI scope and the ``receive``/``send`` callables of the
layer that made it, so what a native middleware changes is what an inner ASGI app sees, and
the reverse. Per-request state that every layer shares (``items``, ``request_aborted``, the
body limit) lives in one :class:`RequestState` in the scope, put there by the request stage.
"""

from __future__ import annotations

import dataclasses
import os
import ssl
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import TYPE_CHECKING, Any

import anyio
import anyio.from_thread

from hostkit.errors import InvalidOperationError
from hostkit.headers import Headers
from hostkit.identity import ClaimsPrincipal
from hostkit.logs import REQUEST_ID
from hostkit.request_ids import PROCESS_REQUEST_IDS

if TYPE_CHECKING:
    from hostkit.asgi import Message, Receive, Scope, Send

# The scope key of the per-request state; the features live at scope["hostkit"] (SPEC §5).
REQUEST_STATE_KEY = "hostkit.request"


class ClientDisconnected(Exception):
    """The client went away while the app was reading the request body."""


@dataclasses.dataclass(frozen=True)
class Features:
    """Facts about the serving process, the same for every request it serves."""

    hosting_model: str
    process_id: int
    process_name: str
    server: str


class RequestAborted:
    """Set when the client goes away before the response is complete.

    Watching costs nothing until first asked: the first :meth:`is_set` or :meth:`wait` starts
    a watcher that reads ahead of the app, so a disconnect is seen even while the app is not
    reading the body. The event to wait on is made only when someone waits.
    """

    __slots__ = ("_set", "_event", "_watch")

    def __init__(self, watch: Callable[[], None] | None = None):
        self._set = False
        self._event: anyio.Event | None = None
        self._watch = watch

    def _start_watching(self) -> None:
        if self._watch is not None:
            watch, self._watch = self._watch, None
            watch()

    def is_set(self) -> bool:
        self._start_watching()
        return self._set

    async def wait(self) -> None:
        self._start_watching()
        if self._set:
            return
        if self._event is None:
            self._event = anyio.Event()
        await self._event.wait()

    def set(self) -> None:
        self._set = True
        if self._event is not None:
            self._event.set()


class RequestState:
    """What every layer of one request shares; one per request, made by the request stage.

    Every field starts at its class-level default below, and a layer sets what changes;
    ``aborted`` and ``items`` are made on first use. :attr:`allow_synchronous_io` and
    :meth:`watch` are the request stage's to override.
    """

    disconnected = False
    _aborted: RequestAborted | None = None
    _items: dict[str, Any] | None = None
    # Set by the authentication stage; None means no server authentication is configured.
    authenticate: Callable[[HttpContext, str | None], Awaitable[ClaimsPrincipal]] | None = None
    challenge: Callable[[HttpContext, str | None], Awaitable[None]] | None = None
    #: The principal last given to ``context.user``, for the access log; None while nobody
    #: set one (the log then reads ``scope["user"]`` of the scope the gateway passed in). Kept
    #: here as well because a layer may pass a copy of the scope inward.
    user: ClaimsPrincipal | None = None

    @property
    def allow_synchronous_io(self) -> bool:
        """Whether ``request.body_sync()`` and ``response.write_sync()`` may run
        (``server.allow_synchronous_io``); False without a request stage."""
        return False

    @property
    def aborted(self) -> RequestAborted:
        if self._aborted is None:
            self._aborted = RequestAborted(self.watch)
            if self.disconnected:
                self._aborted.set()
        return self._aborted

    @property
    def items(self) -> dict[str, Any]:
        if self._items is None:
            self._items = {}
        return self._items

    def mark_disconnected(self) -> None:
        """The client went away: sets ``request_aborted``."""
        self.disconnected = True
        if self._aborted is not None:
            self._aborted.set()

    def watch(self) -> None:
        """Start watching for a disconnect while the app is busy (on the first look at
        ``aborted``); nothing without a request stage."""


def request_state(scope: Scope) -> RequestState:
    """The shared state of the request; a fresh one when no request stage made it (tests)."""
    state = scope.get(REQUEST_STATE_KEY)
    if state is None:
        state = scope[REQUEST_STATE_KEY] = RequestState()
    return state


def _require_sync_io(state: RequestState) -> None:
    if not state.allow_synchronous_io:
        raise InvalidOperationError(
            "synchronous I/O is disallowed: use the async methods, or set "
            "server.allow_synchronous_io = true")


class Request:
    """The request line, headers and body, read from the scope and ``receive``."""

    __slots__ = ("_scope", "_receive", "_state", "_body", "_consumed", "headers")

    def __init__(self, scope: Scope, receive: Receive, state: RequestState):
        self._scope = scope
        self._receive = receive
        self._state = state
        self._body: bytes | None = None
        self._consumed = False
        self.headers = Headers(scope["headers"])

    @property
    def method(self) -> str:
        return self._scope["method"]  # type: ignore[no-any-return]

    @property
    def scheme(self) -> str:
        return self._scope.get("scheme", "http")  # type: ignore[no-any-return]

    @property
    def host(self) -> str:
        return self.headers.get("host", "")

    @property
    def path(self) -> str:
        """The path below ``path_base``."""
        path: str = self._scope["path"]
        base = self.path_base
        if base and path.startswith(base):
            return path[len(base):] or "/"
        return path

    @property
    def path_base(self) -> str:
        return self._scope.get("root_path", "")  # type: ignore[no-any-return]

    @property
    def query_string(self) -> str:
        return self._scope.get("query_string", b"").decode("latin-1")  # type: ignore[no-any-return]

    async def stream(self) -> AsyncIterator[bytes]:
        """The body, chunk by chunk as it arrives. Raises :class:`ClientDisconnected`."""
        if self._body is not None:
            yield self._body
            return
        if self._consumed:
            raise InvalidOperationError("the request body was already read")
        self._consumed = True
        while True:
            message = await self._receive()
            if message["type"] == "http.disconnect":
                raise ClientDisconnected()
            chunk = message.get("body", b"")
            if chunk:
                yield chunk
            if not message.get("more_body", False):
                return

    @property
    def buffered_body(self) -> bytes | None:
        """The whole body if :meth:`body` already read it, else ``None``."""
        return self._body

    async def body(self) -> bytes:
        """The whole body; read once, then kept."""
        if self._body is None:
            self._body = b"".join([chunk async for chunk in self.stream()])
        return self._body

    def body_sync(self) -> bytes:
        """The whole body, from a worker thread; needs ``server.allow_synchronous_io``."""
        _require_sync_io(self._state)
        return anyio.from_thread.run(self.body)


class Response:
    """Status, headers and body of the answer; the head is sent with the first write."""

    __slots__ = ("_send", "_state", "status_code", "headers", "has_started", "is_complete")

    def __init__(self, send: Send, state: RequestState):
        self._send = send
        self._state = state
        self.status_code = 200
        self.headers = Headers()
        self.has_started = False
        self.is_complete = False

    async def write(self, data: bytes | str) -> None:
        """Send a chunk of the body (``str`` is encoded as UTF-8); sends the head first."""
        if isinstance(data, str):
            data = data.encode("utf-8")
        if not self.has_started:
            await self._start()
        await self._send({"type": "http.response.body", "body": data, "more_body": True})

    def write_sync(self, data: bytes | str) -> None:
        """:meth:`write` from a worker thread; needs ``server.allow_synchronous_io``."""
        _require_sync_io(self._state)
        anyio.from_thread.run(self.write, data)

    async def _start(self) -> None:
        self.has_started = True
        await self._send({"type": "http.response.start", "status": self.status_code,
                          "headers": self.headers.raw})

    async def complete(self) -> None:
        """End the response (called by the pipeline after the handler returns)."""
        if self.is_complete:
            return
        if not self.has_started:
            self.has_started = True
            self.headers.raw.append((b"content-length", b"0"))
            await self._send({"type": "http.response.start", "status": self.status_code,
                              "headers": self.headers.raw})
        self.is_complete = True
        await self._send({"type": "http.response.body", "body": b"", "more_body": False})

    async def inner_send(self, message: Message) -> None:
        """The ``send`` the pipeline hands to the layers inside a native middleware
        (:func:`hostkit.pipeline.middleware_app`): it sends their messages on, noting the
        status, the start and the end of their response here, and adds the headers the
        middleware set on this response to theirs."""
        kind = message["type"]
        if kind == "http.response.start":
            self.has_started = True
            self.status_code = message["status"]
            if self.headers.raw:
                message = dict(message)
                message["headers"] = list(message.get("headers", [])) + self.headers.raw
        elif kind == "http.response.body" and not message.get("more_body", False):
            self.is_complete = True
        await self._send(message)


class Connection:
    """The two ends of the connection, after forwarding is applied."""

    __slots__ = ("_scope",)

    def __init__(self, scope: Scope):
        self._scope = scope

    @property
    def remote_ip(self) -> str | None:
        client = self._scope.get("client")
        return client[0] if client else None

    @property
    def remote_port(self) -> int | None:
        client = self._scope.get("client")
        return client[1] if client else None

    @property
    def local_ip(self) -> str | None:
        server = self._scope.get("server")
        return server[0] if server else None

    @property
    def local_port(self) -> int | None:
        server = self._scope.get("server")
        return server[1] if server else None

    @property
    def client_certificate(self) -> bytes | None:
        """The client's TLS certificate (DER), or ``None`` when it presented none."""
        tls = self._scope.get("extensions", {}).get("tls") or {}
        chain = tls.get("client_cert_chain") or ()
        if not chain:
            return None
        first = chain[0]
        if isinstance(first, bytes):
            return first
        return ssl.PEM_cert_to_DER_cert(first)


class HttpContext:
    """Everything about one HTTP request, handed to handlers and native middleware."""

    __slots__ = ("scope", "_state", "request", "response", "connection")

    def __init__(self, scope: Scope, receive: Receive, send: Send):
        self.scope = scope
        self._state = state = request_state(scope)
        self.request = Request(scope, receive, state)
        self.response = Response(send, state)
        self.connection = Connection(scope)

    @property
    def user(self) -> ClaimsPrincipal:
        """The request's principal; anonymous when nobody authenticated."""
        user = self.scope.get("user")
        if user is None:
            user = self.scope["user"] = ClaimsPrincipal.anonymous()
        return user

    @user.setter
    def user(self, principal: ClaimsPrincipal) -> None:
        self.scope["user"] = principal
        self._state.user = principal

    @property
    def trace_identifier(self) -> str:
        """The request's id (ASP.NET ``HttpContext.TraceIdentifier``): the ``X-Request-Id``
        of the response and of the access log line, and the ``request_id`` of every log line
        written while the request is served (:data:`hostkit.logs.REQUEST_ID`, whose value
        it is). Set by the process that owns the public listener before the app runs (an
        OutOfProcess child takes its front's); a new one when nothing set it (a context made
        outside a host). Setting it changes the id of the log lines that follow, not the
        response's header or the access log line, which have the id the request came with."""

        request_id = REQUEST_ID.get()
        if request_id is None:
            request_id = PROCESS_REQUEST_IDS.new()
            REQUEST_ID.set(request_id)
        return request_id

    @trace_identifier.setter
    def trace_identifier(self, value: str) -> None:
        REQUEST_ID.set(value)

    @property
    def request_aborted(self) -> RequestAborted:
        return self._state.aborted

    @property
    def features(self) -> Features:
        features = self.scope.get("hostkit")
        if features is None:
            return Features("InProcess", os.getpid(), "", "")
        return features  # type: ignore[no-any-return]

    @property
    def items(self) -> dict[str, Any]:
        return self._state.items

    async def authenticate(self, scheme: str | None = None) -> ClaimsPrincipal:
        """Run server authentication now (when ``automatic_authentication`` is false).

        Sets and returns ``user``; anonymous when no scheme is configured or none succeeded.
        """
        if self._state.authenticate is not None:
            self.user = await self._state.authenticate(self, scheme)
        return self.user

    async def challenge(self, scheme: str | None = None) -> None:
        """Answer 401, with ``WWW-Authenticate`` naming the configured scheme(s)."""
        if self._state.challenge is not None:
            await self._state.challenge(self, scheme)
            return
        self.response.status_code = 401
        await self.response.complete()
