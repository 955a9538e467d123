"""Starting real programs for tests, bounded in time.

A program's stdout and stderr are read by a thread into a list of lines; tests wait for a line
(an event), never sleep-and-poll. Every wait has a timeout and raises ``AssertionError`` with
the program's whole output when it runs out.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import threading
from collections.abc import Sequence
from pathlib import Path

#: The line a host logs once it listens and the app's lifespan has started.
STARTED = "Application started."
_LISTENING = re.compile(r"Now listening on: (\S+)")

#: Every program started and not yet stopped; a test session stops what is left here.
RUNNING: list[Program] = []


def python(*args: str) -> list[str]:
    """``args`` run by the current interpreter."""
    return [sys.executable, *args]


class Program:
    """A running program whose output lines are collected as they come.

    The program gets this process's environment without its ``HOSTKIT_*`` variables (so the
    test runner's own settings never leak in), ``PYTHONUNBUFFERED=1``, then ``env``.
    """

    def __init__(self, args: Sequence[str], cwd: Path, env: dict[str, str] | None = None):
        inherited = {k: v for k, v in os.environ.items() if not k.upper().startswith("HOSTKIT_")}
        environment = {**inherited, "PYTHONUNBUFFERED": "1", **(env or {})}
        self.args = list(args)
        self.process = subprocess.Popen(
            self.args, cwd=cwd, env=environment, stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT, text=True, bufsize=1)
        self.lines: list[str] = []
        self._eof = False
        self._changed = threading.Condition()
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()
        RUNNING.append(self)

    @property
    def pid(self) -> int:
        return self.process.pid

    def _read(self) -> None:
        assert self.process.stdout is not None
        for line in self.process.stdout:
            with self._changed:
                self.lines.append(line.rstrip("\n"))
                self._changed.notify_all()
        with self._changed:
            self._eof = True
            self._changed.notify_all()

    @property
    def output(self) -> str:
        return "\n".join(self.lines)

    def _ended(self) -> bool:
        """The program closed its output: no line will come any more."""
        return self._eof

    def wait_for_line(self, pattern: str, timeout: float = 15) -> str:
        """The first output line containing ``pattern``; AssertionError after ``timeout``
        seconds or when the program ends without writing one."""
        def found() -> str | None:
            return next((line for line in self.lines if pattern in line), None)

        with self._changed:
            ok = self._changed.wait_for(lambda: found() is not None or self._ended(), timeout)
            line = found()
        if not ok or line is None:
            raise AssertionError(
                f"no line containing {pattern!r} within {timeout}s from {self.args}; "
                f"exit code {self.process.poll()}; output:\n{self.output}")
        return line

    def wait_for_count(self, text: str, count: int, timeout: float = 15) -> None:
        """Wait until ``text`` occurs at least ``count`` times in the output."""
        with self._changed:
            ok = self._changed.wait_for(
                lambda: self.output.count(text) >= count or self._ended(), timeout)
            ok = ok and self.output.count(text) >= count
        if not ok:
            raise AssertionError(f"{text!r} not {count} times within {timeout}s from "
                                 f"{self.args}; output:\n{self.output}")

    def wait_started(self, timeout: float = 20) -> list[str]:
        """Wait for "Application started." and return the URLs it listens on."""
        self.wait_for_line(STARTED, timeout)
        return [m.group(1) for line in self.lines if (m := _LISTENING.search(line))]

    def signal(self, signum: int) -> None:
        self.process.send_signal(signum)

    def wait_exit(self, timeout: float = 20) -> int:
        """Wait for the program to end; its exit code (``TimeoutExpired`` after ``timeout``)."""
        code = self.process.wait(timeout)
        self._reader.join(5)
        return code

    def stop(self) -> None:
        """SIGTERM, then SIGKILL if it has not exited within 10 s.

        With ``HOSTKIT_TEST_LOG_DIR`` set, the program's whole output is saved there.
        """
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(10)
            except subprocess.TimeoutExpired:
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


def stop_all() -> None:
    """Stop every program still running (the safety net after a failed test)."""
    for program in list(RUNNING):
        program.stop()
