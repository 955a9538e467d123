"""Starting real programs for tests and benchmarks, bounded in time.

A :class:`Program` is a subprocess whose output (stdout and stderr, one stream) a thread reads
into a list of lines, each with the time it was read; a test waits for a line (an event), never
sleeps and polls. Every wait has a timeout and raises ``AssertionError`` with the program's
whole output when it runs out. A program is a context manager: ``with Program(...) as
program:`` stops it when the block ends, however it ends.

:func:`write_settings` writes the ``hostkit.toml`` a program started in a folder reads, and
:meth:`Program.started_children` reads the OutOfProcess module's "started child pid" lines.
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from pathlib import Path
from types import TracebackType

#: The line a host logs once it listens and the app's lifespan has started.
STARTED = "Application started."
_LISTENING = re.compile(r"Now listening on: ([^\s\"]+)")
# What the OutOfProcess module logs when it has started a child, and when that child listens.
_STARTED_CHILD = re.compile(r"started child pid (\d+) on 127\.0\.0\.1:(\d+)")
_CHILD_LISTENING = re.compile(r"child pid (\d+) listening after (\d+) ms")
# What the supervisor logs when a worker is ready; how a worker's own lines start.
_WORKER_READY = re.compile(r"worker pid (\d+) ready after")
_WORKER_LINE = re.compile(r"^\w+: \[(\d+)\] ")

#: Every program started and not yet stopped; a test session stops what is left here.
RUNNING: list[Program] = []


def python(*args: str) -> list[str]:
    """``args`` run by the current interpreter."""
    return [sys.executable, *args]


def toml_value(value: object) -> str:
    """A Python value written as TOML: a string, number, boolean, list, or a mapping (an
    inline table). ``TypeError`` for anything else."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return repr(value)
    if isinstance(value, (str, Path)):
        return json.dumps(str(value))
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(toml_value(item) for item in value) + "]"
    if isinstance(value, Mapping):
        return "{ " + ", ".join(f"{json.dumps(str(key))} = {toml_value(item)}"
                                for key, item in value.items()) + " }"
    raise TypeError(f"no TOML for {value!r}")


def write_settings(root: Path, settings: Mapping[str, object]) -> Path:
    """Write ``root/hostkit.toml`` from ``settings`` and return its path.

    Keys whose value is not a mapping are written first, at the top level; then each mapping
    becomes a table (``{"module": {"eager_start": True}}`` is ``[module]`` with
    ``eager_start = true``), and a mapping inside a table an inline table.
    """
    lines = [f"{key} = {toml_value(value)}" for key, value in settings.items()
             if not isinstance(value, Mapping)]
    for table, values in settings.items():
        if isinstance(values, Mapping):
            lines.append(f"[{table}]")
            lines += [f"{key} = {toml_value(value)}" for key, value in values.items()]
    path = root / "hostkit.toml"
    path.write_text("\n".join(lines) + "\n")
    return path


def started_children(lines: Iterable[str]) -> list[tuple[int, int]]:
    """``(pid, port)`` of every child an OutOfProcess front's log ``lines`` say it started,
    oldest first."""
    return [(int(match.group(1)), int(match.group(2))) for line in lines
            if (match := _STARTED_CHILD.search(line))]


def worker_of_line(line: str) -> int | None:
    """The pid of the supervisor's worker that wrote log ``line`` (its default format puts
    the pid in brackets); ``None`` for any other line, the supervisor's own included."""
    match = _WORKER_LINE.match(line)
    return int(match.group(1)) if match else None


def child_listening(line: str) -> tuple[int, float] | None:
    """``(pid, milliseconds)`` when ``line`` is the front's "child pid N listening after M ms",
    else None."""
    match = _CHILD_LISTENING.search(line)
    return (int(match.group(1)), float(match.group(2))) if match else None


class Program:
    """A running program whose output lines are collected as they come.

    The program gets this process's environment without its ``HOSTKIT_*`` variables (so the
    caller's own settings never leak in), ``PYTHONUNBUFFERED=1``, then ``env``; with
    ``inherit_environment=False``, ``env`` alone is its whole environment. It has no standard
    input. ``name`` (default: the program's file name) is what messages call it;
    ``new_session`` starts it in a session of its own, so a Ctrl+C in the terminal does not
    reach it; :meth:`stop` calls ``before_kill(program)`` before it has to SIGKILL it (e.g.
    to see where it is stuck).
    """

    def __init__(self, args: Sequence[str], cwd: Path | str, env: Mapping[str, str] | None = None,
                 *, name: str | None = None, new_session: bool = False,
                 before_kill: Callable[[Program], None] | None = None,
                 inherit_environment: bool = True):
        environment = dict(env or {})
        if inherit_environment:
            inherited = {k: v for k, v in os.environ.items()
                         if not k.upper().startswith("HOSTKIT_")}
            environment = {**inherited, "PYTHONUNBUFFERED": "1", **environment}
        self.args = list(args)
        self.name = name or Path(self.args[0]).name
        self.before_kill = before_kill
        self.lines: list[str] = []
        #: ``time.monotonic()`` when each of :attr:`lines` was read.
        self.times: list[float] = []
        #: the URLs it listens on, once :meth:`wait_started` has seen them.
        self.urls: list[str] = []
        self._eof = False
        self._changed = threading.Condition()
        #: ``time.monotonic()`` just before the program was started.
        self.started_at = time.monotonic()
        self.process = subprocess.Popen(
            self.args, cwd=cwd, env=environment, stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, errors="replace",
            bufsize=1, start_new_session=new_session)
        self._reader = threading.Thread(target=self._read, name=f"{self.name}-output",
                                        daemon=True)
        self._reader.start()
        RUNNING.append(self)

    @property
    def pid(self) -> int:
        return self.process.pid

    @property
    def running(self) -> bool:
        """The program has not exited yet."""
        return self.process.poll() is None

    def _read(self) -> None:
        assert self.process.stdout is not None
        with self.process.stdout:
            for line in self.process.stdout:
                with self._changed:
                    self.lines.append(line.rstrip("\n"))
                    self.times.append(time.monotonic())
                    self._changed.notify_all()
        with self._changed:
            self._eof = True
            self._changed.notify_all()

    @property
    def output(self) -> str:
        return "\n".join(self.lines)

    def tail(self, count: int = 30) -> str:
        """The last ``count`` lines of output."""
        return "\n".join(self.lines[-count:])

    def timed_lines(self) -> list[tuple[float, str]]:
        """Every line so far with the ``time.monotonic()`` it was read at."""
        with self._changed:
            return list(zip(self.times, self.lines))

    def line_time(self, pattern: str) -> float | None:
        """``time.monotonic()`` when the first line containing ``pattern`` was read; None
        while there is none."""
        return next((at for at, line in self.timed_lines() if pattern in line), None)

    def wait_until(self, condition: Callable[[], object], timeout: float, what: str) -> None:
        """Wait until ``condition()`` is true, checked on every new line of output.

        ``AssertionError`` naming ``what`` after ``timeout`` seconds, or as soon as the
        program has closed its output without the condition becoming true.
        """
        with self._changed:
            self._changed.wait_for(lambda: condition() or self._eof, timeout)
            if condition():
                return
        raise AssertionError(
            f"{what}: not within {timeout:g} s from {self.args}; exit code "
            f"{self.process.poll()}; output:\n{self.output}")

    def wait_for_line(self, pattern: str, timeout: float = 15) -> str:
        """The first output line containing ``pattern``; AssertionError after ``timeout``
        seconds or when the program ends without writing one."""
        def found() -> str | None:
            return next((line for line in self.lines if pattern in line), None)

        self.wait_until(found, timeout, f"no line containing {pattern!r}")
        line = found()
        assert line is not None
        return line

    def wait_for_count(self, text: str, count: int, timeout: float = 15) -> None:
        """Wait until ``text`` occurs at least ``count`` times in the output."""
        self.wait_until(lambda: self.output.count(text) >= count, timeout,
                        f"{text!r} not {count} times")

    def wait_started(self, timeout: float = 20) -> list[str]:
        """Wait for "Application started." and return the URLs it listens on (also kept in
        :attr:`urls`). Under a supervisor, the supervisor's own line: it comes once every
        worker's first start succeeded or failed (a worker's lines carry its pid)."""
        def started() -> bool:
            return any(STARTED in line and not _WORKER_LINE.match(line) for line in self.lines)

        self.wait_until(started, timeout, f"no line containing {STARTED!r}")
        self.urls = [m.group(1) for line in self.lines
                     if (m := _LISTENING.search(line)) and not _WORKER_LINE.match(line)]
        return self.urls

    def ready_workers(self) -> list[int]:
        """The pid of every worker the supervisor has logged ready so far, oldest first."""
        with self._changed:
            return [int(m.group(1)) for line in self.lines if (m := _WORKER_READY.search(line))]

    def wait_workers_ready(self, count: int, timeout: float = 30) -> list[int]:
        """Wait until the supervisor has logged ``count`` workers ready (in all, since it
        started); returns their pids, oldest first."""
        self.wait_until(lambda: len(self.ready_workers()) >= count, timeout,
                        f"not {count} workers ready")
        return self.ready_workers()

    def started_children(self) -> list[tuple[int, int]]:
        """``(pid, port)`` of every child this OutOfProcess front has logged it started so
        far, oldest first."""
        with self._changed:
            return started_children(self.lines)

    def signal(self, signum: int) -> None:
        self.process.send_signal(signum)

    def wait_exit(self, timeout: float = 20) -> int:
        """Wait for the program to end; its exit code (``TimeoutExpired`` after ``timeout``)."""
        code = self.process.wait(timeout)
        self._reader.join(5)
        return code

    def stop(self, timeout: float = 10) -> int:
        """SIGTERM, then SIGKILL if it has not exited within ``timeout`` seconds (calling
        ``before_kill`` first, when given). Returns the exit status.

        With ``HOSTKIT_TEST_LOG_DIR`` set, the program's whole output is saved there.
        """
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout)
            except subprocess.TimeoutExpired:
                if self.before_kill is not None:
                    self.before_kill(self)
                self.process.kill()
                self.process.wait(5)
        self._reader.join(5)
        if self in RUNNING:
            RUNNING.remove(self)
        folder = os.environ.get("HOSTKIT_TEST_LOG_DIR")
        if folder:
            Path(folder).mkdir(parents=True, exist_ok=True)
            (Path(folder) / f"{self.process.pid}.log").write_text(
                " ".join(self.args) + "\n" + self.output)
        return self.process.returncode

    def __enter__(self) -> Program:
        return self

    def __exit__(self, kind: type[BaseException] | None, error: BaseException | None,
                 traceback: TracebackType | None) -> None:
        self.stop()


def stop_all() -> None:
    """Stop every program still running (the safety net after a failed test)."""
    for program in list(RUNNING):
        program.stop()
