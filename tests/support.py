"""Starting real programs for the integration tests, bounded in time.

A program's stderr and stdout are read by a thread into a list of lines; tests wait for a line
(an event), never sleep-and-poll.
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

ROOT = Path(__file__).resolve().parent.parent
PROGRAMS = Path(__file__).resolve().parent / "programs"
SAMPLES = ROOT / "samples"
STARTED = "Application started."
_LISTENING = re.compile(r"Now listening on: (\S+)")


#: Every program started and not yet stopped; the ``stop_programs`` fixture ends them.
RUNNING: list[Program] = []


class Program:
    """A running program whose output lines are collected as they come."""

    def __init__(self, args: Sequence[str], cwd: Path, env: dict[str, str] | None = None):
        # The test runner's own HOSTKIT_* variables must not leak into the program.
        inherited = {k: v for k, v in os.environ.items() if not k.upper().startswith("HOSTKIT_")}
        environment = {**inherited, "PYTHONUNBUFFERED": "1", **(env or {})}
        self.args = list(args)
        self.process = subprocess.Popen(
            self.args, cwd=cwd, env=environment, stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT, text=True, bufsize=1)
        self.lines: list[str] = []
        self._changed = threading.Condition()
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()
        RUNNING.append(self)

    def _read(self) -> None:
        assert self.process.stdout is not None
        for line in self.process.stdout:
            with self._changed:
                self.lines.append(line.rstrip("\n"))
                self._changed.notify_all()
        with self._changed:
            self._changed.notify_all()

    @property
    def output(self) -> str:
        return "\n".join(self.lines)

    def wait_for_line(self, pattern: str, timeout: float = 15) -> str:
        """The first output line containing ``pattern``; AssertionError after ``timeout``."""
        def found() -> str | None:
            return next((line for line in self.lines if pattern in line), None)

        with self._changed:
            ok = self._changed.wait_for(
                lambda: found() is not None or self.process.poll() is not None
                and not self._reader.is_alive(), timeout)
            line = found()
        if not ok or line is None:
            raise AssertionError(
                f"no line containing {pattern!r} within {timeout}s from {self.args}; "
                f"exit code {self.process.poll()}; output:\n{self.output}")
        return line

    def wait_started(self, timeout: float = 20) -> list[str]:
        """Wait for "Application started." and return the URLs it listens on."""
        self.wait_for_line(STARTED, timeout)
        return [m.group(1) for line in self.lines if (m := _LISTENING.search(line))]

    def signal(self, signum: int) -> None:
        self.process.send_signal(signum)

    def wait_exit(self, timeout: float = 20) -> int:
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


def python(*args: str) -> list[str]:
    return [sys.executable, *args]


async def raw_exchange(url: str, data: bytes, timeout: float = 15) -> bytes:
    """Send raw bytes to ``http://host:port`` and return the answer's head (or what came)."""
    import anyio

    host, port = url.removeprefix("http://").split(":")
    with anyio.fail_after(timeout):
        stream = await anyio.connect_tcp(host, int(port))
        await stream.send(data)
        answer = b""
        try:
            while b"\r\n\r\n" not in answer:
                answer += await stream.receive()
        except (anyio.EndOfStream, anyio.BrokenResourceError):
            pass
        await stream.aclose()
    return answer
