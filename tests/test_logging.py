"""hostkit's logging (``hostkit/logs.py``): the text and json formats, the level, one handler
however often it is configured, no line printed twice, and an exception in a view logged once
with its traceback; in-process, and end to end with real programs."""

from __future__ import annotations

import contextlib
import io
import json
import logging
import os
import re
import sys
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from hostkit.configuration.tables import LoggingOptions
from hostkit.logs import REQUEST_ID, HostkitHandler, configure_logging
from hostkit.testing import Program, python
from tests.support.paths import PROGRAMS, SAMPLES

TIMEOUT = 10
JSON_KEYS = ["time", "level", "logger", "message", "pid"]
ISO_TIME = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$")
_LEVELED = ("hostkit", "hostkit.access", "hypercorn.error", "watchfiles.main")


@contextlib.contextmanager
def hostkit_logging(options: LoggingOptions, *,
                    pid_prefix: bool = False) -> Iterator[io.StringIO]:
    """The root logger as a program that configured no logging has it (pytest's own handlers
    taken off for the block), :func:`configure_logging` applied with ``options``, and
    hostkit's handler writing to the buffer returned; everything put back after."""
    root = logging.getLogger()
    saved = root.handlers[:], root.level, [logging.getLogger(name).level for name in _LEVELED]
    root.handlers.clear()
    output = io.StringIO()
    try:
        configure_logging(options, pid_prefix=pid_prefix)
        (handler,) = root.handlers
        assert isinstance(handler, HostkitHandler)
        handler.setStream(output)
        yield output
    finally:
        root.handlers[:] = saved[0]
        root.setLevel(saved[1])
        for name, level in zip(_LEVELED, saved[2]):
            logging.getLogger(name).setLevel(level)


def raised() -> BaseException:
    try:
        raise RuntimeError("kaput")
    except RuntimeError as error:
        return error


# --- formats -------------------------------------------------------------------------------


@pytest.mark.parametrize("pid_prefix", [False, True])
def test_text_lines_are_what_basic_config_wrote(pid_prefix: bool) -> None:
    with hostkit_logging(LoggingOptions(), pid_prefix=pid_prefix) as output:
        logging.getLogger("hostkit.host").info("Now listening on: %s", "http://127.0.0.1:5000")
        logging.getLogger("app").warning("disk almost full")
        logging.getLogger("hostkit.request").error("failed", exc_info=raised())
    pid = f"[{os.getpid()}] " if pid_prefix else ""
    lines = output.getvalue().splitlines()
    assert lines[:3] == [f"INFO: {pid}hostkit.host: Now listening on: http://127.0.0.1:5000",
                         f"WARNING: {pid}app: disk almost full",
                         f"ERROR: {pid}hostkit.request: failed"]
    assert lines[3] == "Traceback (most recent call last):"
    assert lines[-1] == "RuntimeError: kaput"


def test_json_lines_are_one_object_each() -> None:
    with hostkit_logging(LoggingOptions(format="json")) as output:
        logging.getLogger("hostkit.host").info('said "hi"\nand left')
        logging.getLogger("hostkit.request").error("failed", exc_info=raised())
        logging.getLogger("app").warning("with a stack", stack_info=True)
    info, error, warning = (json.loads(line) for line in output.getvalue().splitlines())
    assert list(info) == JSON_KEYS
    assert ISO_TIME.match(info["time"])
    assert (info["level"], info["logger"], info["message"], info["pid"]) == (
        "INFO", "hostkit.host", 'said "hi"\nand left', os.getpid())
    assert list(error) == [*JSON_KEYS, "exception"]
    assert error["exception"].startswith("Traceback (most recent call last):")
    assert error["exception"].endswith("RuntimeError: kaput")
    assert list(warning) == [*JSON_KEYS, "stack"]
    assert warning["stack"].startswith("Stack (most recent call last):")


def test_json_lines_carry_the_request_id_while_a_request_is_served() -> None:
    with hostkit_logging(LoggingOptions(format="json")) as output:
        logging.getLogger("app").info("before")
        token = REQUEST_ID.set("0HN1:0000002A")
        try:
            logging.getLogger("app").info("during")
        finally:
            REQUEST_ID.reset(token)
        logging.getLogger("app").info("after")
    before, during, after = (json.loads(line) for line in output.getvalue().splitlines())
    assert "request_id" not in before and "request_id" not in after
    assert during["request_id"] == "0HN1:0000002A"
    assert list(during) == [*JSON_KEYS, "request_id"]


# --- levels --------------------------------------------------------------------------------


@pytest.mark.parametrize(("level", "shown"), [
    ("debug", ["DEBUG", "INFO", "WARNING", "ERROR"]),
    ("info", ["INFO", "WARNING", "ERROR"]),
    ("warning", ["WARNING", "ERROR"]),
    ("error", ["ERROR"]),
])
def test_level_is_hostkits(level: str, shown: list[str]) -> None:
    with hostkit_logging(LoggingOptions(level=level)) as output:
        logger = logging.getLogger("hostkit.supervisor")
        logger.debug("a debug line")
        logger.info("an info line")
        logger.warning("a warning line")
        logger.error("an error line")
        logging.getLogger("app").info("the app's info line")
        logging.getLogger("hostkit.access").info("an access line")
    lines = output.getvalue().splitlines()
    assert [line.split(":")[0] for line in lines if "hostkit.supervisor" in line] == shown
    # The app's loggers stay at INFO, and the access log has its own switch (access_log).
    assert "INFO: app: the app's info line" in lines
    assert "an access line" in lines


def test_hypercorn_stays_quiet_below_warning() -> None:
    with hostkit_logging(LoggingOptions(level="debug")) as output:
        logging.getLogger("hypercorn.error").info("Running on http://127.0.0.1:5000")
        logging.getLogger("watchfiles.main").info("1 change detected")
        logging.getLogger("hypercorn.error").warning("a real warning")
    assert output.getvalue().splitlines() == ["WARNING: hypercorn.error: a real warning"]


# --- one handler ---------------------------------------------------------------------------


def test_configuring_again_changes_the_handler_and_adds_none() -> None:
    with hostkit_logging(LoggingOptions()) as output:
        root = logging.getLogger()
        (handler,) = root.handlers
        configure_logging(LoggingOptions(), pid_prefix=False)
        configure_logging(LoggingOptions(format="json", level="debug"), pid_prefix=False)
        assert root.handlers == [handler]
        logging.getLogger("hostkit.host").debug("now in json")
    (line,) = output.getvalue().splitlines()
    assert json.loads(line)["message"] == "now in json"


def test_a_program_that_configured_logging_keeps_its_handlers() -> None:
    root = logging.getLogger()
    saved = root.handlers[:], root.level, logging.getLogger("hostkit").level
    own = logging.StreamHandler(io.StringIO())
    own.setFormatter(logging.Formatter("mine %(name)s %(message)s"))
    root.handlers[:] = [own]
    root.setLevel(logging.WARNING)
    try:
        configure_logging(LoggingOptions(level="debug", format="json"), pid_prefix=False)
        assert root.handlers == [own] and root.level == logging.WARNING
        logging.getLogger("hostkit.host").debug("hostkit's level applies")
        logging.getLogger("app").info("the program's level applies")
    finally:
        root.handlers[:] = saved[0]
        root.setLevel(saved[1])
        logging.getLogger("hostkit").setLevel(saved[2])
    assert own.stream.getvalue().splitlines() == ["mine hostkit.host hostkit's level applies"]


# --- no line twice -------------------------------------------------------------------------


@contextlib.contextmanager
def app_logger(handler: logging.Handler, *, propagate: bool = True) -> Iterator[logging.Logger]:
    """The logger ``shop.orders`` whose parent ``shop`` has ``handler``, as an app's
    ``LOGGING`` sets one up."""
    parent, logger = logging.getLogger("shop"), logging.getLogger("shop.orders")
    parent.addHandler(handler)
    parent.setLevel(logging.INFO)
    parent.propagate = propagate
    try:
        yield logger
    finally:
        parent.removeHandler(handler)
        parent.setLevel(logging.NOTSET)
        parent.propagate = True
        handler.close()


def test_a_line_the_app_printed_itself_is_not_printed_again(
        capsys: pytest.CaptureFixture[str]) -> None:
    with hostkit_logging(LoggingOptions()) as output:
        with app_logger(logging.StreamHandler(sys.stderr)) as logger:
            logger.info("order placed")
            logger.error("order failed", exc_info=raised())
        logging.getLogger("shop.orders").info("after the app's handler is gone")
    assert capsys.readouterr().err.splitlines()[0] == "order placed"
    assert output.getvalue().splitlines() == ["INFO: shop.orders: after the app's handler is gone"]


@pytest.mark.parametrize("case", ["file", "higher level", "filtered out"])
def test_a_line_the_app_did_not_print_is_printed(case: str, tmp_path: Path) -> None:
    if case == "file":
        handler: logging.Handler = logging.FileHandler(tmp_path / "shop.log")
    else:
        handler = logging.StreamHandler(sys.stderr)
        if case == "higher level":
            handler.setLevel(logging.ERROR)
        else:
            handler.addFilter(lambda record: False)
    with hostkit_logging(LoggingOptions()) as output:
        with app_logger(handler) as logger:
            logger.info("order placed")
    assert output.getvalue().splitlines() == ["INFO: shop.orders: order placed"]
    if case == "file":
        assert (tmp_path / "shop.log").read_text() == "order placed\n"


def test_a_logger_that_does_not_propagate_is_the_apps_alone() -> None:
    with hostkit_logging(LoggingOptions()) as output:
        with app_logger(logging.StreamHandler(io.StringIO()), propagate=False) as logger:
            logger.info("order placed")
    assert output.getvalue() == ""


# --- end to end ----------------------------------------------------------------------------


def serve(program: Path, backend: str, *args: str) -> Program:
    return Program(python(str(program), "--urls=http://127.0.0.1:0",
                          f"--async_backend={backend}", *args), cwd=program.parent)


@pytest.mark.integration
@pytest.mark.anyio
async def test_an_exception_in_a_view_is_logged_once(anyio_backend: str) -> None:
    with serve(PROGRAMS / "logging_app.py", anyio_backend) as program:
        (url,) = program.wait_started()
        async with httpx.AsyncClient(timeout=TIMEOUT) as client:
            assert (await client.get(url + "/boom")).status_code == 500
            with pytest.raises(httpx.RemoteProtocolError):  # aborted, not a made-up end
                await client.get(url + "/partial")
            assert (await client.get(url + "/shop")).text == "ordered\n"
        program.wait_for_line("unhandled exception while serving GET /partial", TIMEOUT)
        program.wait_for_line("order placed", TIMEOUT)
    output = program.output
    assert output.count("Traceback (most recent call last):") == 2, output
    assert output.count("unhandled exception while serving GET /boom") == 1, output
    assert output.count("RuntimeError: boom in a view") == 1, output
    assert output.count("RuntimeError: boom after the response started") == 1, output
    assert "Error in ASGI Framework" not in output
    assert output.count("order placed") == 1, output


@pytest.mark.integration
def test_a_django_apps_lines_appear_once() -> None:
    # Django's ASGI handler runs on asyncio only (under trio it cannot serve a request).
    with serve(PROGRAMS / "django_app.py", "asyncio") as program:
        (url,) = program.wait_started()
        with httpx.Client(timeout=TIMEOUT) as client:
            assert client.get(url + "/order").text == "ordered\n"
            assert client.get(url + "/boom").status_code == 500
        program.wait_for_line("RuntimeError: boom in a Django view", TIMEOUT)
    output = program.output
    assert output.count("order placed") == 1, output
    assert output.count("Internal Server Error: /boom") == 1, output
    assert output.count("Traceback (most recent call last):") == 1, output


@pytest.mark.integration
@pytest.mark.anyio
async def test_json_logging_end_to_end(anyio_backend: str) -> None:
    with serve(SAMPLES / "hello" / "app.py", anyio_backend, "--logging:format=json") as program:
        program.wait_for_line("Application started.", 20)
        (url,) = [json.loads(line)["message"].removeprefix("Now listening on: ")
                  for line in program.lines if "Now listening on: " in line]
        async with httpx.AsyncClient(timeout=TIMEOUT) as client:
            assert (await client.get(url + "/")).status_code == 200
    assert program.lines
    for line in program.lines:
        parsed = json.loads(line)
        assert isinstance(parsed, dict), line
        assert list(parsed)[:5] == JSON_KEYS, line
        assert parsed["pid"] == program.pid
    messages = [json.loads(line)["message"] for line in program.lines]
    assert "Application stopped." in messages
