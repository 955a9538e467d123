"""hostkit's logging: the handler it installs, its two formats, and the request id of a line.

:func:`configure_logging` is called by the host before it runs (``Host.run``, through
``configure_default_logging``), with the ``[logging]`` settings. It

- sets the level of the ``hostkit`` loggers to ``level`` (``debug`` shows hostkit's debug
  lines); ``hostkit.access`` stays at INFO: the access log has its own switch,
  ``access_log``, and is left out by ``access_log_for`` when it is off;
- keeps hypercorn's ``hypercorn.error`` at WARNING (it repeats "Running on …" after hostkit's
  "Now listening on: …") and ``watchfiles.main`` at WARNING (hostkit says which file changed);
- when the root logger has no handler yet, gives it one that writes to stderr in ``format``,
  at INFO for every logger; when the program configured the root logger itself, adds
  nothing (its handlers print hostkit's lines too, at hostkit's level).

The handler prints a record only once: a record that a handler of a logger between its own
logger and the root already wrote to the terminal (an app's own ``StreamHandler`` on a logger
that propagates, as Django's ``django`` logger has with ``DEBUG = True``) is not printed again.

Line layouts (``format``):

- ``text``: ``LEVEL: name: message`` (``LEVEL: [pid] name: message`` in a supervisor's worker,
  whose lines share the supervisor's stderr), the traceback on the lines after it, as
  ``logging.basicConfig`` writes them; an access-log record is its line alone (Apache and
  nginx layouts stay readable by the tools that read them, and a ``json`` access log stays
  one JSON object per line);
- ``json``: one JSON object per line, ``{"time": "2000-10-10T13:55:36.123Z", "level":
  "INFO", "logger": "hostkit.host", "message": "…", "pid": 1234}``, then ``"request_id"``
  while a request is served (:data:`REQUEST_ID`), ``"exception"`` (the traceback as one
  string) and ``"stack"`` when the record has them; every character outside printable
  ASCII is escaped, so no message, however many lines it has, breaks the object. An
  access-log record in the ``json`` access format is that object with the entry's fields in
  it rather than its line as a string in a string (``hostkit/access_log.py``).
"""

from __future__ import annotations

import contextvars
import logging
import sys
import time
from collections.abc import Callable
from json.encoder import encode_basestring_ascii as json_string
from os import getpid
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from hostkit.configuration.tables import LoggingOptions

#: The request id of the request being served (``context.trace_identifier``), set by the
#: process that serves it for the request's task; None outside a request.
REQUEST_ID: contextvars.ContextVar[str | None] = contextvars.ContextVar(
    "hostkit_request_id", default=None)

#: The logger of the access log.
ACCESS_LOGGER = "hostkit.access"
#: The record attribute of an access-log record in the json access format: its
#: :class:`AccessFields`, which the json log format writes as fields of its own object.
ACCESS_FIELDS = "hostkit_access_fields"

_LEVELS = {"debug": logging.DEBUG, "info": logging.INFO, "warning": logging.WARNING,
           "error": logging.ERROR}
_TEXT_FORMAT = "%(levelname)s: %(name)s: %(message)s"
_TEXT_FORMAT_WITH_PID = "%(levelname)s: [%(process)d] %(name)s: %(message)s"


class AccessFields:
    """What the json access format says about one request, in JSON already: ``time`` (a JSON
    string), ``summary`` (a JSON string, ``"GET /x HTTP/1.1 200"``, the record's message in
    the json log format) and ``fields`` (``"remote":…,"user":…`` up to ``"user_agent":…``,
    without braces)."""

    __slots__ = ("time", "summary", "fields")

    def __init__(self, time: str, summary: str, fields: str):
        self.time = time
        self.summary = summary
        self.fields = fields


class UtcSeconds:
    """Formats a ``time.time()`` value to the second, in UTC, with ``render`` (given the
    ``time.struct_time``), the text cached: the lines of one second format it once."""

    __slots__ = ("_render", "_cached")

    def __init__(self, render: Callable[[time.struct_time], str]):
        self._render = render
        # (second, text) in one attribute: a thread that formats at the same time sees one
        # pair or the other, never a second with the text of another.
        self._cached: tuple[int, str] = (-1, "")

    def __call__(self, at: float) -> str:
        second = int(at)
        cached = self._cached
        if cached[0] != second:
            cached = self._cached = (second, self._render(time.gmtime(second)))
        return cached[1]


def _iso_second(moment: time.struct_time) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%S", moment)


class IsoTime:
    """``2000-10-10T13:55:36.123Z`` (ISO 8601, UTC, milliseconds) for a ``time.time()``."""

    __slots__ = ("_seconds",)

    def __init__(self) -> None:
        self._seconds = UtcSeconds(_iso_second)

    def __call__(self, at: float) -> str:
        milliseconds = int(at * 1000)
        return self._seconds(milliseconds // 1000) + _MILLISECONDS[milliseconds % 1000]


# ".000Z" to ".999Z": a lookup costs a third of formatting the number on every line.
_MILLISECONDS = tuple(f".{number:03d}Z" for number in range(1000))


class TextFormatter(logging.Formatter):
    """The ``text`` format: ``LEVEL: [pid] name: message`` (the pid only when asked), an
    access-log record as its line alone."""

    def __init__(self, *, pid_prefix: bool):
        super().__init__(_TEXT_FORMAT_WITH_PID if pid_prefix else _TEXT_FORMAT)

    def format(self, record: logging.LogRecord) -> str:
        if record.name == ACCESS_LOGGER:
            return record.getMessage()
        return super().format(record)

    def access_line(self, line: str, fields: AccessFields | None, created: float,
                    pid: int) -> str:
        """What :meth:`format` makes of an access-log record with these values."""
        return line


class JsonFormatter(logging.Formatter):
    """The ``json`` format: one JSON object per record, on one line (see the module)."""

    def __init__(self) -> None:
        super().__init__()
        self._time = IsoTime()

    def format(self, record: logging.LogRecord) -> str:
        fields: AccessFields | None = record.__dict__.get(ACCESS_FIELDS)
        if fields is not None:
            return _with_access_fields(fields, record.levelname, record.name, record.process)
        line = self._head(record.created, record.levelname, record.name, record.getMessage(),
                          record.process)
        if record.exc_info:
            if not record.exc_text:
                record.exc_text = self.formatException(record.exc_info)
        if record.exc_text:
            line += f',"exception":{json_string(record.exc_text)}'
        if record.stack_info:
            line += f',"stack":{json_string(self.formatStack(record.stack_info))}'
        return line + "}"

    def access_line(self, line: str, fields: AccessFields | None, created: float,
                    pid: int) -> str:
        """What :meth:`format` makes of an access-log record with these values."""
        if fields is not None:
            return _with_access_fields(fields, "INFO", ACCESS_LOGGER, pid)
        return self._head(created, "INFO", ACCESS_LOGGER, line, pid) + "}"

    def _head(self, created: float, level: str, logger: str, message: str,
              pid: int | None) -> str:
        """The object up to the request id, without its closing brace."""
        head = (f'{{"time":"{self._time(created)}","level":{json_string(level)},'
                f'"logger":{json_string(logger)},"message":{json_string(message)},'
                f'"pid":{_number(pid)}')
        request_id = REQUEST_ID.get()
        if request_id is not None:
            head += f',"request_id":{json_string(request_id)}'
        return head


def _with_access_fields(fields: AccessFields, level: str, logger: str, pid: int | None) -> str:
    """The json log format's object for a json access-log record: the entry's fields in it."""
    return (f'{{"time":{fields.time},"level":{json_string(level)},'
            f'"logger":{json_string(logger)},"message":{fields.summary},'
            f'"pid":{_number(pid)},{fields.fields}}}')


def _number(value: Any) -> str:
    return str(value) if isinstance(value, int) else "null"


def _writes_to_terminal(handler: logging.Handler) -> bool:
    """Whether ``handler`` writes to this process's stdout or stderr (where hostkit's own
    handler writes, or where an OutOfProcess front relays a child's output from)."""
    if not isinstance(handler, logging.StreamHandler) or isinstance(handler, logging.FileHandler):
        return False
    stream = handler.stream
    if stream is sys.stderr or stream is sys.stdout:
        return True
    try:
        return stream.fileno() in (1, 2)
    except (AttributeError, OSError, ValueError):
        return False


class NotPrintedBelow(logging.Filter):
    """The filter of hostkit's handler on the root logger: it drops a record that a handler of
    the record's logger, or of an ancestor it propagated through before the root, wrote to
    the terminal already (its level and filters let the record through, and
    :func:`_writes_to_terminal`). It sees every record hostkit's handler sees: a logger
    without handlers (all of hostkit's) costs a few attribute reads."""

    def filter(self, record: logging.LogRecord) -> bool:
        logger = logging.Logger.manager.loggerDict.get(record.name)
        while isinstance(logger, logging.Logger) and logger.parent is not None:
            for handler in logger.handlers:
                if (record.levelno >= handler.level and _writes_to_terminal(handler)
                        and handler.filter(record)):
                    return False
            if not logger.propagate:
                break
            logger = logger.parent
        return True


class HostkitHandler(logging.StreamHandler):  # type: ignore[type-arg]
    """The handler :func:`configure_logging` puts on the root logger (one at most): stderr,
    the chosen format (:class:`TextFormatter` or :class:`JsonFormatter`),
    :class:`NotPrintedBelow`."""

    formatter: TextFormatter | JsonFormatter

    def __init__(self) -> None:
        super().__init__(sys.stderr)
        self.setFormatter(TextFormatter(pid_prefix=False))
        self.addFilter(NotPrintedBelow())

    def emit(self, record: logging.LogRecord) -> None:
        """``StreamHandler.emit`` without taking the lock again to flush (:meth:`handle`
        holds it already). Each line is flushed at once, as logging's own handler does."""
        try:
            stream = self.stream
            stream.write(self.formatter.format(record) + "\n")
            stream.flush()
        except RecursionError:
            raise
        except Exception:
            self.handleError(record)

    def write_access(self, line: str, fields: AccessFields | None) -> None:
        """Write an access-log line as :meth:`handle` writes its record, without the record:
        called by the access log when this handler is all its record would reach
        (:func:`sole_handler`)."""
        formatter = self.formatter
        if type(formatter) is TextFormatter:
            text = line + "\n"  # what its access_line makes of any line, without the times
        else:
            text = formatter.access_line(line, fields, time.time(), getpid()) + "\n"
        with self.lock:  # type: ignore[union-attr]
            try:
                stream = self.stream
                stream.write(text)
                stream.flush()
            except RecursionError:
                raise
            except Exception:
                self.handleError(logging.makeLogRecord(
                    {"name": ACCESS_LOGGER, "levelno": logging.INFO, "levelname": "INFO",
                     "msg": line}))


def sole_handler(logger: logging.Logger) -> HostkitHandler | None:
    """hostkit's handler when an INFO record of ``logger`` would reach it and nothing else,
    unchanged (``logger`` neither disabled nor filtered, no other handler on the way to the
    root, and hostkit's handler at its own level and filter); None otherwise. What
    ``Logger.handle`` would do with such a record is then exactly
    :meth:`HostkitHandler.write_access`, at a fraction of the cost."""
    if logger.disabled or logger.filters:
        return None
    found: HostkitHandler | None = None
    current: logging.Logger | None = logger
    while current is not None:
        handlers = current.handlers
        if handlers:  # most loggers on the way have none: no iterator made for them
            if found is not None or len(handlers) != 1:
                return None
            handler = handlers[0]
            if type(handler) is not HostkitHandler:
                return None
            found = handler
        if not current.propagate:
            break
        current = current.parent
    if (found is None or found.level > logging.INFO or len(found.filters) != 1
            or type(found.filters[0]) is not NotPrintedBelow):
        return None
    return found


def configure_logging(options: LoggingOptions, *, pid_prefix: bool) -> None:
    """Apply the ``[logging]`` settings (the module says what each does); ``pid_prefix``
    puts the pid in every ``text`` line (a supervisor's worker). Called before the host
    runs, again as often as wanted: a second call changes hostkit's handler, never adds one.
    """
    level = _LEVELS[options.level]
    logging.getLogger("hostkit").setLevel(level)
    logging.getLogger(ACCESS_LOGGER).setLevel(logging.INFO)
    logging.getLogger("hypercorn.error").setLevel(max(level, logging.WARNING))
    logging.getLogger("watchfiles.main").setLevel(logging.WARNING)
    root = logging.getLogger()
    handler = next((h for h in root.handlers if isinstance(h, HostkitHandler)), None)
    if handler is None:
        if root.handlers:
            return  # the program's own logging
        handler = HostkitHandler()
        root.addHandler(handler)
        root.setLevel(logging.INFO)
    handler.setFormatter(JsonFormatter() if options.format == "json"
                         else TextFormatter(pid_prefix=pid_prefix))
