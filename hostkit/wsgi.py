"""Serving a WSGI app (PEP 3333: Flask, Django, ...) as the terminal ASGI app, on asyncio and
trio alike (anyio only: no event loop of its own).

``HostBuilder.use_app`` tells a WSGI app apart (:func:`is_wsgi_app`) and ``build()`` wraps it
in :class:`WsgiApp`. Each request runs in one worker thread from start to end, as under
gunicorn's threads, so thread-locals (Django's database connections) and context variables
(Flask's contexts) stay with it; at most ``[server] wsgi_threads`` requests run at once per
host, and more wait for a thread. From that thread:

- ``wsgi.input`` reads the body from the ASGI ``receive`` as the app asks for it, through the
  request stage's body limit: a declared ``Content-Length`` over ``max_request_body_size``
  gets 413 before the app runs; a body that passes the limit while the app reads it raises
  :class:`~hostkit.errors.RequestBodyTooLargeError` from the read and the request gets 413,
  whatever the app answers then. What arrives with the head (up to :data:`PREREAD_BYTES`) is
  read before the thread starts, so a small body costs no thread hop. Kept past the
  request (after ``close()``), it raises ``RuntimeError`` when read.
- the response iterable is sent chunk by chunk, each send waiting for the server (the back
  pressure); a body that is complete in its first chunk (a list or tuple, or a first chunk
  as long as the declared ``Content-Length``) is sent by the event loop without a hop.
  Once a response streams, a client that goes away stops the iteration.
- ``close()`` of the iterable is called whatever happens (an error, a disconnect, the host
  stopping); ``wsgi.file_wrapper`` streams a file in blocks; the legacy ``write()`` works.

An app that breaks the protocol (raises before ``start_response``, calls it twice without
``exc_info``, returns something that is not an iterable of bytes, gives a bad status or
header) gets a 500 for that request, logged once by the request stage with the reason
(:class:`WsgiProtocolError`); the server keeps serving. docs/wsgi.md has the environ table.
"""

from __future__ import annotations

import inspect
import io
import logging
import re
from collections.abc import Callable, Iterable, Iterator
from types import TracebackType
from typing import IO, Any

import anyio
import anyio.from_thread
import anyio.lowlevel

from hostkit.asgi import Message, Receive, Scope, Send
from hostkit.caches import remember
from hostkit.context import request_state
from hostkit.errors import RequestBodyTooLargeError
from hostkit.identity import ClaimsPrincipal
from hostkit.pipeline import is_async_callable
from hostkit.wsgi_threads import WorkerThreads

logger = logging.getLogger("hostkit.wsgi")
#: ``wsgi.errors``: what the app writes there, one record per line, at ERROR.
errors_logger = logging.getLogger("hostkit.wsgi.errors")

ExcInfo = tuple[type[BaseException], BaseException, TracebackType | None]
StartResponse = Callable[..., Callable[[bytes], None]]
WsgiCallable = Callable[[dict[str, Any], StartResponse], Iterable[bytes]]

#: Bytes of the body read on the event loop before the app's thread starts (when they have
#: arrived with the head): a form post or small upload costs no thread hop.
PREREAD_BYTES = 65536
#: Block size of ``wsgi.file_wrapper`` when the app gives none.
FILE_BLOCK_SIZE = 65536

_STATUS = re.compile(r"\d{3} ")
#: What no response header name (beyond RFC 9110's token characters) or value may hold.
_BAD_NAME = re.compile(r"[^!#$%&'*+\-.^_`|~0-9A-Za-z]")
_BAD_VALUE = re.compile(r"[\r\n\0]")
#: Response headers a WSGI app must not set (PEP 3333, "hop-by-hop"); dropped: the server
#: frames the response itself.
_HOP_BY_HOP = frozenset({b"connection", b"keep-alive", b"transfer-encoding", b"upgrade",
                         b"te", b"trailer"})
#: Response header name -> its lowercase bytes, for names already checked.
_NAMES: dict[str, bytes] = {}
_NAMES_MAX = 4096
#: Response header ``(name, value)`` -> what is sent (lowercase name, value as bytes; None
#: for a hop-by-hop header), for headers already checked. Like every table here, kept by
#: :func:`hostkit.caches.remember` (emptied when full).
_PAIRS: dict[tuple[str, str], tuple[bytes, bytes] | None] = {}
_PAIRS_MAX = 4096
#: Status line -> its code, for status lines already checked.
_STATUSES: dict[str, int] = {}
_STATUSES_MAX = 1024
_END: Message = {"type": "http.response.body", "body": b"", "more_body": False}


def is_wsgi_app(app: Any) -> bool:
    """Whether ``app`` is a WSGI callable: not async, and callable with two positional
    arguments (``environ, start_response``; ``*args`` too, as decorators such as
    ``wsgiref.validate.validator`` make). An ASGI app is async with three parameters, a
    handler async with one; a sync callable of one (``hostkit run``'s builder factory) is
    neither."""
    if not callable(app) or is_async_callable(app):
        return False
    try:
        inspect.signature(app).bind(None, None)
    except (TypeError, ValueError):
        return False
    return True


class WsgiProtocolError(Exception):
    """The WSGI app broke PEP 3333; the message says how. The request gets a 500 (or its
    connection is closed when the response had started), and the request stage logs it."""


class FileWrapper:
    """``wsgi.file_wrapper``: an iterable over a file-like object's blocks of ``block_size``
    bytes; ``close()`` closes the file (called by hostkit when the response ends)."""

    def __init__(self, filelike: IO[bytes], block_size: int = FILE_BLOCK_SIZE):
        self.filelike = filelike
        self.block_size = block_size

    def __iter__(self) -> Iterator[bytes]:
        read = self.filelike.read
        size = self.block_size
        while True:
            block = read(size)
            if not block:
                return
            yield block

    def close(self) -> None:
        """Close the file (when it can be closed)."""
        close = getattr(self.filelike, "close", None)
        if close is not None:
            close()


class _ErrorStream:
    """``wsgi.errors``: text the app writes, logged on ``hostkit.wsgi.errors`` one line at a
    time (a line without its newline waits for the next write or :meth:`flush`)."""

    __slots__ = ("_pending",)

    def __init__(self) -> None:
        self._pending = ""

    def write(self, text: str) -> int:
        lines = (self._pending + text).split("\n")
        self._pending = lines.pop()
        for line in lines:
            errors_logger.error("%s", line)
        return len(text)

    def writelines(self, lines: Iterable[str]) -> None:
        for line in lines:
            self.write(line)

    def flush(self) -> None:
        if self._pending:
            errors_logger.error("%s", self._pending)
            self._pending = ""


class _Input:
    """``wsgi.input``: the request body, read from the ASGI ``receive`` in the app's thread.

    Starts with what was read before the thread (``buffered``); ``more`` says whether more
    of the body is to come. A disconnect ends the body early (EOF); a body past the limit
    raises :class:`RequestBodyTooLargeError` (``too_large`` remembers it for the response).

    A raw binary stream as ``io.RawIOBase`` describes one (and registered as one), not
    derived from it: an ``io`` object costs more to make and to free than the rest of a
    request's environ, on every request, with a body or without.
    """

    __slots__ = ("_receive", "_buffer", "_more", "too_large", "hop", "closed", "__weakref__")

    def __init__(self, receive: Receive, buffered: bytes, more: bool):
        self._receive = receive
        self._buffer = bytearray(buffered)
        self._more = more
        self.too_large = False
        #: runs a coroutine function on the event loop from the app's thread (the call's)
        self.hop: Callable[..., Any] = _no_hop
        self.closed = False

    def readable(self) -> bool:
        return True

    def writable(self) -> bool:
        return False

    def seekable(self) -> bool:
        return False

    def isatty(self) -> bool:
        return False

    def fileno(self) -> int:
        raise io.UnsupportedOperation("wsgi.input has no file descriptor")

    def seek(self, offset: int, whence: int = 0) -> int:
        raise io.UnsupportedOperation("wsgi.input is not seekable")

    def tell(self) -> int:
        raise io.UnsupportedOperation("wsgi.input is not seekable")

    def flush(self) -> None:
        pass

    def close(self) -> None:
        """Mark the stream closed (reading still works, as it did for ``io.RawIOBase``)."""
        self.closed = True

    def __enter__(self) -> _Input:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def _fill(self) -> bool:
        """Read one more ASGI message into the buffer; False when the body has ended."""
        if not self._more:
            return False
        try:
            message = self.hop(self._receive)
        except RequestBodyTooLargeError:
            self.too_large = True
            self._more = False
            raise
        if message["type"] != "http.request":  # http.disconnect
            self._more = False
            return False
        self._buffer += message.get("body", b"")
        self._more = message.get("more_body", False)
        return True

    def _take(self, size: int) -> bytes:
        data = bytes(self._buffer[:size])
        del self._buffer[:size]
        return data

    def read(self, size: int | None = -1) -> bytes:
        if size is None or size < 0:
            while self._fill():
                pass
            return self._take(len(self._buffer))
        while len(self._buffer) < size and self._fill():
            pass
        return self._take(size)

    def readall(self) -> bytes:
        return self.read()

    def readinto(self, target: Any) -> int:
        data = self.read(len(target))
        target[:len(data)] = data
        return len(data)

    def readline(self, size: int | None = -1) -> bytes:
        limit = size if size is not None and size >= 0 else None
        start = 0
        while True:
            end = self._buffer.find(b"\n", start)
            if end >= 0:
                stop = end + 1
                break
            if limit is not None and len(self._buffer) >= limit:
                stop = limit
                break
            start = len(self._buffer)
            if not self._fill():
                stop = len(self._buffer)
                break
        if limit is not None:
            stop = min(stop, limit)
        return self._take(stop)

    def readlines(self, hint: int = -1) -> list[bytes]:
        lines: list[bytes] = []
        total = 0
        while True:
            line = self.readline()
            if not line:
                return lines
            lines.append(line)
            total += len(line)
            if 0 < hint <= total:
                return lines

    def __iter__(self) -> _Input:
        return self

    def __next__(self) -> bytes:
        line = self.readline()
        if not line:
            raise StopIteration
        return line


io.RawIOBase.register(_Input)


def _no_hop(function: Callable[..., Any], *args: Any) -> Any:
    raise RuntimeError("wsgi.input read outside its request")


class _Cancelled(BaseException):
    """Raised in the app's thread when its request was cancelled (the host stopping) while
    the thread waited for the event loop. Not an ``Exception``, so ``except Exception`` in
    an app does not swallow it; the app's ``finally`` blocks and ``close()`` still run."""


#: ``(Host header, scheme)`` -> its ``(SERVER_NAME, SERVER_PORT)``, for hosts already seen.
_HOSTS: dict[tuple[bytes, str], tuple[str, str]] = {}
_HOSTS_MAX = 1024


def _server_name_and_port(scope: Scope, host: bytes | None) -> tuple[str, str]:
    """``SERVER_NAME`` and ``SERVER_PORT``: from the ``Host`` header, which names the public
    address in both models (a child's own socket is a private loopback port), else the
    socket the request came to."""
    scheme = scope.get("scheme", "http")
    if host:
        known = _HOSTS.get((host, scheme))
        if known is not None:
            return known
    default_port = "443" if scheme == "https" else "80"
    if host:
        text = host.decode("latin-1")
        if text.startswith("["):  # [v6]:port
            name, _, rest = text[1:].partition("]")
            port = rest[1:] if rest.startswith(":") else ""
        else:
            name, _, port = text.partition(":")
        return remember(_HOSTS, (host, scheme), (name, port or default_port), _HOSTS_MAX)
    server = scope.get("server")
    if server:
        return str(server[0]), str(server[1] if server[1] is not None else default_port)
    return "localhost", default_port


#: Raw header name -> its environ key ("": left out), filled as names are seen.
_KEYS: dict[bytes, str] = {}
_KEYS_MAX = 4096


def _environ_key(raw_name: bytes) -> str:
    """``HTTP_X_NAME`` for ``x-name``; ``CONTENT_TYPE`` and ``CONTENT_LENGTH`` without the
    prefix (PEP 3333); "" for a name with ``_``, which could pose as another header's ``-``
    (as nginx and gunicorn drop them)."""
    key = _KEYS.get(raw_name)
    if key is None:
        name = raw_name.decode("latin-1").upper()
        key = "" if "_" in name else name.replace("-", "_")
        if key and key != "CONTENT_TYPE" and key != "CONTENT_LENGTH":
            key = "HTTP_" + key
        remember(_KEYS, raw_name, key, _KEYS_MAX)
    return key


#: The environ keys whose values are the same for every request, by ``wsgi.multiprocess``.
_FIXED_ENVIRON: dict[bool, dict[str, Any]] = {multiprocess: {
    "wsgi.version": (1, 0),
    "wsgi.multithread": True,
    "wsgi.multiprocess": multiprocess,
    "wsgi.run_once": False,
    "wsgi.input_terminated": True,
    "wsgi.file_wrapper": FileWrapper,
} for multiprocess in (False, True)}
_PROTOCOLS = {"1.1": "HTTP/1.1", "1.0": "HTTP/1.0", "2": "HTTP/2"}


def build_environ(scope: Scope, body: IO[bytes] | None, *,
                  multiprocess: bool) -> dict[str, Any]:
    """The PEP 3333 environ of one ASGI HTTP request, with hostkit's forwarded values (see
    docs/wsgi.md for the table); ``wsgi.input`` is ``body`` (the caller sets it when
    ``None``)."""
    root = scope.get("root_path", "")
    path: str = scope["path"]
    if root and (path == root or path.startswith(root + "/")):
        path = path[len(root):]
    scheme = scope.get("scheme", "http")
    version = scope.get("http_version", "1.1")
    query = scope.get("query_string")
    environ = _FIXED_ENVIRON[bool(multiprocess)].copy()
    environ["REQUEST_METHOD"] = scope["method"]
    environ["SCRIPT_NAME"] = root.encode("utf-8").decode("latin-1") if root else ""
    environ["PATH_INFO"] = path if path.isascii() else path.encode("utf-8").decode("latin-1")
    environ["QUERY_STRING"] = query.decode("latin-1") if query else ""
    environ["SERVER_PROTOCOL"] = _PROTOCOLS.get(version) or "HTTP/" + version
    environ["wsgi.url_scheme"] = scheme
    environ["wsgi.input"] = body
    environ["wsgi.errors"] = _ErrorStream()
    if scheme == "https":
        environ["HTTPS"] = "on"
    client = scope.get("client")
    if client:
        environ["REMOTE_ADDR"] = str(client[0])
        environ["REMOTE_PORT"] = str(client[1])
    host = None
    keys = _KEYS
    for raw_name, raw_value in scope["headers"]:
        key = keys.get(raw_name)
        if key is None:
            key = _environ_key(raw_name)
        if not key:
            continue
        value = raw_value.decode("latin-1")
        if key in environ:
            environ[key] += ("; " if key == "HTTP_COOKIE" else ",") + value
        else:
            environ[key] = value
            if key == "HTTP_HOST":
                host = raw_value
    environ["SERVER_NAME"], environ["SERVER_PORT"] = _server_name_and_port(scope, host)
    user = scope.get("user")
    if isinstance(user, ClaimsPrincipal):
        # The request stage's anonymous principal has no identities until one is asked for
        # (as the access log reads it): not making them keeps an anonymous request cheap.
        if type(user) is not ClaimsPrincipal or getattr(user, "_identities", None) is not None:
            identity = user.identity
            if identity.is_authenticated:
                environ["REMOTE_USER"] = identity.name or ""
                environ["AUTH_TYPE"] = identity.authentication_type
        environ["hostkit.user"] = user
    return environ


def _has_body(scope: Scope, environ: dict[str, Any]) -> bool:
    """Whether the request may have a body: always over HTTP/2 (DATA frames need no
    length), else when it has a ``Content-Length`` other than 0 or a ``Transfer-Encoding``
    (RFC 9112 §6.3: without either, an HTTP/1 request has none)."""
    if scope.get("http_version") == "2":
        return True
    length = environ.get("CONTENT_LENGTH")
    return bool(length and length != "0") or "HTTP_TRANSFER_ENCODING" in environ


def _header_key(name: str) -> bytes:
    """The lowercase bytes of a response header's name; ValueError for a name that cannot
    be sent (TypeError for one that is not a str)."""
    if not name or _BAD_NAME.search(name):
        raise ValueError(f"the header name {name!r} cannot be sent")
    return remember(_NAMES, name, name.lower().encode("latin-1"), _NAMES_MAX)


#: What ``_PAIRS.get`` gives for a header not checked yet (None means hop-by-hop).
_UNKNOWN: Any = object()


def _header_pair(header: Any) -> tuple[bytes, bytes] | None:
    """What is sent for a response header ``(name, value)`` of the app: the lowercase name
    and the value as bytes, or None for a hop-by-hop header (left out). ValueError,
    TypeError or AttributeError for a header that cannot be sent."""
    name, value = header
    key = _NAMES.get(name)
    if key is None:
        key = _header_key(name)
    if not value.isprintable() and _BAD_VALUE.search(value):
        raise ValueError(f"the header {name!r}: {value!r} cannot be sent")
    pair = None if key in _HOP_BY_HOP else (key, value.encode("latin-1"))
    if pair is not None and key == b"content-length":
        int(pair[1])  # a length that is not a number is not kept
    if type(header) is tuple:
        remember(_PAIRS, header, pair, _PAIRS_MAX)
    return pair


def _status_code(status: object) -> int | None:
    """The code of a status line like ``"200 OK"``; None when it is not one."""
    if type(status) is not str or not _STATUS.match(status):
        return None
    return remember(_STATUSES, status, int(status[:3]), _STATUSES_MAX)


class _Call:
    """One request in the app's thread: ``start_response``, ``write`` and the iteration of
    the response. :meth:`run` returns the messages the event loop still has to send."""

    __slots__ = ("app", "environ", "body", "state", "send", "token", "cancelled", "_hops",
                 "start", "declared", "head_sent", "error")

    def __init__(self, app: WsgiCallable, environ: dict[str, Any], body: _Input, scope: Scope,
                 send: Send, token: anyio.lowlevel.EventLoopToken):
        self.app = app
        self.environ = environ
        self.body = body
        body.hop = self.hop
        self.state = request_state(scope)
        self.send = send
        self.token = token
        self.cancelled = False
        self._hops: set[anyio.CancelScope] | None = None  # made by the first hop
        self.start: Message | None = None  # the head, once start_response gave it
        self.declared: int | None = None  # the app's Content-Length
        self.head_sent = False
        self.error: str | None = None  # how the app broke the protocol, if it did

    # -- what the app calls ------------------------------------------------------------------

    def start_response(self, status: str, headers: list[tuple[str, str]],
                       exc_info: ExcInfo | None = None) -> Callable[[bytes], None]:
        if exc_info is not None:
            try:
                if self.head_sent:
                    raise exc_info[1].with_traceback(exc_info[2])
            finally:
                exc_info = None
        elif self.start is not None:
            self._broken("start_response() was called a second time without exc_info")
        code = _STATUSES.get(status) if type(status) is str else None
        if code is None:
            code = _status_code(status)
            if code is None:
                self._broken(f"start_response() got the status {status!r}, not a str like "
                             "'200 OK'")
        raw: list[tuple[bytes, bytes]] = []
        declared = None
        pairs = _PAIRS
        try:
            for header in headers:
                pair = pairs.get(header, _UNKNOWN) if type(header) is tuple else _UNKNOWN
                if pair is _UNKNOWN:
                    pair = _header_pair(header)
                if pair is None:  # hop-by-hop
                    continue
                if pair[0] == b"content-length":
                    declared = int(pair[1])
                raw.append(pair)
        except (TypeError, ValueError, AttributeError) as error:
            self._broken(f"start_response() got bad headers {headers!r}: {error}")
        self.start = {"type": "http.response.start", "status": code, "headers": raw}
        self.declared = declared
        return self.write

    def write(self, data: bytes) -> None:
        """The legacy ``write()`` callable: sends ``data`` now (the head first)."""
        self._check_chunk(data)
        if data:
            self._send_chunk(data)

    # -- the event loop, from the thread -----------------------------------------------------

    def hop(self, function: Callable[..., Any], *args: Any) -> Any:
        """From the app's thread: run ``await function(*args)`` on the event loop and return
        its result; raises :class:`_Cancelled` once the request is cancelled."""
        if self.cancelled:
            raise _Cancelled()
        return anyio.from_thread.run(self._on_loop, function, args, token=self.token)

    async def _on_loop(self, function: Callable[..., Any], args: tuple[Any, ...]) -> Any:
        hops = self._hops
        if hops is None:
            hops = self._hops = set()
        with anyio.CancelScope() as scope:
            if self.cancelled:  # between the thread's look and now
                scope.cancel()
            hops.add(scope)
            try:
                return await function(*args)
            finally:
                hops.discard(scope)
        raise _Cancelled()

    def cancel(self) -> None:
        """On the event loop, when the request is cancelled while its thread runs: what the
        thread waits for on the loop is cancelled, and so is what it would wait for next."""
        self.cancelled = True
        for scope in self._hops or ():
            scope.cancel()

    # -- the response ------------------------------------------------------------------------

    def run(self) -> list[Message]:
        """Call the app and send its response; returns the messages still to send (the whole
        response when it was complete in its first chunk; else the end of the body)."""
        result = self.app(self.environ, self.start_response)
        if (type(result) is list and len(result) == 1 and type(result[0]) is bytes
                and self.start is not None and not self.head_sent
                and self.error is None and not self.body.too_large):
            # The common answer, [body] after start_response(): sent whole by the loop.
            self.head_sent = True
            return [self.start, {"type": "http.response.body", "body": result[0],
                                 "more_body": False}]
        try:
            return self._respond(result)
        finally:
            close = getattr(result, "close", None)
            if close is not None:
                close()

    def _respond(self, result: Iterable[bytes]) -> list[Message]:
        if self.body.too_large:  # the app caught the error and answered anyway
            raise RequestBodyTooLargeError("the request body passed server.max_request_body_size")
        if self.error is not None:  # the app caught the error and answered anyway
            raise WsgiProtocolError(self.error)
        if isinstance(result, (bytes, str)):
            self._broken(f"the app returned {type(result).__name__}, not an iterable of "
                         "bytes (return [body])")
        if isinstance(result, (list, tuple)):
            for chunk in result:
                self._check_chunk(chunk)
            if not self.head_sent:
                return self._whole(b"".join(result))
            for chunk in result:
                if chunk:
                    self._send_chunk(chunk)
            return [_END]
        try:
            chunks = iter(result)
        except TypeError:
            self._broken(f"the app returned {result!r}, which is not iterable")
        pending: bytes | None = None
        for chunk in chunks:
            self._check_chunk(chunk)
            if not chunk:
                continue
            if pending is None and not self.head_sent and self.declared == len(chunk):
                pending = chunk  # complete: sent by the event loop once the iterable ends
                continue
            if self.head_sent and self.state.disconnected:
                return []
            if pending is not None:
                self._send_chunk(pending)
                pending = None
            self._send_chunk(chunk)
        if not self.head_sent:
            return self._whole(pending or b"")
        if pending is not None:
            self._send_chunk(pending)
        return [_END]

    def _whole(self, body: bytes) -> list[Message]:
        if self.start is None:
            self._broken("the app returned without calling start_response()")
        assert self.start is not None
        self.head_sent = True
        return [self.start, {"type": "http.response.body", "body": body, "more_body": False}]

    def _send_chunk(self, chunk: bytes) -> None:
        if self.head_sent:
            self.hop(self.send, {"type": "http.response.body", "body": chunk,
                                 "more_body": True})
            return
        if self.start is None:
            self._broken("the app wrote its body before calling start_response()")
        self.head_sent = True
        self.hop(self._stream_start, self.start, chunk)

    async def _stream_start(self, start: Message, chunk: bytes) -> None:
        """On the event loop: a response starts streaming. Watch for a disconnect (which
        stops the iteration), then send the head and the first chunk."""
        self.state.aborted.is_set()  # the first look starts the request stage's watcher
        await self.send(start)
        await self.send({"type": "http.response.body", "body": chunk, "more_body": True})

    def _check_chunk(self, chunk: object) -> None:
        if type(chunk) is not bytes and not isinstance(chunk, bytes):
            self._broken(f"the app gave a body chunk of type {type(chunk).__name__}; WSGI "
                         "bodies are bytes")

    def _broken(self, reason: str) -> None:
        """The app broke PEP 3333: remember it, so the request fails even if the app catches
        the error, and raise it."""
        self.error = reason
        raise WsgiProtocolError(reason)


class WsgiApp:
    """The ASGI app serving a WSGI app (see the module docstring). Built by
    ``HostBuilder.build()`` for a WSGI ``use_app``, once per host: ``threads`` requests
    (``[server] wsgi_threads``) run at once; ``multiprocess`` is ``wsgi.multiprocess``
    (whether other processes serve the same app: workers or several children)."""

    def __init__(self, app: WsgiCallable, *, threads: int = 10, multiprocess: bool = False):
        self.app = app
        self.threads = threads
        self.multiprocess = multiprocess
        self._threads = WorkerThreads(threads)

    def __repr__(self) -> str:
        return f"WsgiApp({self.app!r}, threads={self.threads})"

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        kind = scope["type"]
        if kind == "websocket":
            await send({"type": "websocket.close", "code": 1000})  # WSGI has none: 403
            return
        if kind != "http":
            return  # lifespan: returning at once says the app has none
        environ = build_environ(scope, None, multiprocess=self.multiprocess)
        if _has_body(scope, environ):
            buffered, more = await self._preread(receive)
            if buffered is None:
                return  # the client went away before the app ran
        else:
            buffered, more = b"", False
        body = environ["wsgi.input"] = _Input(receive, buffered, more)
        token = self._threads.current_token()
        call = _Call(self.app, environ, body, scope, send, token)
        try:
            messages = await self._threads.run(call.run, on_cancel=call.cancel, token=token)
        except RequestBodyTooLargeError:
            raise
        except Exception:
            if body.too_large:  # the app failed on the error of the body's read
                raise RequestBodyTooLargeError(
                    "the request body passed server.max_request_body_size") from None
            raise
        finally:
            # The app's thread is done with the request: wsgi.input no longer reaches the
            # loop, and the body and the call, which point at each other, are freed by their
            # reference counts instead of by the cyclic GC.
            body.hop = _no_hop
        for message in messages:
            await send(message)

    @staticmethod
    async def _preread(receive: Receive) -> tuple[bytes | None, bool]:
        """Read what has come of the body, up to :data:`PREREAD_BYTES`, on the event loop:
        ``(bytes, more_to_come)``, or ``(None, False)`` when the client went away. Raises
        :class:`RequestBodyTooLargeError` (413) for a declared length over the limit."""
        chunks = []
        size = 0
        while True:
            message = await receive()
            if message["type"] != "http.request":
                return None, False
            chunk = message.get("body", b"")
            if chunk:
                chunks.append(chunk)
                size += len(chunk)
            if not message.get("more_body", False):
                return b"".join(chunks), False
            if size >= PREREAD_BYTES:
                return b"".join(chunks), True
