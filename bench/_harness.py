"""Reusable pieces for hostkit's benchmarks: servers as subprocesses, wrk, and results.

Everything here talks to 127.0.0.1 only, and every wait has a timeout, so a benchmark built
from these pieces always ends by itself.

- :func:`free_port` and :func:`loopback_url`: where a server listens;
- :func:`start_server`: start a server program and wait for the line it logs when ready;
  :meth:`ServerProcess.stop` ends it (SIGTERM, bounded wait, then SIGKILL);
- :func:`fetch` (and :func:`fetch_with_headers`): one GET, to check a server answers what it
  should before loading it; :func:`keeps_alive`: whether it keeps the connection open;
- :func:`wait_accepting`: wait for a server that logs nothing when ready (nginx);
- :func:`process_state`, :func:`process_alive`, :func:`process_cmdline`,
  :func:`processes_matching`, :func:`child_pids`: find processes (Linux ``/proc``), e.g.
  leftovers after a benchmark stopped everything;
- :func:`source_state`: the code a benchmark measured (git HEAD, changes, a hash), and
  :func:`distribution_version`: the installed version of a package it measured;
- :func:`ensure_wrk` (and :func:`ensure_program` for other tools), :func:`run_wrk` and
  :func:`parse_wrk`: the load generator.
"""

from __future__ import annotations

import argparse
import collections
import dataclasses
import hashlib
import http.client
import importlib.metadata
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from types import TracebackType

from bench.trivial_app import BODY

LOOPBACK = "127.0.0.1"
#: The repository root: benchmarks put it on PYTHONPATH so servers can import ``bench``.
REPO_ROOT = Path(__file__).resolve().parent.parent

# Lines of a server's stderr kept for error messages.
_LOG_TAIL = 200


class BenchmarkError(RuntimeError):
    """A benchmark could not run: a server did not start, wrk failed or printed nonsense."""


# --- addresses -----------------------------------------------------------------------------

def free_port() -> int:
    """A TCP port on 127.0.0.1 that is free right now (the kernel picks it)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((LOOPBACK, 0))
        return int(sock.getsockname()[1])


def loopback_url(port: int, path: str = "/") -> str:
    """``http://127.0.0.1:PORT/path``: the only kind of address benchmarks send traffic to."""
    return f"http://{LOOPBACK}:{port}{path}"


def _require_loopback(url: str) -> None:
    if not url.startswith(f"http://{LOOPBACK}:"):
        raise ValueError(f"benchmarks only send traffic to {LOOPBACK}, not to {url!r}")


# --- server processes ----------------------------------------------------------------------

def server_environment(extra: Mapping[str, str] | None = None,
                       drop_prefixes: Sequence[str] = ()) -> dict[str, str]:
    """This process's environment for a server: ``bench`` importable, output unbuffered.

    Variables starting with any of ``drop_prefixes`` (e.g. ``"HOSTKIT_"``) are removed, so
    the caller's shell cannot change what is measured; ``extra`` is applied last.
    """
    env = {name: value for name, value in os.environ.items()
           if not any(name.startswith(prefix) for prefix in drop_prefixes)}
    python_path = [str(REPO_ROOT)] + [p for p in env.get("PYTHONPATH", "").split(os.pathsep) if p]
    env["PYTHONPATH"] = os.pathsep.join(python_path)
    env["PYTHONUNBUFFERED"] = "1"
    env.update(extra or {})
    return env


class ServerProcess:
    """A server program running as a subprocess; its stderr is read by a thread.

    The thread keeps the last lines for error messages and keeps draining the pipe for the
    whole life of the process, so a chatty server never blocks on a full pipe. Use it as a
    context manager (or call :meth:`stop`) so the server always ends.
    """

    def __init__(self, name: str, argv: Sequence[str], ready_marker: str, *,
                 env: Mapping[str, str], cwd: str | Path,
                 on_line: Callable[[str], None] | None = None):
        self.name = name
        #: called (on the reader thread) with every stderr line, e.g. to follow a log.
        self.on_line = on_line
        self.argv = list(argv)
        self.ready_marker = ready_marker
        self.ready_line: str | None = None
        #: ``time.monotonic()`` just before the process was spawned, and when the ready line
        #: was read (``None`` until then): for start-up timings.
        self.started_at = time.monotonic()
        self.ready_at: float | None = None
        self.log: collections.deque[str] = collections.deque(maxlen=_LOG_TAIL)
        self._settled = threading.Event()  # set on the ready line, or when stderr closes
        self.popen = subprocess.Popen(
            self.argv, cwd=cwd, env=dict(env), stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, errors="replace",
            bufsize=1, start_new_session=True)
        self._reader = threading.Thread(target=self._read_stderr, name=f"{name}-stderr",
                                        daemon=True)
        self._reader.start()

    @property
    def pid(self) -> int:
        return self.popen.pid

    def _read_stderr(self) -> None:
        assert self.popen.stderr is not None
        with self.popen.stderr:
            for raw in self.popen.stderr:
                line = raw.rstrip("\n")
                self.log.append(line)
                if self.on_line is not None:
                    self.on_line(line)
                if self.ready_line is None and self.ready_marker in line:
                    self.ready_at = time.monotonic()
                    self.ready_line = line
                    self._settled.set()
        self._settled.set()

    def wait_ready(self, timeout: float) -> str:
        """Block until the server logs its ready line; returns that line.

        Raises :class:`BenchmarkError` (after stopping the server) when it exits first or
        does not get ready within ``timeout`` seconds.
        """
        settled = self._settled.wait(timeout)
        if self.ready_line is not None:
            return self.ready_line
        self.stop(timeout=5)
        why = ("exited before it was ready" if settled
               else f"logged no {self.ready_marker!r} within {timeout:g} s")
        raise BenchmarkError(f"{self.name} {why} (exit status {self.popen.returncode}); "
                             f"command: {' '.join(self.argv)}\n{self.log_tail()}")

    def log_tail(self, lines: int = 30) -> str:
        """The last ``lines`` lines the server wrote to stderr."""
        return "\n".join(list(self.log)[-lines:])

    def stop(self, timeout: float = 10.0) -> int:
        """SIGTERM, wait up to ``timeout`` seconds, then SIGKILL. Returns the exit status."""
        if self.popen.poll() is None:
            self.popen.send_signal(signal.SIGTERM)
            try:
                self.popen.wait(timeout)
            except subprocess.TimeoutExpired:
                print(f"{self.name} (pid {self.pid}) ignored SIGTERM for {timeout:g} s: "
                      "SIGKILL", file=sys.stderr)
                self.popen.kill()
                self.popen.wait(5)
        self._reader.join(5)
        return self.popen.returncode

    def __enter__(self) -> ServerProcess:
        return self

    def __exit__(self, kind: type[BaseException] | None, error: BaseException | None,
                 traceback: TracebackType | None) -> None:
        self.stop()


def start_server(name: str, argv: Sequence[str], ready_marker: str, *,
                 env: Mapping[str, str], cwd: str | Path,
                 timeout: float = 30.0) -> ServerProcess:
    """Start ``argv`` and wait (up to ``timeout`` s) for ``ready_marker`` on its stderr."""
    server = ServerProcess(name, argv, ready_marker, env=env, cwd=cwd)
    server.wait_ready(timeout)
    return server


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
    _require_loopback(url)
    host_port, _, path = url[len("http://"):].partition("/")
    host, _, port = host_port.partition(":")
    connection = http.client.HTTPConnection(host, int(port), timeout=timeout)
    try:
        connection.request("GET", "/" + path, headers=dict(headers))
        response = connection.getresponse()
        body = response.read()
        reply_headers = {name.lower(): value for name, value in response.getheaders()}
        return Reply(response.status, reply_headers, body)
    finally:
        connection.close()


def keeps_alive(url: str, timeout: float = 5.0) -> bool:
    """Whether a second GET can reuse the connection of a first one (HTTP/1.1 keep-alive).

    False when the server closes the connection after the first response; wrk then counts
    a read error per request and reconnects, so its numbers include a TCP handshake each.
    """
    _require_loopback(url)
    host_port, _, path = url[len("http://"):].partition("/")
    host, _, port = host_port.partition(":")
    connection = http.client.HTTPConnection(host, int(port), timeout=timeout)
    try:
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
    finally:
        connection.close()


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


# --- processes (Linux /proc) ---------------------------------------------------------------

def process_state(pid: int) -> str | None:
    """The state letter of a process (``Z`` for a zombie), or ``None`` when it is gone."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return None


def process_alive(pid: int) -> bool:
    """Whether a process exists and has not exited (a zombie has)."""
    return process_state(pid) not in (None, "Z")


def process_cmdline(pid: int) -> list[str] | None:
    """The command line of a live (not zombie) process, or ``None`` when there is none."""
    if not process_alive(pid):
        return None
    try:
        raw = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return None
    return [part.decode("utf-8", "replace") for part in raw.split(b"\0") if part]


def processes_matching(*needles: str) -> dict[int, list[str]]:
    """Live processes (other than this one) whose command line contains every ``needle``."""
    found = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        argv = process_cmdline(int(entry.name))
        if argv is None:
            continue
        text = " ".join(argv)
        if all(needle in text for needle in needles):
            found[int(entry.name)] = argv
    return found


def cpu_seconds(pid: int) -> float:
    """User + system CPU time the process has used so far (Linux ``/proc``); 0.0 once it is
    gone."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def child_pids(parent: int) -> list[int]:
    """The pids of ``parent``'s live children."""
    children = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
        except (OSError, IndexError):
            continue
        if fields[0] != "Z" and int(fields[1]) == parent:
            children.append(int(entry.name))
    return children


# --- what was measured ----------------------------------------------------------------------

def source_state(*directories: str) -> dict[str, object]:
    """The code a benchmark ran: git HEAD, uncommitted changes, and a hash of the ``.py`` files.

    ``directories`` are relative to the repository root. Taken at the start and the end of a
    run, a different ``sha256`` means the code changed while it was being measured.
    """
    digest = hashlib.sha256()
    for directory in directories:
        for path in sorted((REPO_ROOT / directory).rglob("*.py")):
            digest.update(str(path.relative_to(REPO_ROOT)).encode() + b"\0")
            digest.update(path.read_bytes())
    state: dict[str, object] = {"sha256": digest.hexdigest()}
    try:
        head = subprocess.run(["git", "rev-parse", "HEAD"], cwd=REPO_ROOT, capture_output=True,
                              text=True, timeout=10)
        status = subprocess.run(["git", "status", "--porcelain", "--", *directories],
                                cwd=REPO_ROOT, capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.TimeoutExpired):
        return state
    state["git_head"] = head.stdout.strip()
    state["uncommitted"] = [line[3:] for line in status.stdout.splitlines()]
    return state


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
    """Load ``url`` (on 127.0.0.1) for ``duration_s`` seconds and parse the result."""
    _require_loopback(url)
    command = wrk_command(wrk, url, threads=threads, connections=connections,
                          duration_s=duration_s)
    try:
        done = subprocess.run(command, capture_output=True, text=True,
                              timeout=duration_s + 30)
    except subprocess.TimeoutExpired as error:
        raise BenchmarkError(f"wrk did not finish: {' '.join(command)}") from error
    if done.returncode != 0:
        raise BenchmarkError(f"wrk failed ({done.returncode}): {' '.join(command)}\n"
                             f"{done.stdout}{done.stderr}")
    return parse_wrk(done.stdout)


# --- command line --------------------------------------------------------------------------

def positive_int(text: str) -> int:
    """argparse type: a whole number of at least 1."""
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text}")
    return value


def add_load_options(parser: argparse.ArgumentParser, *, noun: str = "server") -> None:
    """The options every wrk benchmark shares: rounds, duration, warmup, connections, threads."""
    parser.add_argument("--rounds", type=positive_int, default=3,
                        help=f"measured runs per {noun} (default: 3; the median is reported)")
    parser.add_argument("--duration", type=positive_int, default=10, metavar="SECONDS",
                        help="length of each measured wrk run (default: 10)")
    parser.add_argument("--warmup", type=positive_int, default=2, metavar="SECONDS",
                        help="length of the unmeasured wrk run before each one (default: 2)")
    parser.add_argument("--connections", type=positive_int, default=32,
                        help="wrk connections (default: 32)")
    parser.add_argument("--threads", type=positive_int, default=2,
                        help="wrk threads (default: 2)")


def benchmark_parser(prog: str, description: str, results_file: Path, *,
                     noun: str = "server") -> argparse.ArgumentParser:
    """A benchmark's command line: the load options and ``--output`` (default
    ``results_file``); add the benchmark's own options, then :func:`parse_load_options`."""
    parser = argparse.ArgumentParser(prog=prog, description=description)
    add_load_options(parser, noun=noun)
    parser.add_argument("--output", type=Path, default=results_file,
                        help=f"JSON results file (default: {results_file})")
    return parser


def parse_load_options(parser: argparse.ArgumentParser,
                       argv: Sequence[str] | None) -> argparse.Namespace:
    """Parse, and check wrk gets at least one connection per thread."""
    options = parser.parse_args(argv)
    if options.connections < options.threads:
        parser.error("--connections must be at least --threads (wrk needs one per thread)")
    return options
