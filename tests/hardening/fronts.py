"""OutOfProcess fronts for the hardening suites: a content root, a ``hostkit.toml``, a process.

:class:`Front` starts ``tests/programs/hardening_app.py`` (or another program) as the module
on a free (or given) loopback port with the settings a suite asks for, waits until it listens,
follows its log (the children it starts, when each listened) and, at the end of its ``with``
block, stops it: SIGTERM, then SIGKILL after a bound.
"""

from __future__ import annotations

import tempfile
from collections.abc import Mapping
from pathlib import Path

from hostkit.testing import Program, python, write_settings
from hostkit.testing.program import child_listening
from tests.support.fronts import front_settings
from tests.support.paths import PROGRAMS
from tests.support.processes import LOOPBACK, free_port

APP = PROGRAMS / "hardening_app.py"
RECORDER = PROGRAMS / "recorder.py"
START_TIMEOUT = 30.0
STOP_TIMEOUT = 15.0


class Front(Program):
    """One module (front) process with its own content root, listening once constructed.

    ``module`` and ``server`` are the ``[module]`` and ``[server]`` settings on top of the
    defaults of :func:`tests.support.fronts.front_settings`, ``tables`` any other tables
    (``{"workers": {...}}``); ``root`` is a content root the caller owns (default: a
    temporary one, removed at stop). With ``tls`` (the ``[tls]`` settings) the front also
    listens on https, on :attr:`secure_port`. ``program`` is what runs as the front and, by
    default, as its child (default: ``hardening_app.py``).
    """

    def __init__(self, backend: str, *, module: dict[str, object] | None = None,
                 server: dict[str, object] | None = None, port: int | None = None,
                 shutdown_timeout: float = 5, root: Path | None = None,
                 environment: dict[str, str] | None = None,
                 tls: Mapping[str, object] | None = None, program: Path = APP,
                 tables: Mapping[str, Mapping[str, object]] | None = None):
        self.backend = backend
        self.port = port if port is not None else free_port()
        self.url = f"http://{LOOPBACK}:{self.port}"
        self.secure_port = free_port() if tls is not None else None
        urls = [self.url] + ([f"https://{LOOPBACK}:{self.secure_port}"] if tls else [])
        self._temporary: tempfile.TemporaryDirectory[str] | None = None
        if root is None:
            self._temporary = tempfile.TemporaryDirectory(prefix="hostkit-hardening-")
            root = Path(self._temporary.name)
        self.root = root
        write_settings(self.root, front_settings(shutdown_timeout=shutdown_timeout,
                                                 server=server, module=module,
                                                 **({"tls": dict(tls)} if tls else {}),
                                                 **{name: dict(values) for name, values
                                                    in (tables or {}).items()}))
        super().__init__(python(str(program), f"--urls={';'.join(urls)}",
                                f"--async_backend={backend}"),
                         self.root, environment, name=f"front ({backend})")
        try:
            self.wait_started(START_TIMEOUT)
        except AssertionError:
            self.stop()
            raise

    @property
    def children(self) -> list[tuple[int, int]]:
        """``(pid, port)`` of every child started so far, oldest first."""
        return self.started_children()

    @property
    def listening(self) -> dict[int, float]:
        """When each child was listening: ``time.monotonic()`` of the module's log line."""
        return {listened[0]: at for at, line in self.timed_lines()
                if (listened := child_listening(line))}

    def wait_children(self, count: int, timeout: float = 15.0) -> list[tuple[int, int]]:
        """Wait until the front has started ``count`` children; returns them all."""
        self.wait_until(lambda: len(self.children) >= count, timeout,
                        f"{count} children started")
        return self.children

    def stop(self, timeout: float = STOP_TIMEOUT) -> int:
        """:meth:`Program.stop`, with a longer default bound; then removes the temporary
        content root."""
        code = super().stop(timeout)
        if self._temporary is not None:
            self._temporary.cleanup()
            self._temporary = None
        return code
