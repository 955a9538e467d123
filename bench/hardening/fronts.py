"""OutOfProcess fronts for the hardening suites: a content root, a ``hostkit.toml``, a process.

:class:`Front` starts ``bench/hardening/programs/app.py`` as the module on a free (or given)
loopback port with the settings a suite asks for, follows its log (the children it starts,
the lines a suite waits for) and stops it: SIGTERM, then SIGKILL after a bound.
"""

from __future__ import annotations

import json
import re
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path

from bench._harness import LOOPBACK, ServerProcess, free_port, server_environment

PROGRAMS = Path(__file__).resolve().parent / "programs"
APP = PROGRAMS / "app.py"
RECORDER = PROGRAMS / "recorder.py"
START_TIMEOUT = 30.0
_STARTED_CHILD = re.compile(r"started child pid (\d+) on 127\.0\.0\.1:(\d+)")
_CHILD_LISTENING = re.compile(r"child pid (\d+) listening after")


def toml_value(value: object) -> str:
    """A Python value written as TOML (strings, numbers, booleans, lists, tables of strings)."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return repr(value)
    if isinstance(value, str):
        return json.dumps(value)
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(toml_value(item) for item in value) + "]"
    if isinstance(value, dict):
        return "{" + ", ".join(f"{json.dumps(k)} = {toml_value(v)}"
                               for k, v in value.items()) + "}"
    raise TypeError(f"no TOML for {value!r}")


def write_settings(root: Path, settings: dict[str, dict[str, object] | object]) -> None:
    """``hostkit.toml`` in ``root``: top-level keys first, then one table per dict value."""
    lines = [f"{key} = {toml_value(value)}" for key, value in settings.items()
             if not isinstance(value, dict)]
    for table, values in settings.items():
        if isinstance(values, dict):
            lines.append(f"[{table}]")
            lines += [f"{key} = {toml_value(value)}" for key, value in values.items()]
    (root / "hostkit.toml").write_text("\n".join(lines) + "\n")


def child_program(path: Path, *arguments: str) -> dict[str, object]:
    """``[module]`` settings that run ``path`` with this interpreter as the child."""
    return {"process_path": sys.executable, "arguments": [str(path), *arguments]}


class Front:
    """One module (front) process with its own content root.

    ``module`` and ``server`` are the ``[module]`` and ``[server]`` settings on top of the
    suites' defaults (log the child's output to files, short stop limits).
    """

    def __init__(self, backend: str, *, module: dict[str, object] | None = None,
                 server: dict[str, object] | None = None, port: int | None = None,
                 shutdown_timeout: float = 5, root: Path | None = None,
                 environment: dict[str, str] | None = None):
        self.backend = backend
        self.port = port if port is not None else free_port()
        self.url = f"http://{LOOPBACK}:{self.port}"
        self._temporary = None if root is not None else tempfile.TemporaryDirectory(
            prefix="hostkit-hardening-")
        self.root = root if root is not None else Path(self._temporary.name)  # type: ignore[union-attr]
        write_settings(self.root, {
            "hosting_model": "OutOfProcess", "shutdown_timeout": shutdown_timeout,
            "server": {**(server or {})},
            "module": {"stdout_log_enabled": True, "stdout_log_file": "logs/child",
                       "shutdown_time_limit": 3, "startup_time_limit": 15, **(module or {})}})
        self.environment = environment or {}
        self.children: list[tuple[int, int]] = []  # (pid, port) in start order
        #: when each child was listening (``time.monotonic()`` of the module's log line).
        self.listening: dict[int, float] = {}
        self._changed = threading.Condition()
        self._lines: list[str] = []
        self._times: list[float] = []  # time.monotonic() of each line
        self.process: ServerProcess | None = None

    def start(self, timeout: float = START_TIMEOUT) -> Front:
        """Start the front and wait until it listens."""
        self.process = ServerProcess(
            f"front ({self.backend})",
            [sys.executable, str(APP), f"--urls={self.url}", f"--async_backend={self.backend}"],
            "Application started.", env=server_environment(self.environment,
                                                           drop_prefixes=("HOSTKIT_",)),
            cwd=self.root, on_line=self._line)
        self.process.wait_ready(timeout)
        return self

    def _line(self, line: str) -> None:
        with self._changed:
            self._lines.append(line)
            self._times.append(time.monotonic())
            match = _STARTED_CHILD.search(line)
            if match:
                self.children.append((int(match.group(1)), int(match.group(2))))
            match = _CHILD_LISTENING.search(line)
            if match:
                self.listening[int(match.group(1))] = time.monotonic()
            self._changed.notify_all()

    @property
    def pid(self) -> int:
        assert self.process is not None
        return self.process.pid

    def lines(self) -> list[str]:
        with self._changed:
            return list(self._lines)

    def timed_lines(self) -> list[tuple[float, str]]:
        """Every log line with the ``time.monotonic()`` it was read at."""
        with self._changed:
            return list(zip(self._times, self._lines))

    def wait_for(self, condition: Callable[[], bool], timeout: float, what: str) -> None:
        """Wait until ``condition()`` (checked on every log line, and every 50 ms)."""
        deadline = time.monotonic() + timeout
        with self._changed:
            while not condition():
                left = deadline - time.monotonic()
                if left <= 0:
                    raise TimeoutError(f"{what}: not within {timeout:g} s; front log:\n"
                                       + "\n".join(self._lines[-30:]))
                self._changed.wait(min(left, 0.05))

    def wait_line(self, pattern: str, timeout: float = 10.0, after: int = 0) -> str:
        """The first log line (from line number ``after`` on) containing ``pattern``."""
        found: list[str] = []

        def seen() -> bool:
            found[:] = [line for line in self._lines[after:] if pattern in line][:1]
            return bool(found)

        self.wait_for(seen, timeout, f"a line containing {pattern!r}")
        return found[0]

    def wait_children(self, count: int, timeout: float = 15.0) -> list[tuple[int, int]]:
        """Wait until the front has started ``count`` children; returns them all."""
        self.wait_for(lambda: len(self.children) >= count, timeout,
                      f"{count} children started")
        with self._changed:
            return list(self.children)

    def child_output(self) -> str:
        """Everything the children wrote to their stdout log files."""
        return "\n".join(path.read_text(errors="replace")
                         for path in sorted((self.root / "logs").glob("child_*.log")))

    def stop(self, timeout: float = 15.0) -> int:
        """SIGTERM, SIGKILL after ``timeout``; returns the exit status."""
        code = self.process.stop(timeout) if self.process is not None else 0
        if self._temporary is not None:
            self._temporary.cleanup()
            self._temporary = None
        return code

    def __enter__(self) -> Front:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()
