"""The access log's lines (``hostkit/access_log.py``): the three layouts, exactly; escaping
that no client can get around; the record on ``hostkit.access``; and the same output whether
the line goes to hostkit's handler directly or as a record."""

from __future__ import annotations

import calendar
import dataclasses
import io
import json
import logging
import re
from collections.abc import Iterator

import pytest

from hostkit.access_log import FORMATS, AccessEntry, AccessLog, access_log_for
from hostkit.configuration.tables import LoggingOptions
from hostkit.logs import sole_handler
from tests.test_logging import hostkit_logging

# 10/Oct/2000:13:55:36 +0000, and 123 ms into that second.
STARTED = calendar.timegm((2000, 10, 10, 13, 55, 36, 0, 0, 0)) + 0.123

ENTRY = AccessEntry(
    remote="203.0.113.7", user="alice", method="GET", target="/x?y=1", protocol="HTTP/1.1",
    status=200, bytes_sent=123, started=STARTED, duration=0.0012345,
    request_id="0HN1:00000001", referer="https://example.com/", user_agent="curl/8.5.0")

ANONYMOUS = AccessEntry(
    remote=None, user=None, method="HEAD", target="/", protocol="HTTP/2", status=304,
    bytes_sent=0, started=STARTED, duration=0.5, request_id="0HN1:00000002")

# What a client controls, with everything that could end a line, a field or a quote.
HOSTILE = '/a"b\\c\r\nINFO: forged\x1b[31m\x00\x7f\x85\u2028é\U0001f600'

# The combined layout, parsed as a log reader parses it: quoted fields may hold \" and \\.
COMBINED = re.compile(
    r'^(?P<remote>\S+) - (?P<user>\S+) \[(?P<time>[^\]]+)\] '
    r'"(?P<request>(?:[^"\\]|\\.)*)" (?P<status>\d{3}) (?P<bytes>\d+|-) '
    r'"(?P<referer>(?:[^"\\]|\\.)*)" "(?P<agent>(?:[^"\\]|\\.)*)" '
    r'(?P<ms>\d+\.\d{3})ms (?P<id>\S+)$')


def unescape(field: str) -> str:
    """A field of the common/combined layouts back to its text (the module's escapes)."""
    return re.sub(r'\\(x[0-9a-f]{2}|u[0-9a-f]{4}|U[0-9a-f]{8}|.)',
                  lambda m: chr(int(m.group(1)[1:], 16)) if len(m.group(1)) > 1
                  else m.group(1), field)


def test_common_is_apache_common_log_format() -> None:
    log = AccessLog("common")
    assert log.line(ENTRY) == (
        '203.0.113.7 - alice [10/Oct/2000:13:55:36 +0000] "GET /x?y=1 HTTP/1.1" 200 123')
    assert log.line(ANONYMOUS) == '- - - [10/Oct/2000:13:55:36 +0000] "HEAD / HTTP/2" 304 -'


def test_combined_adds_referer_agent_duration_and_request_id() -> None:
    log = AccessLog("combined")
    assert log.line(ENTRY) == (
        '203.0.113.7 - alice [10/Oct/2000:13:55:36 +0000] "GET /x?y=1 HTTP/1.1" 200 123 '
        '"https://example.com/" "curl/8.5.0" 1.234ms 0HN1:00000001')
    assert log.line(ANONYMOUS) == (
        '- - - [10/Oct/2000:13:55:36 +0000] "HEAD / HTTP/2" 304 - "-" "-" 500.000ms '
        '0HN1:00000002')


def test_json_is_one_object_with_every_field() -> None:
    log = AccessLog("json")
    assert log.line(ENTRY) == (
        '{"time":"2000-10-10T13:55:36.123Z","remote":"203.0.113.7","user":"alice",'
        '"method":"GET","target":"/x?y=1","protocol":"HTTP/1.1","status":200,"bytes":123,'
        '"duration_ms":1.234,"request_id":"0HN1:00000001","referer":"https://example.com/",'
        '"user_agent":"curl/8.5.0"}')
    assert json.loads(log.line(ANONYMOUS)) == {
        "time": "2000-10-10T13:55:36.123Z", "remote": None, "user": None, "method": "HEAD",
        "target": "/", "protocol": "HTTP/2", "status": 304, "bytes": 0, "duration_ms": 500.0,
        "request_id": "0HN1:00000002", "referer": None, "user_agent": None}


def test_the_time_is_the_arrival_second_in_utc() -> None:
    log = AccessLog("combined")
    lines = [log.line(dataclasses.replace(ENTRY, started=STARTED + offset))
             for offset in (0.0, 0.5, 1.0, 86400.0 * 22)]
    stamps = [line.split("[")[1].split("]")[0] for line in lines]
    assert stamps == ["10/Oct/2000:13:55:36 +0000", "10/Oct/2000:13:55:36 +0000",
                      "10/Oct/2000:13:55:37 +0000", "01/Nov/2000:13:55:36 +0000"]
    json_log = AccessLog("json")
    late = dataclasses.replace(ENTRY, started=STARTED + 0.876)
    assert json.loads(json_log.line(late))["time"] == "2000-10-10T13:55:36.999Z"


def hostile_entry() -> AccessEntry:
    return AccessEntry(
        remote="198.51.100.1\n", user='mallory"\r\n', method="GET", target=HOSTILE,
        protocol="HTTP/1.1", status=404, bytes_sent=9, started=STARTED, duration=0.001,
        request_id="id\n2", referer='x" "y', user_agent=f"agent {HOSTILE}")


@pytest.mark.parametrize("format", ["common", "combined"])
def test_a_client_cannot_break_a_text_line(format: str) -> None:
    line = AccessLog(format).line(hostile_entry())
    assert len(line.splitlines()) == 1
    assert line.isascii() and line.isprintable(), line
    if format == "combined":
        match = COMBINED.match(line)
        assert match is not None, line
        assert unescape(match["request"]) == f"GET {HOSTILE} HTTP/1.1"
        assert unescape(match["referer"]) == 'x" "y'
        assert unescape(match["agent"]) == f"agent {HOSTILE}"
        assert unescape(match["user"]) == 'mallory"\r\n'
        assert unescape(match["id"]) == "id\n2"
        assert (match["status"], match["bytes"]) == ("404", "9")


def test_escapes_are_apaches() -> None:
    entry = dataclasses.replace(ANONYMOUS, target='/"\\\n\t\x1bé\u2028')
    assert AccessLog("common").line(entry) == (
        '- - - [10/Oct/2000:13:55:36 +0000] "HEAD /\\"\\\\\\x0a\\x09\\x1b\\xe9\\u2028 HTTP/2" '
        '304 -')


def test_a_client_cannot_break_a_json_line() -> None:
    line = AccessLog("json").line(hostile_entry())
    assert len(line.splitlines()) == 1 and line.isascii() and line.isprintable()
    parsed = json.loads(line)
    assert parsed["target"] == HOSTILE
    assert parsed["user_agent"] == f"agent {HOSTILE}"
    assert parsed["user"] == 'mallory"\r\n'


def test_access_log_for_follows_the_settings() -> None:
    assert access_log_for(LoggingOptions(access_log=False)) is None
    for format in FORMATS:
        log = access_log_for(LoggingOptions(access_log_format=format))
        assert log is not None and log.format == format
    with pytest.raises(ValueError, match="'apache'"):
        AccessLog("apache")


class Records(logging.Handler):
    """Keeps every record it is given."""

    def __init__(self) -> None:
        super().__init__()
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)


@pytest.fixture
def access_records() -> Iterator[Records]:
    logger = logging.getLogger("hostkit.access")
    records = Records()
    level = logger.level
    logger.setLevel(logging.INFO)
    logger.addHandler(records)
    yield records
    logger.removeHandler(records)
    logger.setLevel(level)


@pytest.mark.parametrize("format", FORMATS)
def test_write_logs_one_info_record_whose_message_is_the_line(
        format: str, access_records: Records) -> None:
    log = AccessLog(format)
    log.write(ENTRY)
    log.write(ANONYMOUS)
    assert [record.getMessage() for record in access_records.records] == [
        log.line(ENTRY), log.line(ANONYMOUS)]
    for record in access_records.records:
        assert (record.name, record.levelno, record.levelname) == ("hostkit.access", 20, "INFO")
        assert record.exc_info is None and not record.args


def test_records_are_fresh_and_timed_when_written(access_records: Records) -> None:
    log = AccessLog("common")
    for _ in range(3):
        log.write(ENTRY)
    first, second, third = access_records.records
    assert first is not second and first.__dict__ is not second.__dict__
    assert first.created <= second.created <= third.created
    assert second.relativeCreated - first.relativeCreated == pytest.approx(
        (second.created - first.created) * 1000, abs=0.01)
    second.msg = "changed by a filter"
    assert third.getMessage() == log.line(ENTRY)


def test_nothing_is_written_when_the_access_logger_is_off(access_records: Records) -> None:
    logging.getLogger("hostkit.access").setLevel(logging.WARNING)
    AccessLog("combined").write(ENTRY)
    assert access_records.records == []


@pytest.mark.parametrize("log_format", ["text", "json"])
@pytest.mark.parametrize("format", FORMATS)
def test_direct_and_record_paths_write_the_same(format: str, log_format: str) -> None:
    access = logging.getLogger("hostkit.access")
    log = AccessLog(format)
    with hostkit_logging(LoggingOptions(format=log_format)) as output:
        assert sole_handler(access) is not None
        log.write(ENTRY)
        # Another handler on the way (not to the terminal, so hostkit's still prints): the
        # line goes as a record.
        other = logging.StreamHandler(io.StringIO())
        access.addHandler(other)
        try:
            assert sole_handler(access) is None
            log.write(ENTRY)
        finally:
            access.removeHandler(other)
    direct, recorded = output.getvalue().splitlines()
    if log_format == "text":
        assert direct == recorded == log.line(ENTRY)
    else:
        direct_object, recorded_object = json.loads(direct), json.loads(recorded)
        if format != "json":  # the time of writing; json's is the arrival, the same
            direct_object.pop("time"), recorded_object.pop("time")
        assert direct_object == recorded_object


def test_json_with_json_logging_is_one_object_not_a_string_in_one() -> None:
    with hostkit_logging(LoggingOptions(format="json")) as output:
        AccessLog("json").write(hostile_entry())
    (line,) = output.getvalue().splitlines()
    parsed = json.loads(line)
    assert list(parsed) == [
        "time", "level", "logger", "message", "pid", "remote", "user", "method", "target",
        "protocol", "status", "bytes", "duration_ms", "request_id", "referer", "user_agent"]
    assert parsed["time"] == "2000-10-10T13:55:36.123Z"
    assert (parsed["level"], parsed["logger"]) == ("INFO", "hostkit.access")
    assert parsed["message"] == f"GET {HOSTILE} HTTP/1.1 404"
    assert parsed["target"] == HOSTILE and parsed["status"] == 404


def test_json_with_text_logging_is_the_object_alone() -> None:
    with hostkit_logging(LoggingOptions()) as output:
        AccessLog("json").write(ENTRY)
    (line,) = output.getvalue().splitlines()
    assert line == AccessLog("json").line(ENTRY)


@pytest.mark.parametrize("format", FORMATS)
@pytest.mark.parametrize("entry", [ENTRY, ANONYMOUS, dataclasses.replace(ENTRY, target=HOSTILE,
                                                                          user_agent=HOSTILE)])
def test_write_request_writes_what_write_writes(format: str, entry: AccessEntry) -> None:
    """The gateway's per-request path (``write_request``, which formats a plain line itself)
    and :meth:`AccessLog.write` give the same line, through hostkit's handler and as a
    record: the layouts have one definition, ``line``."""
    access = logging.getLogger("hostkit.access")
    log = AccessLog(format)
    with hostkit_logging(LoggingOptions(format="text")) as output:
        log.write_request(*dataclasses.astuple(entry))
        log.write(entry)
        other = logging.StreamHandler(io.StringIO())
        access.addHandler(other)
        try:
            log.write_request(*dataclasses.astuple(entry))
        finally:
            access.removeHandler(other)
    fast, reference, recorded = output.getvalue().splitlines()
    assert fast == reference == recorded == log.line(entry)
