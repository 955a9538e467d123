"""The access log: one line per request, at INFO on the logger ``hostkit.access``.

The process that owns the public listener (an InProcess worker, an OutOfProcess front) makes
one :class:`AccessLog` (:func:`access_log_for`) and calls :meth:`AccessLog.write` with an
:class:`AccessEntry` once each response has ended. The record's message is the line, already
formatted; hostkit's ``text`` log format prints it alone, its ``json`` log format as the
``message`` of its object, or, for the ``json`` access format, as fields of that object.

Layouts (``access_log_format``; times in UTC, at the request's arrival), each one line::

    common    203.0.113.7 - alice [10/Oct/2000:13:55:36 +0000] "GET /x?y=1 HTTP/1.1" 200 123
    combined  203.0.113.7 - alice [10/Oct/2000:13:55:36 +0000] "GET /x?y=1 HTTP/1.1" 200 123
              "https://example.com/" "curl/8.5.0" 1.234ms 0HN1:00000001
    json      {"time":"2000-10-10T13:55:36.123Z","remote":"203.0.113.7","user":"alice",
              "method":"GET","target":"/x?y=1","protocol":"HTTP/1.1","status":200,
              "bytes":123,"duration_ms":1.234,"request_id":"0HN1:00000001",
              "referer":"https://example.com/","user_agent":"curl/8.5.0"}

- ``common`` is Apache's Common Log Format (``%h %l %u %t "%r" %>s %b``): ``-`` for an
  unknown remote address (a unix socket), an anonymous user, and a body of 0 bytes;
- ``combined`` is Apache's and nginx's combined format (``"%{Referer}i" "%{User-agent}i"``,
  ``"-"`` for a missing header), then the duration in milliseconds (three decimals, ``ms``)
  and the request id;
- ``json`` is one object with those keys, in that order; ``null`` for what is missing.
  With the ``json`` log format, the record's object holds these keys after ``time``
  (still the request's arrival), ``level``, ``logger``, ``message`` (``GET /x?y=1 HTTP/1.1
  200``) and ``pid``.

What a client sends cannot forge a line: in ``common`` and ``combined``, ``"`` is written
``\\"``, ``\\`` is ``\\\\``, and every character outside printable ASCII ``\\xHH`` (``\\uHHHH``,
``\\UHHHHHHHH`` past U+00FF), as Apache escapes them; ``json`` escapes as JSON does (ASCII
only). No logged field ever holds a raw CR, LF or other control character.
"""

from __future__ import annotations

import dataclasses
import logging
import re
import time
from json.encoder import encode_basestring_ascii as json_string
from os import getpid
from threading import get_ident

from hostkit.configuration.tables import LoggingOptions
from hostkit.logs import (ACCESS_FIELDS, ACCESS_LOGGER, AccessFields, IsoTime, UtcSeconds,
                          sole_handler)

FORMATS = ("common", "combined", "json")

# A record made without LogRecord.__init__ (_AccessRecords says why).
_new_record = object.__new__
_MONTHS = ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec")
# What Apache escapes in a logged field: quotes, backslashes, and what is not printable ASCII.
_UNSAFE = re.compile(r'[^\x20-\x7e]|["\\]')
# The ASCII of _UNSAFE, for bytes.translate.
_NOT_CLEAN = bytes(range(0x20)) + b'\x7f"\\'


@dataclasses.dataclass(slots=True)
class AccessEntry:
    """One request as the access log writes it."""

    remote: str | None          # client address after trusted forwarding ("-" when None)
    user: str | None            # authenticated user name, None if anonymous
    method: str
    target: str                 # request target as received (path?query)
    protocol: str               # "HTTP/1.1", "HTTP/1.0", "HTTP/2"
    status: int
    bytes_sent: int             # body bytes sent
    started: float              # time.time() when the request head arrived
    duration: float             # seconds until the response ended
    request_id: str
    referer: str | None = None
    user_agent: str | None = None


def _escaped_character(match: re.Match[str]) -> str:
    character = match.group()
    if character == '"':
        return '\\"'
    if character == "\\":
        return "\\\\"
    code = ord(character)
    if code < 0x100:
        return f"\\x{code:02x}"
    return f"\\u{code:04x}" if code < 0x10000 else f"\\U{code:08x}"


def _escape(text: str | None) -> str | None:
    """``text`` with what the module says escaped; None stays None."""
    return _UNSAFE.sub(_escaped_character, text) if text else text


def _escaped(entry: AccessEntry) -> AccessEntry:
    """``entry`` with every text a client or a proxy chose escaped, for a line that
    :func:`_is_clean` found needs it."""
    return dataclasses.replace(
        entry, remote=_escape(entry.remote), user=_escape(entry.user),
        method=_escape(entry.method) or "", target=_escape(entry.target) or "",
        protocol=_escape(entry.protocol) or "", request_id=_escape(entry.request_id) or "",
        referer=_escape(entry.referer), user_agent=_escape(entry.user_agent))


def _is_clean(line: str, quotes: int) -> bool:
    """Whether ``line`` needs no escaping: ASCII, and nothing :data:`_NOT_CLEAN` but the
    layout's own ``quotes``. True for nearly every request, so a line is checked once, in
    C, instead of field by field."""
    return (line.isascii()
            and len(line.encode().translate(None, _NOT_CLEAN)) == len(line) - quotes)


def _apache_second(moment: time.struct_time) -> str:
    return (f"{moment.tm_mday:02d}/{_MONTHS[moment.tm_mon - 1]}/{moment.tm_year:04d}:"
            f"{moment.tm_hour:02d}:{moment.tm_min:02d}:{moment.tm_sec:02d} +0000")


class _AccessRecords:
    """Makes the access log's records, one per request.

    ``logger.makeRecord`` runs ``LogRecord.__init__``, which works out the level name, the
    file name, the thread and the process again for every record: the same values for every
    access record. So a record is made as a copy of the first one made that way, with its
    own message and times, while that copy is what ``makeRecord`` would make (the default
    record factory, the same thread and process); otherwise ``makeRecord`` makes it.
    """

    __slots__ = ("_make_record", "_template", "_created", "_relative_created", "_thread",
                 "_pid")

    def __init__(self, logger: logging.Logger):
        self._make_record = logger.makeRecord
        self._template: dict[str, object] | None = None
        self._created = self._relative_created = 0.0
        self._thread = self._pid = 0

    def __call__(self, message: str) -> logging.LogRecord:
        """A new INFO record of ``hostkit.access`` with ``message``."""
        template = self._template
        if (template is None or get_ident() != self._thread or getpid() != self._pid
                or logging.getLogRecordFactory() is not logging.LogRecord):
            return self._made(message)
        now = time.time()
        values = template.copy()
        values["msg"] = message
        values["created"] = now
        values["msecs"] = int(now % 1 * 1000) + 0.0
        values["relativeCreated"] = self._relative_created + (now - self._created) * 1000
        record = _new_record(logging.LogRecord)
        record.__dict__ = values
        return record

    def _made(self, message: str) -> logging.LogRecord:
        record = self._make_record(ACCESS_LOGGER, logging.INFO, "", 0, message, (), None)
        if type(record) is logging.LogRecord:
            self._template = dict(record.__dict__)
            self._created, self._relative_created = record.created, record.relativeCreated
            self._thread, self._pid = get_ident(), getpid()
        return record


class AccessLog:
    """Writes access-log lines in one of :data:`FORMATS` (ValueError for another).

    :meth:`write` is on the path of every request: it does nothing more than a level check
    when ``hostkit.access`` is not enabled for INFO, and otherwise formats the line and
    hands one record to the logger's filters and handlers, without the caller lookup
    ``logger.info`` makes (an access record has no source line worth naming).
    """

    __slots__ = ("format", "_json", "_combined_layout", "_logger", "_enabled_for", "_record",
                 "_handle", "_text_line", "_second", "_iso_time", "_stamp")

    def __init__(self, format: str) -> None:
        if format not in FORMATS:
            raise ValueError(f"access log format {format!r}: expected one of {FORMATS}")
        self.format = format
        self._json = format == "json"
        self._combined_layout = format == "combined"
        self._logger = logger = logging.getLogger(ACCESS_LOGGER)
        self._enabled_for = logger.isEnabledFor
        self._record = _AccessRecords(logger)
        self._handle = logger.handle
        self._second = UtcSeconds(_apache_second)
        self._iso_time = IsoTime()
        self._text_line = self.combined_line if format == "combined" else self.common_line
        # (second, Apache time) of the last line of :meth:`write_request`; one attribute,
        # as UtcSeconds keeps its pair, so a thread never sees a second with another's text.
        self._stamp: tuple[int, str] = (-1, "")

    def write(self, entry: AccessEntry) -> None:
        """Log ``entry``: one INFO record on ``hostkit.access`` whose message is its line.
        When hostkit's handler is all the record would reach, the line goes to it without
        a record (:func:`hostkit.logs.sole_handler`)."""
        if not self._enabled_for(logging.INFO):
            return
        if self._json:
            fields: AccessFields | None = self.json_fields(entry)
            line = _json_line(fields)  # type: ignore[arg-type]
        else:
            fields = None
            line = self._text_line(entry)
        handler = sole_handler(self._logger)
        if handler is not None:
            handler.write_access(line, fields)
            return
        record = self._record(line)
        if fields is not None:
            setattr(record, ACCESS_FIELDS, fields)
        self._handle(record)

    def write_request(self, remote: str | None, user: str | None, method: str, target: str,
                      protocol: str, status: int, bytes_sent: int, started: float,
                      duration: float, request_id: str, referer: str | None = None,
                      user_agent: str | None = None) -> None:
        """:meth:`write` of the :class:`AccessEntry` of these values, without making one for
        a ``common`` or ``combined`` line that needs no escaping (nearly every line): the
        line in one format, its time text cached per second. Called by the gateway stage
        once per request."""
        # logger.isEnabledFor(INFO) from the answer it keeps, without the call.
        enabled = self._logger._cache.get(logging.INFO)  # type: ignore[attr-defined]
        if enabled is None:
            enabled = self._enabled_for(logging.INFO)
        if not enabled or self._logger.disabled:
            return
        if not self._json:
            second = int(started)
            stamp = self._stamp
            if stamp[0] != second:
                stamp = self._stamp = (second, _apache_second(time.gmtime(second)))
            if self._combined_layout:
                line = (f'{remote or "-"} - {user or "-"} [{stamp[1]}] '
                        f'"{method or "-"} {target or "-"} {protocol or "-"}" '
                        f'{status} {bytes_sent or "-"} "{referer or "-"}" '
                        f'"{user_agent or "-"}" {duration * 1000:.3f}ms {request_id or "-"}')
                quotes = 6
            else:
                line = (f'{remote or "-"} - {user or "-"} [{stamp[1]}] '
                        f'"{method or "-"} {target or "-"} {protocol or "-"}" '
                        f'{status} {bytes_sent or "-"}')
                quotes = 2
            if line.isascii() and (len(line.encode().translate(None, _NOT_CLEAN))
                                   == len(line) - quotes):
                handler = sole_handler(self._logger)
                if handler is not None:
                    handler.write_access(line, None)
                else:
                    self._handle(self._record(line))
                return
        self.write(AccessEntry(remote, user, method, target, protocol, status, bytes_sent,
                               started, duration, request_id, referer, user_agent))

    def line(self, entry: AccessEntry) -> str:
        """``entry`` in this log's layout, as :meth:`write` logs it."""
        return _json_line(self.json_fields(entry)) if self._json else self._text_line(entry)

    def common_line(self, entry: AccessEntry) -> str:
        """``entry`` in the ``common`` layout."""
        line = self._common(entry)
        return line if _is_clean(line, 2) else self._common(_escaped(entry))

    def combined_line(self, entry: AccessEntry) -> str:
        """``entry`` in the ``combined`` layout."""
        line = self._combined(entry)
        return line if _is_clean(line, 6) else self._combined(_escaped(entry))

    def _common(self, entry: AccessEntry) -> str:
        return (f'{entry.remote or "-"} - {entry.user or "-"} [{self._second(entry.started)}] '
                f'"{entry.method or "-"} {entry.target or "-"} {entry.protocol or "-"}" '
                f'{entry.status} {entry.bytes_sent or "-"}')

    def _combined(self, entry: AccessEntry) -> str:
        return (f'{self._common(entry)} "{entry.referer or "-"}" "{entry.user_agent or "-"}" '
                f'{entry.duration * 1000:.3f}ms {entry.request_id or "-"}')

    def json_fields(self, entry: AccessEntry) -> AccessFields:
        """``entry`` as the parts of the ``json`` layout."""
        remote, user, referer, user_agent = (entry.remote, entry.user, entry.referer,
                                             entry.user_agent)
        fields = (f'"remote":{"null" if remote is None else json_string(remote)},'
                  f'"user":{"null" if user is None else json_string(user)},'
                  f'"method":{json_string(entry.method)},"target":{json_string(entry.target)},'
                  f'"protocol":{json_string(entry.protocol)},'
                  f'"status":{entry.status},"bytes":{entry.bytes_sent},'
                  f'"duration_ms":{entry.duration * 1000:.3f},'
                  f'"request_id":{json_string(entry.request_id)},'
                  f'"referer":{"null" if referer is None else json_string(referer)},'
                  f'"user_agent":{"null" if user_agent is None else json_string(user_agent)}')
        summary = json_string(f"{entry.method} {entry.target} {entry.protocol} {entry.status}")
        return AccessFields(f'"{self._iso_time(entry.started)}"', summary, fields)


def _json_line(fields: AccessFields) -> str:
    return f'{{"time":{fields.time},{fields.fields}}}'


def access_log_for(options: LoggingOptions) -> AccessLog | None:
    """The access log ``[logging]`` asks for; None when ``access_log`` is false."""
    return AccessLog(options.access_log_format) if options.access_log else None
