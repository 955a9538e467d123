"""Reusable pieces for hostkit's benchmarks: servers as subprocesses, wrk, and results.

Everything here talks to 127.0.0.1 only, and every wait has a timeout, so a benchmark built
from these pieces always ends by itself.

- :func:`loopback_url`: where a server listens (on a
  :func:`tests.support.processes.free_port`);
- :func:`start_server`: start a server program (a :class:`hostkit.testing.Program`, stopped
  at the end of a ``with`` block: SIGTERM, bounded wait, then SIGKILL) and wait for the line
  it logs when ready (:func:`wait_ready`; any other wait of its :class:`Program`, such as
  ``wait_workers_ready``: :func:`wait_started_by`);
- :func:`fetch` (and :func:`fetch_with_headers`): one GET, to check a server answers what it
  should before loading it (:func:`check_answer`); :func:`keeps_alive`: whether it keeps the
  connection open;
- :func:`wait_accepting`: wait for a server that logs nothing when ready (nginx);
- :class:`LogFileProgram`: a server whose output goes to a file, as nginx's access log does;
- :class:`ServerModes` (:func:`server_modes`): what every server of a run is told, so both
  sides of a comparison do the same work: whether it writes an access log, which event loop;
  the InProcess comparisons' access-log modes: :data:`ACCESS_LOG_MODES`; the request lines
  each log holds afterwards: :func:`request_lines`, :func:`access_log_warnings`,
  :func:`request_line_warnings`;
- :func:`distribution_version`: the installed version of a package a benchmark measured (the
  code itself: :func:`tests.support.source.source_state`; processes, from ``/proc``:
  :mod:`tests.support.processes`);
- :func:`ensure_wrk` (and :func:`ensure_program` for other tools), :func:`run_wrk` (with the
  CPU time wrk itself used) and :func:`parse_wrk`: the load generator.

The command line, the measured rounds, what is printed and the JSON written are
:mod:`bench.cli`'s.
"""

from __future__ import annotations

import contextlib
import dataclasses
import http.client
import importlib.metadata
import os
import re
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any, TypeVar

from bench.trivial_app import BODY
from hostkit.testing import Program
from tests.support.processes import LOOPBACK

#: The repository root: benchmarks put it on PYTHONPATH so servers can import ``bench``.
REPO_ROOT = Path(__file__).resolve().parent.parent


T = TypeVar("T")


class BenchmarkError(RuntimeError):
    """A benchmark could not run: a server did not start, wrk failed or printed nonsense."""


# --- addresses -----------------------------------------------------------------------------

def loopback_url(port: int, path: str = "/") -> str:
    """``http://127.0.0.1:PORT/path``: the only kind of address benchmarks send traffic to."""
    return f"http://{LOOPBACK}:{port}{path}"


def _require_loopback(url: str) -> None:
    if not url.startswith(f"http://{LOOPBACK}:"):
        raise ValueError(f"benchmarks only send traffic to {LOOPBACK}, not to {url!r}")


# --- server processes ----------------------------------------------------------------------

def server_environment(extra: Mapping[str, str] | None = None) -> dict[str, str]:
    """This process's environment for a server, without its ``HOSTKIT_*`` variables (so the
    caller's shell cannot change what is measured): ``bench`` importable from any working
    directory, output unbuffered, then ``extra``."""
    env = {name: value for name, value in os.environ.items() if not name.startswith("HOSTKIT_")}
    python_path = [str(REPO_ROOT)] + [p for p in env.get("PYTHONPATH", "").split(os.pathsep) if p]
    env["PYTHONPATH"] = os.pathsep.join(python_path)
    env["PYTHONUNBUFFERED"] = "1"
    env.update(extra or {})
    return env


def start_server(name: str, argv: Sequence[str], ready_marker: str, *,
                 env: Mapping[str, str], cwd: str | Path,
                 timeout: float = 30.0, log_file: Path | None = None) -> Program:
    """Start ``argv`` with exactly the environment ``env`` and wait (up to ``timeout`` s) for
    ``ready_marker`` in its output: a pipe, or with ``log_file`` that file
    (:class:`LogFileProgram`).

    It runs in a session of its own (a Ctrl+C reaches the benchmark only), and says so when
    its stop has to SIGKILL it.
    """
    options: dict[str, Any] = {"name": name, "new_session": True, "before_kill": say_killed,
                               "inherit_environment": False}
    server = (Program(argv, cwd, env, **options) if log_file is None
              else LogFileProgram(argv, cwd, env, log_file=log_file, **options))
    wait_ready(server, ready_marker, timeout)
    return server


def say_killed(server: Program) -> None:
    """Before a server that ignored SIGTERM is killed: say so."""
    print(f"{server.name} (pid {server.pid}) ignored SIGTERM: SIGKILL", file=sys.stderr)


def wait_ready(server: Program, ready_marker: str, timeout: float, *, count: int = 1) -> str:
    """Block until the server logs its ready line (``count`` times: a server whose workers
    each log it); returns the first such line.

    Raises :class:`BenchmarkError` (after stopping the server) when it exits first or does
    not get ready within ``timeout`` seconds.
    """
    def logged() -> str:
        if count > 1:
            server.wait_for_count(ready_marker, count, timeout)
        return server.wait_for_line(ready_marker, timeout)

    times = f" {count} times" if count > 1 else ""
    return wait_started_by(server, logged, f"logged no {ready_marker!r}{times} within "
                                           f"{timeout:g} s")


def wait_started_by(server: Program, wait: Callable[[], T], what: str) -> T:
    """Run ``wait``, one of ``server``'s :class:`Program` waits (e.g.
    ``lambda: server.wait_workers_ready(2, 30)``), and return what it returns.

    Raises :class:`BenchmarkError` (after stopping the server) when the server exits first,
    or saying it ``what`` when the wait runs out.
    """
    try:
        return wait()
    except AssertionError:
        ended = not server.running
    server.stop(timeout=5)
    why = "exited before it was ready" if ended else what
    raise BenchmarkError(f"{server.name} {why} (exit status {server.process.returncode}); "
                         f"command: {' '.join(server.args)}\n{server.tail()}")


#: how long a :class:`LogFileProgram`'s reader waits for more once it has read all there is.
FOLLOW_INTERVAL = 0.01


class LogFileProgram(Program):
    """A :class:`Program` whose output (stdout and stderr) is appended to ``log_file``, as a
    server's log is in production and nginx's access log is here: a server writes to a file
    without ever waiting for a reader (a pipe whose reader falls behind blocks the writer,
    hostkit's event loop included), and nothing wakes up for each line it writes.

    It runs under ``/bin/sh -c 'exec "$@" >>FILE 2>&1'``: the shell redirects, then becomes
    the program (same pid); :attr:`args` are the program's own. A thread follows the file as
    it grows, so its lines, and every wait of a :class:`Program`, come as they do from a
    pipe, up to :data:`FOLLOW_INTERVAL` later (too coarse to time a start: use a Program).
    """

    def __init__(self, args: Sequence[str], cwd: str | Path, env: Mapping[str, str], *,
                 log_file: Path, name: str, **options: Any):
        self.log_file = log_file
        log_file.touch()
        redirected = ["/bin/sh", "-c", 'exec "$@" >>"$0" 2>&1', str(log_file), *args]
        super().__init__(redirected, cwd, env, name=name, **options)
        self.args = list(args)

    def _read(self) -> None:
        """The reader thread: the pipe to its end (the shell's redirection closes it before
        the program runs), then the file, until the program has exited and all of it is read."""
        assert self.process.stdout is not None
        with self.process.stdout:
            self._add(self.process.stdout.read().splitlines())  # the shell's error, if any
        with open(self.log_file, encoding="utf-8", errors="replace") as log:
            partial = ""
            while True:
                ended = self.process.poll() is not None  # before the read: all is written
                text = log.read()
                if text:
                    *complete, partial = (partial + text).split("\n")
                    self._add(complete)
                elif ended:
                    break
                else:
                    time.sleep(FOLLOW_INTERVAL)
            self._add([partial] if partial else [])
        with self._changed:
            self._eof = True
            self._changed.notify_all()

    def _add(self, lines: list[str]) -> None:
        if not lines:
            return
        now = time.monotonic()
        with self._changed:
            self.lines.extend(lines)
            self.times.extend([now] * len(lines))
            self._changed.notify_all()


# --- what every server of a run is told -----------------------------------------------------

#: ``--event-loop``: the asyncio event loop every server of a run runs.
EVENT_LOOPS = ("asyncio", "uvloop")

#: ``--access-log`` of the InProcess comparisons (:mod:`bench.inprocess`,
#: :mod:`bench.instructions`): whether (hostkit, bare hypercorn) write an access log.
#: ``both``: hostkit's default line, hypercorn told to write the same
#: (:data:`HYPERCORN_ACCESS_LOG_FORMAT`); ``none``: neither; ``defaults``: each server's own
#: default, hostkit's line and none from hypercorn.
ACCESS_LOG_MODES: dict[str, tuple[bool, bool]] = {
    "both": (True, True), "none": (False, False), "defaults": (True, False)}

#: hypercorn's ``--access-logformat`` for hostkit's combined line (``REMOTE - USER [TIME]
#: "METHOD TARGET PROTOCOL" STATUS BYTES "REFERER" "AGENT" DURATIONms REQUEST_ID``) as far as
#: its atoms go: its remote is ``host:port``, its duration whole microseconds, it has no
#: request id (``-``), and its log handler puts ``[DATE] [PID] [INFO]`` before each line.
HYPERCORN_ACCESS_LOG_FORMAT = ('%(h)s - - %(t)s "%(m)s %(Uq)s HTTP/%(H)s" %(s)s %(b)s '
                               '"%(f)s" "%(a)s" %(D)sus -')


@dataclasses.dataclass(frozen=True)
class ServerModes:
    """What every server of a benchmark run is told, so both sides of a comparison do the
    same work: whether it writes an access log (hostkit's default: a combined line per
    request on stderr; nginx's: the combined format, to a file) and which event loop it runs
    (hostkit's ``event_loop`` setting; hypercorn's ``--worker-class``, named after its loop).
    """

    access_log: bool = True
    event_loop: str = "asyncio"
    #: whether the hostkit measured has the ``event_loop`` setting; without it hostkit runs
    #: asyncio and is told nothing.
    hostkit_event_loop: bool = False
    #: whether bare hypercorn writes an access log too (:meth:`hypercorn_access_arguments`):
    #: the InProcess comparisons' ``--access-log both`` (:data:`ACCESS_LOG_MODES`); the
    #: hypercorns of the OutOfProcess ones never do.
    hypercorn_access_log: bool = False

    def hostkit_arguments(self) -> list[str]:
        """hostkit's command-line arguments for these modes (none: hostkit's defaults)."""
        arguments = [] if self.access_log else ["--logging:access_log=false"]
        if self.hostkit_event_loop:
            arguments.append(f"--event_loop={self.event_loop}")
        return arguments

    @property
    def hypercorn_worker_class(self) -> str:
        """hypercorn's ``--worker-class``: ``asyncio`` or ``uvloop``."""
        return self.event_loop

    def hypercorn_access_arguments(self, log_file: str | Path) -> list[str]:
        """Bare hypercorn's access-log arguments: ``--access-logfile LOG_FILE
        --access-logformat FORMAT`` (:data:`HYPERCORN_ACCESS_LOG_FORMAT`) with
        :attr:`hypercorn_access_log`; none otherwise (hypercorn's default: no access log)."""
        if not self.hypercorn_access_log:
            return []
        return ["--access-logfile", str(log_file),
                "--access-logformat", HYPERCORN_ACCESS_LOG_FORMAT]

    @property
    def access_log_mode(self) -> str | None:
        """The name in :data:`ACCESS_LOG_MODES` of who writes an access log (hostkit and
        bare hypercorn); None for hypercorn alone, which no mode asks for."""
        logs = (self.access_log, self.hypercorn_access_log)
        return next((name for name, each in ACCESS_LOG_MODES.items() if each == logs), None)

    def nginx_access_log(self, directory: str | Path) -> str:
        """nginx's ``access_log`` directive's value: ``DIRECTORY/access.log`` (nginx's own
        default: the combined format, to a file), or ``off``."""
        return f"{directory}/access.log" if self.access_log else "off"

    def describe(self) -> str:
        """The line a benchmark prints before it starts its servers, and in its report."""
        if self.access_log:
            log = ("access log on (hostkit's default: combined, on stderr; nginx: combined, "
                   "to access.log in its folder)")
        else:
            log = "access log off (hostkit --logging:access_log=false, nginx access_log off)"
        return f"{log}; {self.describe_event_loop()}"

    def describe_event_loop(self) -> str:
        """``event loop uvloop (hostkit --event_loop=uvloop; hypercorn --worker-class
        uvloop)``: the part of :meth:`describe` about the loop."""
        told = (f"--event_loop={self.event_loop}" if self.hostkit_event_loop
                else "not told: this hostkit has no event_loop setting and runs asyncio")
        return (f"event loop {self.event_loop} (hostkit {told}; hypercorn "
                f"--worker-class {self.hypercorn_worker_class})")

    def describe_inprocess(self) -> str:
        """The line the InProcess comparisons (hostkit InProcess against bare hypercorn)
        print first and in their report: the access-log mode, then the event loop."""
        hostkit = ("hostkit's default: combined, on its output" if self.access_log
                   else "hostkit --logging:access_log=false")
        hypercorn = ("hypercorn --access-logfile FILE, in hostkit's layout as far as its atoms "
                     "go" if self.hypercorn_access_log
                     else "hypercorn's default: none")
        return (f"access log {self.access_log_mode} ({hostkit}; {hypercorn}); "
                f"{self.describe_event_loop()}")

    def inprocess_settings(self) -> dict[str, Any]:
        """The modes for an InProcess comparison's results document."""
        return {"access_log": self.access_log_mode, "hostkit_access_log": self.access_log,
                "hypercorn_access_log": self.hypercorn_access_log,
                "hypercorn_access_logformat": (HYPERCORN_ACCESS_LOG_FORMAT
                                               if self.hypercorn_access_log else None),
                "event_loop": self.event_loop, "hostkit_arguments": self.hostkit_arguments(),
                "hypercorn_worker_class": self.hypercorn_worker_class,
                "description": self.describe_inprocess()}

    def settings(self) -> dict[str, Any]:
        """The modes for a results document."""
        return {"access_log": self.access_log, "event_loop": self.event_loop,
                "hostkit_arguments": self.hostkit_arguments(),
                "hypercorn_worker_class": self.hypercorn_worker_class,
                "nginx_access_log": self.nginx_access_log("NGINX_DIR"),
                "description": self.describe()}


def server_modes(access_log: bool, event_loop: str, *, env: Mapping[str, str],
                 python: str = sys.executable,
                 hypercorn_access_log: bool = False) -> ServerModes:
    """The :class:`ServerModes` asked for, once ``python`` with exactly ``env`` (the
    servers' environment) can run them: asks that hostkit (``hostkit config``) whether it has
    the ``event_loop`` setting. Exits saying why when ``uvloop`` is asked for and ``python``
    cannot import uvloop or its hostkit has no such setting."""
    if event_loop not in EVENT_LOOPS:
        raise ValueError(f"event loop {event_loop!r}: expected one of {', '.join(EVENT_LOOPS)}")
    environment = dict(env)
    if event_loop == "uvloop":
        check = subprocess.run([python, "-c", "import uvloop"], env=environment,
                               capture_output=True, text=True, timeout=60)
        if check.returncode != 0:
            why = (check.stderr.strip().splitlines() or [f"exit status {check.returncode}"])[-1]
            raise SystemExit(f"--event-loop uvloop: {python} cannot import uvloop ({why}); "
                             "install it (.venv/bin/pip install uvloop) or use "
                             "--event-loop asyncio")
    known = "event_loop" in hostkit_setting_names(python, environment)
    if event_loop == "uvloop" and not known:
        raise SystemExit("--event-loop uvloop: this hostkit has no event_loop setting "
                         "(`hostkit config` lists none), so it runs asyncio only")
    return ServerModes(access_log, event_loop, hostkit_event_loop=known,
                       hypercorn_access_log=hypercorn_access_log)


def loads_uvloop(pid: int) -> bool | None:
    """Whether process ``pid`` has uvloop's extension module loaded (Linux
    ``/proc/PID/maps``); None when it is not a Python program (nginx) or is gone."""
    try:
        if "python" not in Path(f"/proc/{pid}/exe").resolve().name:
            return None
        with open(f"/proc/{pid}/maps", encoding="utf-8", errors="replace") as maps:
            return any("/uvloop/" in line for line in maps)
    except OSError:
        return None


#: what every access-log line of the benchmarks' requests holds (the combined format's
#: request line in quotes, hostkit's and nginx's alike, and hypercorn's in
#: :data:`HYPERCORN_ACCESS_LOG_FORMAT`).
REQUEST_LINE = '"GET / HTTP/1.1"'


def request_lines(root: Path, files: Iterable[Path]) -> dict[str, int]:
    """After the servers stopped: how many access-log lines (:data:`REQUEST_LINE`) each of
    ``files`` holds, by its path relative to ``root``."""
    counts = {}
    for path in sorted(files):
        with open(path, encoding="utf-8", errors="replace") as log:
            counts[str(path.relative_to(root))] = sum(REQUEST_LINE in line for line in log)
    return counts


def access_log_warnings(modes: ServerModes, counts: Mapping[str, int]) -> list[str]:
    """What :func:`request_lines` found that ``modes`` rules out: an nginx ``access.log``
    without a line when the access log is on, any request line when it is off."""
    if modes.access_log:
        empty = [name for name, count in counts.items()
                 if Path(name).name == "access.log" and not count]
        return [f"WARNING: the access log is on, but {name} has no request line"
                for name in empty]
    logged = [f"{name} ({count})" for name, count in counts.items() if count]
    return ([f"WARNING: the access log is off, but request lines were logged: "
             f"{', '.join(logged)}"] if logged else [])


def request_line_warnings(counts: Mapping[str, int], expected: Mapping[str, bool],
                          mode: str) -> list[str]:
    """What :func:`request_lines` found (``counts``) that does not fit access-log ``mode``:
    a warning per file of ``expected`` (its name, and whether its server writes an access
    log in that mode) with no request line although it should have some, or with some
    although it should have none. A file missing from ``counts`` holds none."""
    lines = []
    for name, logs in expected.items():
        count = counts.get(name, 0)
        if logs and not count:
            lines.append(f"WARNING: access log {mode}: {name} has no request line")
        elif count and not logs:
            lines.append(f"WARNING: access log {mode}: {name} has {count} request lines, "
                         "expected none")
    return lines


def hostkit_setting_names(python: str, env: Mapping[str, str]) -> set[str]:
    """The settings ``python -m hostkit config`` lists (``event_loop``, ``logging.level``,
    ...), run with exactly ``env`` in an empty folder (hostkit's defaults). Raises
    :class:`BenchmarkError` when it fails."""
    with tempfile.TemporaryDirectory(prefix="hostkit-bench-config-") as folder:
        done = subprocess.run([python, "-m", "hostkit", "config"], cwd=folder, env=dict(env),
                              stdin=subprocess.DEVNULL, capture_output=True, text=True,
                              timeout=60)
    if done.returncode != 0:
        raise BenchmarkError(f"{python} -m hostkit config failed ({done.returncode}):\n"
                             f"{done.stdout}{done.stderr}")
    return {line.split(" = ", 1)[0].strip() for line in done.stdout.splitlines()
            if " = " in line and not line.startswith("#")}


# --- one request -------------------------------------------------------------------------

@dataclasses.dataclass(frozen=True)
class Reply:
    """What :func:`fetch` got back."""

    status: int
    headers: dict[str, str]
    body: bytes


def fetch(url: str, timeout: float = 5.0) -> Reply:
    """GET ``url`` (on 127.0.0.1) once; header names in lower case."""
    return fetch_with_headers(url, {}, timeout)


def check_answer(name: str, reply: Reply) -> None:
    """Before loading a server: it must answer exactly what :mod:`bench.trivial_app` sends."""
    problems = []
    if reply.status != 200:
        problems.append(f"status {reply.status}")
    if reply.body != BODY:
        problems.append(f"body {reply.body[:80]!r}")
    if reply.headers.get("content-type") != "text/plain":
        problems.append(f"content-type {reply.headers.get('content-type')!r}")
    if reply.headers.get("content-length") != str(len(BODY)):
        problems.append(f"content-length {reply.headers.get('content-length')!r}")
    if problems:
        raise BenchmarkError(f"{name} answered wrongly: {', '.join(problems)}")


def fetch_with_headers(url: str, headers: Mapping[str, str], timeout: float = 5.0) -> Reply:
    """:func:`fetch` with request headers (e.g. a child's ``Hostkit-Token``)."""
    path, connection = _connection(url, timeout)
    with contextlib.closing(connection):
        connection.request("GET", "/" + path, headers=dict(headers))
        response = connection.getresponse()
        body = response.read()
        reply_headers = {name.lower(): value for name, value in response.getheaders()}
        return Reply(response.status, reply_headers, body)


def _connection(url: str, timeout: float) -> tuple[str, http.client.HTTPConnection]:
    """The path of ``url`` (on 127.0.0.1) and a connection to its host (not yet open)."""
    _require_loopback(url)
    host_port, _, path = url[len("http://"):].partition("/")
    host, _, port = host_port.partition(":")
    return path, http.client.HTTPConnection(host, int(port), timeout=timeout)


def keeps_alive(url: str, timeout: float = 5.0) -> bool:
    """Whether a second GET can reuse the connection of a first one (HTTP/1.1 keep-alive).

    False when the server closes the connection after the first response; wrk then counts
    a read error per request and reconnects, so its numbers include a TCP handshake each.
    """
    path, connection = _connection(url, timeout)
    with contextlib.closing(connection):
        for attempt in (1, 2):
            try:
                connection.request("GET", "/" + path)
                response = connection.getresponse()
                response.read()
            except (http.client.HTTPException, ConnectionError):
                return False
            if attempt == 1:
                first_socket = connection.sock
                if first_socket is None:  # the server said "Connection: close"
                    return False
        return connection.sock is first_socket


def wait_accepting(port: int, timeout: float, *, alive: Callable[[], bool] | None = None,
                   interval: float = 0.01) -> float:
    """Connect to 127.0.0.1:``port`` until it accepts, for servers that log nothing when ready.

    Returns the seconds waited. Raises :class:`BenchmarkError` after ``timeout`` seconds, or
    as soon as ``alive()`` (when given) says the server process is gone.
    """
    start = time.monotonic()
    deadline = start + timeout
    while True:
        try:
            with socket.create_connection((LOOPBACK, port), timeout=max(0.05, interval)):
                return time.monotonic() - start
        except OSError:
            pass
        if alive is not None and not alive():
            raise BenchmarkError(f"the server for port {port} exited before accepting")
        if time.monotonic() >= deadline:
            raise BenchmarkError(f"nothing accepted connections on {LOOPBACK}:{port} "
                                 f"within {timeout:g} s")
        time.sleep(interval)


# --- wrk -----------------------------------------------------------------------------------

_APT_TIMEOUT = 600.0


def ensure_wrk() -> str:
    """The path of ``wrk``; installs the Debian package when missing and running as root.

    Exits with status 2 and says how to install it when that is not possible.
    """
    path = shutil.which("wrk")
    if path is not None:
        return path
    if os.geteuid() == 0 and shutil.which("apt-get") is not None:
        print("wrk is not on PATH: installing the Debian package (apt-get install -y wrk)",
              file=sys.stderr)
        if not _apt_get("install", "-y", "wrk"):
            _apt_get("update")
            _apt_get("install", "-y", "wrk")
        path = shutil.which("wrk")
        if path is not None:
            return path
    raise SystemExit("wrk is required but not on PATH. Install it, e.g.\n"
                     "    sudo apt-get update && sudo apt-get install -y wrk   # Debian/Ubuntu\n"
                     "    brew install wrk                                     # macOS")


def ensure_program(program: str, package: str, *, why: str = "") -> str:
    """The path of ``program``; installs the Debian ``package`` when missing and root.

    Like :func:`ensure_wrk` for any program (``/usr/sbin`` is searched too, where daemons
    such as nginx live). Exits with status 2 and says how to install it otherwise.
    """
    search = os.pathsep.join([os.environ.get("PATH", ""), "/usr/sbin", "/sbin"])
    path = shutil.which(program, path=search)
    if path is not None:
        return path
    if os.geteuid() == 0 and shutil.which("apt-get") is not None:
        print(f"{program} is not on PATH: installing the Debian package "
              f"(apt-get install -y {package})", file=sys.stderr)
        if not _apt_get("install", "-y", package):
            _apt_get("update")
            _apt_get("install", "-y", package)
        path = shutil.which(program, path=search)
        if path is not None:
            return path
    raise SystemExit(f"{program} is required{why} but not on PATH. Install it, e.g.\n"
                     f"    sudo apt-get update && sudo apt-get install -y {package}"
                     "   # Debian/Ubuntu")


def _apt_get(*args: str) -> bool:
    env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
    try:
        done = subprocess.run(["apt-get", *args], env=env, stdin=subprocess.DEVNULL,
                              stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
                              timeout=_APT_TIMEOUT)
    except subprocess.TimeoutExpired:
        print(f"apt-get {' '.join(args)} took more than {_APT_TIMEOUT:g} s", file=sys.stderr)
        return False
    if done.returncode != 0:
        print(f"apt-get {' '.join(args)} failed:\n{done.stderr.strip()}", file=sys.stderr)
    return done.returncode == 0


def distribution_version(distribution: str) -> str:
    """The installed version of ``distribution`` (a PyPI name), or ``"not installed"``."""
    try:
        return importlib.metadata.version(distribution)
    except importlib.metadata.PackageNotFoundError:
        return "not installed"


def wrk_version(wrk: str) -> str:
    """The first line of ``wrk -v`` (wrk prints it and exits with status 1)."""
    done = subprocess.run([wrk, "-v"], capture_output=True, text=True, timeout=10)
    lines = (done.stdout + done.stderr).strip().splitlines()
    return lines[0] if lines else ""


@dataclasses.dataclass(frozen=True)
class WrkResult:
    """One wrk run: throughput, latency percentiles in milliseconds, and error counts."""

    requests_per_sec: float
    p50_ms: float
    p99_ms: float
    requests: int
    socket_errors: int
    non_2xx_3xx: int
    #: CPU seconds (user + system) wrk itself used; 0.0 when only its output was parsed.
    wrk_cpu_s: float = 0.0

    @property
    def errors(self) -> int:
        return self.socket_errors + self.non_2xx_3xx


_TIME_UNITS_MS = {"us": 0.001, "ms": 1.0, "s": 1000.0, "m": 60_000.0, "h": 3_600_000.0}
_NUMBER_UNIT = r"([\d.]+)(us|ms|s|m|h)\b"


def _to_ms(value: str, unit: str) -> float:
    return float(value) * _TIME_UNITS_MS[unit]


def _search(pattern: str, text: str) -> re.Match[str] | None:
    return re.search(pattern, text, re.MULTILINE)


def parse_wrk(output: str) -> WrkResult:
    """Parse the text ``wrk --latency`` prints. Raises :class:`BenchmarkError` if it cannot."""
    rate = _search(r"^Requests/sec:\s+([\d.]+)", output)
    p50 = _search(r"^\s+50%\s+" + _NUMBER_UNIT, output)
    p99 = _search(r"^\s+99%\s+" + _NUMBER_UNIT, output)
    total = _search(r"^\s+(\d+) requests in ", output)
    if rate is None or p50 is None or p99 is None or total is None:
        raise BenchmarkError(f"cannot parse wrk's output (was --latency given?):\n{output}")
    sockets = _search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)",
                      output)
    non_2xx = _search(r"Non-2xx or 3xx responses: (\d+)", output)
    return WrkResult(
        requests_per_sec=float(rate.group(1)),
        p50_ms=_to_ms(p50.group(1), p50.group(2)),
        p99_ms=_to_ms(p99.group(1), p99.group(2)),
        requests=int(total.group(1)),
        socket_errors=sum(int(n) for n in sockets.groups()) if sockets else 0,
        non_2xx_3xx=int(non_2xx.group(1)) if non_2xx else 0,
    )


def wrk_command(wrk: str, url: str, *, threads: int, connections: int,
                duration_s: int) -> list[str]:
    """``wrk -tT -cC -dDs --latency URL``."""
    return [wrk, f"-t{threads}", f"-c{connections}", f"-d{duration_s}s", "--latency", url]


def run_wrk(wrk: str, url: str, *, threads: int, connections: int,
            duration_s: int) -> WrkResult:
    """Load ``url`` (on 127.0.0.1) for ``duration_s`` seconds and parse the result, with the
    CPU time wrk used (:attr:`WrkResult.wrk_cpu_s`)."""
    _require_loopback(url)
    command = wrk_command(wrk, url, threads=threads, connections=connections,
                          duration_s=duration_s)
    try:
        status, stdout, stderr, cpu_s = _run_counting_cpu(command, timeout=duration_s + 30)
    except subprocess.TimeoutExpired as error:
        raise BenchmarkError(f"wrk did not finish: {' '.join(command)}") from error
    if status != 0:
        raise BenchmarkError(f"wrk failed ({status}): {' '.join(command)}\n{stdout}{stderr}")
    return dataclasses.replace(parse_wrk(stdout), wrk_cpu_s=cpu_s)


_REAP_INTERVAL = 0.02


def _run_counting_cpu(command: Sequence[str], *, timeout: float) -> tuple[int, str, str, float]:
    """Run ``command`` to its end: its exit status, stdout, stderr, and the CPU seconds it
    used (the kernel's account, handed over when it is reaped with ``os.wait4``).

    Raises ``subprocess.TimeoutExpired`` (after killing it) when it runs over ``timeout`` s.
    """
    with tempfile.TemporaryFile("w+") as stdout, tempfile.TemporaryFile("w+") as stderr:
        process = subprocess.Popen(command, stdin=subprocess.DEVNULL, stdout=stdout,
                                   stderr=stderr, text=True)
        deadline = time.monotonic() + timeout
        while True:
            pid, status, usage = os.wait4(process.pid, os.WNOHANG)
            if pid:
                break
            if time.monotonic() >= deadline:
                process.kill()
                os.wait4(process.pid, 0)
                process.returncode = -9
                raise subprocess.TimeoutExpired(list(command), timeout)
            time.sleep(_REAP_INTERVAL)
        process.returncode = os.waitstatus_to_exitcode(status)
        stdout.seek(0)
        stderr.seek(0)
        return process.returncode, stdout.read(), stderr.read(), usage.ru_utime + usage.ru_stime
