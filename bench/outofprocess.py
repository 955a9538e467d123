"""hostkit OutOfProcess against nginx in front of bare hypercorn and of the same hostkit
child, and InProcess.

Run from the repository root::

    python -m bench.outofprocess              # 3 rounds x 10 s, wrk -t2 -c32
    python -m bench.outofprocess --rounds 5 --duration 20 --connections 64
    python -m bench.outofprocess --targets nginx-hypercorn --cold-starts 0 --recoveries 0
    python -m bench.outofprocess --no-access-log --event-loop uvloop

Up to four targets serve :data:`bench.trivial_app.app`, each on a free 127.0.0.1 port, for the
whole benchmark (``--targets`` picks the ones besides OutOfProcess):

- **hostkit OutOfProcess**: ``python -m bench.hostkit_server --hosting_model=OutOfProcess
  --urls=http://127.0.0.1:PORT``: the module (front, Python: h11 + anyio), which starts the
  same command line as its child on the first request and forwards to it;
- **nginx + hypercorn child** (issue 18's baseline): nginx (one worker, keep-alive upstream)
  in front of one bare ``python -m hypercorn --worker-class asyncio --workers 0`` (or
  ``uvloop``);
- **nginx + hostkit child**: the same program started by hand as a child (``HOSTKIT_PORT``,
  ``HOSTKIT_TOKEN``, ``HOSTKIT_PATH_BASE=/``), behind nginx (one worker, keep-alive upstream,
  the token header set by ``proxy_set_header``);
- **hostkit InProcess**: ``python -m bench.hostkit_server --urls=http://127.0.0.1:PORT``.

Both sides do the same work (:class:`bench._harness.ServerModes`): by default hostkit writes
its access log (its default: a combined line per request on stderr) and nginx its own
(combined, to ``access.log`` in its folder, nginx's default); ``--no-access-log`` turns both
off. Every measured server's output goes to a file (:class:`bench._harness.LogFileProgram`),
as nginx's log does, not to a pipe; at the end each file's request lines are counted, to
show the logs were written (or not). ``--event-loop uvloop`` runs hostkit
(``--event_loop=uvloop``) and hypercorn (``--worker-class uvloop``) on uvloop.

Each round loads every target (warmup, then a measured wrk run), the order reversed every
other round (OutOfProcess and nginx + hypercorn, next to each other, swap places), with the
CPU time of every process of each stack. Before that, the cold start of a fresh OutOfProcess
front is timed; after it, the recovery of the measured front from a SIGKILLed child. Prints
the medians, the ratios and issue 18's figures (:func:`proxy_comparison`), and writes
everything to ``bench/results/outofprocess.json``.
"""

from __future__ import annotations

import argparse
import collections
import contextlib
import dataclasses
import http.client
import os
import secrets
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from bench import cli
from bench._harness import (
    BenchmarkError,
    LogFileProgram,
    ServerModes,
    access_log_warnings,
    check_answer,
    ensure_program,
    ensure_wrk,
    fetch,
    fetch_with_headers,
    keeps_alive,
    loopback_url,
    request_lines,
    server_environment,
    wait_accepting,
    wait_ready,
)
from bench.cli import Target
from bench.inprocess import hypercorn_command
from bench.trivial_app import BODY
from hostkit.testing import Program
from hostkit.testing.program import child_listening
from tests.support.processes import (
    child_pids,
    free_port,
    process_cmdline,
    processes_matching,
)
from tests.support.source import source_state

OUTOFPROCESS = "hostkit OutOfProcess"
NGINX = "nginx + hostkit child"
NGINX_HYPERCORN = "nginx + hypercorn child"
INPROCESS = "hostkit InProcess"
FRONT = "hostkit OutOfProcess front"
BEHIND_NGINX = "hostkit child behind nginx"
HYPERCORN_BEHIND_NGINX = "hypercorn behind nginx"

#: ``--targets``: the targets measured besides OutOfProcess, by their option name.
OPTIONAL_TARGETS = {"nginx-hypercorn": NGINX_HYPERCORN, "nginx-hostkit": NGINX,
                    "inprocess": INPROCESS}
#: the order of a round (reversed every other round): the targets compared sit side by side.
ORDER = (NGINX, OUTOFPROCESS, NGINX_HYPERCORN, INPROCESS)

#: the roles of each stack's processes (:attr:`bench.cli.Target.roles`).
FRONT_ROLES: tuple[str, ...] = ("front", "child")
NGINX_ROLES: tuple[str, ...] = ("nginx master", "nginx worker")
CHILD_ROLES: tuple[str, ...] = ("child",)
HYPERCORN_ROLES: tuple[str, ...] = ("hypercorn",)

RPS_TARGET = 0.9   # OutOfProcess req/s >= 0.9x nginx's
P99_TARGET = 1.5   # OutOfProcess p99 <= 1.5x nginx's


@dataclasses.dataclass(frozen=True)
class ProxyTargets:
    """What is asked of a hostkit OutOfProcess stack against nginx in front of bare
    hypercorn (issue 18): the least req/s ratio, the least stack CPU efficiency (nginx's
    stack CPU per request over hostkit's) and the most front / nginx worker CPU per request;
    None: reported only."""

    rps_min: float
    efficiency_min: float | None = None
    front_max: float | None = None

    def describe(self, candidate: str, baseline: str) -> str:
        parts = [f"{candidate} >= {self.rps_min:.2f}x {baseline} req/s"]
        if self.efficiency_min is not None:
            parts.append(f"stack CPU efficiency >= {self.efficiency_min:.2f}")
        if self.front_max is not None:
            parts.append(f"front CPU/request <= {self.front_max:.2f}x the nginx worker's")
        return ", ".join(parts)


ISSUE18 = ProxyTargets(rps_min=0.95, efficiency_min=0.8, front_max=2.0)
TARGETS = (f"{OUTOFPROCESS} >= {RPS_TARGET:.2f}x {NGINX} req/s, "
           f"and p99 <= {P99_TARGET:.2f}x; issue 18: "
           f"{ISSUE18.describe(OUTOFPROCESS, NGINX_HYPERCORN)}")

RESULTS_FILE = Path(__file__).resolve().parent / "results" / "outofprocess.json"
PROGRAM = "bench.hostkit_server"
START_TIMEOUT = 30.0
NGINX_START_TIMEOUT = 5.0
POLL_INTERVAL = 0.01      # GET every 10 ms while timing cold start and recovery
POLL_LIMIT = 30.0         # ... for at most 30 s
STOP_TIMEOUT = 10.0       # SIGTERM -> SIGKILL
LOG_WAIT = 2.0            # for a log line that must already be on its way

NAME_WIDTH = 24
#: the code under test, hashed at the start and the end of a run.
SOURCES = ("hostkit", "plugins", "bench")


# --- command line --------------------------------------------------------------------------

def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    """The benchmark's options; defaults give ``wrk -t2 -c32 -d10s``, 3 rounds."""
    parser = cli.benchmark_parser(
        "python -m bench.outofprocess",
        "Benchmark hostkit OutOfProcess against nginx in front of the same hostkit child, and "
        f"hostkit InProcess. Targets: {TARGETS}.", RESULTS_FILE, noun="target")
    parser.add_argument("--cold-starts", type=cli.count, default=3, metavar="N",
                        help="fresh OutOfProcess fronts timed to their first 200 (default: 3)")
    parser.add_argument("--recoveries", type=cli.count, default=3, metavar="N",
                        help="child SIGKILLs timed to the next 200 (default: 3)")
    parser.add_argument("--targets", nargs="*", choices=list(OPTIONAL_TARGETS),
                        default=list(OPTIONAL_TARGETS), metavar="TARGET",
                        help="the targets measured besides hostkit OutOfProcess "
                             f"({', '.join(OPTIONAL_TARGETS)}; default: all)")
    cli.add_server_options(parser)
    return cli.parse_load_options(parser, argv)


# --- targets -------------------------------------------------------------------------------

def hostkit_command(port: int, *, out_of_process: bool,
                    arguments: Sequence[str] = ()) -> list[str]:
    """``python -m bench.hostkit_server [--hosting_model=OutOfProcess] [ARGUMENTS]
    --urls=...:PORT`` (the URL last: the leftover check looks for it)."""
    model = ["--hosting_model=OutOfProcess"] if out_of_process else []
    return [sys.executable, "-m", PROGRAM, *model, *arguments,
            f"--urls={loopback_url(port, '')}"]


def hostkit_environment(extra: dict[str, str] | None = None) -> dict[str, str]:
    """hostkit's defaults only: no ``HOSTKIT_*`` but these; the repo root on PYTHONPATH.

    The OutOfProcess child runs the front's own command line from the same (empty, temporary)
    working directory, so ``bench`` must be importable from anywhere: PYTHONPATH does that.
    """
    return server_environment({"HOSTKIT_DISABLE_PLUGIN_AUTOLOAD": "1", **(extra or {})})


def listening_marker(port: int) -> str:
    return f"Now listening on: {loopback_url(port, '')}"


def listening_marker_of(url: str) -> str:
    """:func:`listening_marker` of the port in ``url`` (``http://127.0.0.1:PORT/``)."""
    return listening_marker(int(url.rstrip("/").rsplit(":", 1)[1]))


class Bench:
    """Everything started, so everything can be stopped and checked for leftovers; what
    every server is told (``modes``), and where their output goes: with ``logs``, a file in
    that folder per server (:meth:`start`), else a pipe the benchmark reads."""

    def __init__(self, stack: contextlib.ExitStack, cwd: str, *,
                 modes: ServerModes = ServerModes(), logs: Path | None = None):
        self.stack = stack
        self.cwd = cwd
        self.modes = modes
        self.logs = logs
        self.log_files = 0
        #: every OutOfProcess front started: its URL is on its children's command line too.
        self.front_urls: list[str] = []
        #: every child pid the fronts logged, and every process started here, with the text
        #: its command line must contain (so a reused pid is not mistaken for a leftover).
        self.known: dict[int, str] = {}
        self.leftovers: list[dict[str, Any]] = []
        #: servers that did not stop within STOP_TIMEOUT of SIGTERM.
        self.hangs: list[dict[str, Any]] = []

    def start(self, name: str, argv: list[str], ready_marker: str, env: dict[str, str],
              cwd: str, *, wait: bool = True, to_file: bool = True) -> Program:
        """Start ``argv`` (stopped with the stack), its output to a file in :attr:`logs`
        unless ``to_file`` is false (or there is no such folder), and wait for its
        ``ready_marker`` unless ``wait`` is false."""
        options: dict[str, Any] = {"name": name, "new_session": True,
                                   "before_kill": self._note_hang, "inherit_environment": False}
        server: Program
        if self.logs is not None and to_file:
            self.log_files += 1
            slug = "-".join("".join(c if c.isalnum() else " " for c in name).split())
            log_file = self.logs / f"{self.log_files:02d}-{slug}.log"
            server = LogFileProgram(argv, cwd, env, log_file=log_file, **options)
        else:
            server = Program(argv, cwd, env, **options)
        self.stack.callback(server.stop, STOP_TIMEOUT)
        self.known[server.pid] = argv[-1]
        if wait:
            wait_ready(server, ready_marker, START_TIMEOUT)
        return server

    def _note_hang(self, server: Program) -> None:
        """A server that ignores SIGTERM has its Python stacks dumped (py-spy, when installed)
        before it is killed, so the report says where it was stuck."""
        hang: dict[str, Any] = {"name": server.name, "pid": server.pid,
                                "log_tail": server.tail(10)}
        hang["stacks"] = _py_spy_dump(server.pid)
        for child in child_pids(server.pid):
            hang[f"stacks of child {child}"] = _py_spy_dump(child)
        self.hangs.append(hang)
        print(f"BUG? {server.name} (pid {server.pid}) still running {STOP_TIMEOUT:g} s "
              "after SIGTERM: SIGKILL (its stacks are in the JSON results)", file=sys.stderr)

    def start_front(self, *, wait: bool = True, to_file: bool = True) -> tuple[Program, str]:
        port = free_port()
        url = loopback_url(port)
        self.front_urls.append(loopback_url(port, ""))
        argv = hostkit_command(port, out_of_process=True,
                               arguments=self.modes.hostkit_arguments())
        server = self.start(FRONT, argv, listening_marker(port), hostkit_environment(),
                            self.cwd, wait=wait, to_file=to_file)
        return server, url

    def note_children(self, front: Program) -> list[int]:
        """The child pids ``front`` logged so far (oldest first), remembered for the end."""
        pids = [pid for pid, _ in front.started_children()]
        for pid in pids:
            self.known.setdefault(pid, PROGRAM)
        return pids

    def check_leftovers(self) -> None:
        """After everything was stopped: nothing we started may still run. Kill and report."""
        suspects: dict[int, list[str]] = {}
        urls = {f"--urls={url}" for url in self.front_urls}
        for pid, argv in processes_matching(PROGRAM).items():
            if urls.intersection(argv):  # the fronts' children carry the front's --urls
                suspects[pid] = argv
        for pid, needle in self.known.items():
            command = process_cmdline(pid)
            if command is not None and needle in " ".join(command):
                suspects[pid] = command
        for pid, argv in sorted(suspects.items()):
            launcher = any(item.endswith("hostkit/processes/launcher.py") for item in argv)
            print(f"BUG: pid {pid} still running after the benchmark stopped everything"
                  f"{' (in the child launcher)' if launcher else ''}: {' '.join(argv)[:200]}"
                  " -- SIGKILL", file=sys.stderr)
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
            self.leftovers.append({"pid": pid, "command": argv})


def _py_spy_dump(pid: int) -> str:
    """``py-spy dump --pid PID`` (from this interpreter's bin directory or PATH), or why not."""
    py_spy = Path(sys.executable).with_name("py-spy")
    command = str(py_spy) if py_spy.exists() else shutil.which("py-spy")
    if command is None:
        return "py-spy is not installed"
    try:
        done = subprocess.run([command, "dump", "--pid", str(pid)], capture_output=True,
                              text=True, timeout=20)
    except subprocess.TimeoutExpired:
        return "py-spy dump timed out"
    return done.stdout + done.stderr


def start_outofprocess(bench: Bench) -> Target:
    """The front, then one GET so it starts its child (lazily, on the first request)."""
    front, url = bench.start_front()
    target = Target(OUTOFPROCESS, url, [front], roles={FRONT: FRONT_ROLES})
    check_answer(target.name, fetch(url, timeout=START_TIMEOUT))
    bench.note_children(front)
    return target


def start_inprocess(bench: Bench) -> Target:
    port = free_port()
    argv = hostkit_command(port, out_of_process=False,
                           arguments=bench.modes.hostkit_arguments())
    server = bench.start(INPROCESS, argv, listening_marker(port), hostkit_environment(),
                         bench.cwd)
    target = Target(INPROCESS, loopback_url(port), [server], roles={INPROCESS: ("InProcess",)})
    check_answer(target.name, fetch(target.url))
    return target


NGINX_CONF = """\
worker_processes {worker_processes};
daemon off;
error_log {tmp}/error.log;
pid {tmp}/nginx.pid;

events {{
    worker_connections 1024;
}}

http {{
    access_log {access_log};
    client_body_temp_path {tmp}/client_body;
    proxy_temp_path {tmp}/proxy;
    fastcgi_temp_path {tmp}/fastcgi;
    uwsgi_temp_path {tmp}/uwsgi;
    scgi_temp_path {tmp}/scgi;

    upstream child {{
{servers}        keepalive 32;
    }}

    server {{
        listen 127.0.0.1:{nginx_port};
        location / {{
            proxy_pass http://child;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
            proxy_set_header Host $host;
            proxy_set_header X-Forwarded-For $remote_addr;
            proxy_set_header X-Forwarded-Proto $scheme;
{headers}        }}
    }}
}}
"""


def nginx_config(directory: str, port: int, upstream_ports: Sequence[int], *,
                 access_log: str, worker_processes: int = 1,
                 headers: dict[str, str] | None = None) -> str:
    """:data:`NGINX_CONF` for nginx on 127.0.0.1:``port``, its files in ``directory``,
    proxying to 127.0.0.1 on each of ``upstream_ports`` (round robin) with ``headers`` set;
    ``access_log``: the directive's value (:meth:`ServerModes.nginx_access_log`)."""
    servers = "".join(f"        server 127.0.0.1:{upstream};\n" for upstream in upstream_ports)
    extra = "".join(f'            proxy_set_header {name} "{value}";\n'
                    for name, value in (headers or {}).items())
    return NGINX_CONF.format(tmp=directory, nginx_port=port, servers=servers, headers=extra,
                             worker_processes=worker_processes, access_log=access_log)


def start_nginx(bench: Bench, nginx: str, nginx_dir: str, upstream_ports: Sequence[int], *,
                worker_processes: int = 1,
                headers: dict[str, str] | None = None) -> tuple[Program, int]:
    """nginx in the foreground (:func:`nginx_config`, written to ``nginx_dir``, its access
    log as ``bench.modes`` says) on a free port, once it accepts connections; returns it and
    its port. Its workers are remembered for the leftover check."""
    nginx_port = free_port()
    config = Path(nginx_dir) / "nginx.conf"
    config.write_text(nginx_config(nginx_dir, nginx_port, upstream_ports,
                                   access_log=bench.modes.nginx_access_log(nginx_dir),
                                   worker_processes=worker_processes, headers=headers))
    argv = [nginx, "-p", nginx_dir + "/", "-e", f"{nginx_dir}/error.log", "-c", str(config)]
    proxy = bench.start("nginx", argv, "\0never logged\0", server_environment(), nginx_dir,
                        wait=False)
    try:
        wait_accepting(nginx_port, NGINX_START_TIMEOUT, alive=lambda: proxy.running)
    except BenchmarkError as error:
        raise BenchmarkError(f"nginx: {error}\n{proxy.tail()}\n"
                             f"{_read_tail(Path(nginx_dir) / 'error.log')}") from None
    for worker in child_pids(proxy.pid):
        bench.known[worker] = "nginx"
    return proxy, nginx_port


def start_nginx_stack(bench: Bench, nginx: str, nginx_dir: str, *, name: str = NGINX,
                      children: int = 1, worker_processes: int = 1) -> Target:
    """nginx (``worker_processes``) in front of ``children`` hostkit children started by hand
    (the module's contract in their environment), round robin."""
    token = secrets.token_urlsafe(32)
    names = ([BEHIND_NGINX] if children == 1
             else [f"{BEHIND_NGINX} {index}" for index in range(1, children + 1)])
    started = [start_hand_child(bench, child_name, token) for child_name in names]
    proxy, nginx_port = start_nginx(bench, nginx, nginx_dir, [port for _, port in started],
                                    worker_processes=worker_processes,
                                    headers={"Hostkit-Token": token})
    roles = {"nginx": NGINX_ROLES, **{child_name: CHILD_ROLES for child_name in names}}
    target = Target(name, loopback_url(nginx_port), [proxy, *(child for child, _ in started)],
                    roles=roles)
    check_answer(target.name, fetch(target.url))
    return target


def start_nginx_hypercorns(bench: Bench, nginx: str, nginx_dir: str, *,
                           name: str = NGINX_HYPERCORN, children: int = 1,
                           worker_processes: int = 1,
                           cwd: Callable[[], str] | None = None) -> Target:
    """nginx (``worker_processes``, keep-alive upstream) round robin over ``children`` bare
    hypercorns (:func:`bench.inprocess.hypercorn_command`: ``--workers 0``, the worker class
    of ``bench.modes``), each on a free port, ready once it logged ``Running on``; each runs
    in ``cwd()`` (default: the benchmark's working directory)."""
    names = ([HYPERCORN_BEHIND_NGINX] if children == 1
             else [f"hypercorn {index} behind nginx" for index in range(1, children + 1)])
    backends, ports = [], []
    for backend_name in names:
        port = free_port()
        argv = hypercorn_command(port, worker_class=bench.modes.hypercorn_worker_class)
        backend = bench.start(backend_name, argv,
                              f"Running on {loopback_url(port, '')}", server_environment(),
                              cwd() if cwd is not None else bench.cwd)
        backends.append(backend)
        ports.append(port)
    proxy, nginx_port = start_nginx(bench, nginx, nginx_dir, ports,
                                    worker_processes=worker_processes)
    roles = {"nginx": NGINX_ROLES, **{backend_name: HYPERCORN_ROLES for backend_name in names}}
    target = Target(name, loopback_url(nginx_port), [proxy, *backends], roles=roles)
    check_answer(target.name, fetch(target.url))
    return target


def start_hand_child(bench: Bench, name: str, token: str) -> tuple[Program, int]:
    """A hostkit child started by hand on a free port (``HOSTKIT_PORT``, ``HOSTKIT_TOKEN``,
    ``HOSTKIT_PATH_BASE=/``), checked to refuse a request without the token; it and its port."""
    child_port = free_port()
    env = hostkit_environment({"HOSTKIT_PORT": str(child_port), "HOSTKIT_TOKEN": token,
                               "HOSTKIT_PATH_BASE": "/"})
    # The same command line as the module gives its child (the contract's port wins anyway).
    argv = hostkit_command(child_port, out_of_process=True,
                           arguments=bench.modes.hostkit_arguments())
    child = bench.start(name, argv, listening_marker(child_port), env, bench.cwd)
    child_url = loopback_url(child_port)
    without_token = fetch(child_url)
    if without_token.status != 400:
        raise BenchmarkError(f"the hostkit child answered {without_token.status} to a request "
                             "without the token, not 400: is it running as a child?")
    check_answer(name, fetch_with_headers(child_url, {"Hostkit-Token": token}))
    return child, child_port


def _read_tail(path: Path, size: int = 4000) -> str:
    try:
        return path.read_text(errors="replace")[-size:]
    except OSError:
        return ""


# --- polling for the first good answer ------------------------------------------------------

@dataclasses.dataclass
class Poll:
    """What a poll for a 200 saw: when it got it and what came before."""

    ok_at: float
    attempts: int
    refused: int               # connection errors (nothing listening, reset, ...)
    statuses: dict[int, int]   # other answers, by status


def poll_until_ok(url: str, start: float, *, alive: Callable[[], bool]) -> Poll:
    """GET ``url`` every 10 ms until it answers 200 with the app's body (at most 30 s)."""
    deadline = start + POLL_LIMIT
    attempts = refused = 0
    statuses: collections.Counter[int] = collections.Counter()
    while True:
        now = time.monotonic()
        if now >= deadline:
            raise BenchmarkError(f"no 200 from {url} within {POLL_LIMIT:g} s "
                                 f"({attempts} attempts, {refused} refused, "
                                 f"other answers {dict(statuses)})")
        if not alive():
            raise BenchmarkError(f"the server for {url} exited while being polled")
        attempts += 1
        try:
            reply = fetch(url, timeout=max(0.1, deadline - now))
        except (OSError, http.client.HTTPException):
            refused += 1
        else:
            if reply.status == 200 and reply.body == BODY:
                return Poll(time.monotonic(), attempts, refused, dict(statuses))
            statuses[reply.status] += 1
        time.sleep(POLL_INTERVAL)


def poll_front(front: Program, url: str, start: float) -> Poll:
    """:func:`poll_until_ok` on ``front``'s ``url``; when it fails, the error ends with the
    front's last lines of output (why it exited, say)."""
    try:
        return poll_until_ok(url, start, alive=lambda: front.running)
    except BenchmarkError as error:
        raise BenchmarkError(f"{error}; {front.name}'s last output:\n{front.tail()}") from None


def wait_for(condition: Callable[[], Any], timeout: float = LOG_WAIT) -> Any:
    """``condition()`` once it is truthy, or its last (falsy) value after ``timeout`` s."""
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value or time.monotonic() >= deadline:
            return value
        time.sleep(0.005)


def _child_listening_ms(front: Program, pid: int) -> float | None:
    """How long the child ``pid`` took to listen, as ``front`` logged it; None until then."""
    return next((listened[1] for line in list(front.lines)
                 if (listened := child_listening(line)) and listened[0] == pid), None)


# --- cold start and recovery ---------------------------------------------------------------

def measure_cold_start(bench: Bench, index: int, total: int) -> dict[str, Any]:
    """A fresh front (new process, lazy child): spawn -> "Now listening" -> first 200. Its
    output comes through a pipe: the times its lines were read are exact."""
    front, url = bench.start_front(wait=False, to_file=False)
    with front:  # stopped now, not with the rest
        poll = poll_front(front, url, front.started_at)
        ready_at = wait_for(lambda: front.line_time(listening_marker_of(url)))
        children = wait_for(lambda: bench.note_children(front))
        child = children[0] if children else None
        child_ms = (wait_for(lambda: _child_listening_ms(front, child))
                    if child is not None else None)
    result: dict[str, Any] = {
        "total_ms": (poll.ok_at - front.started_at) * 1000,
        "to_listening_ms": (ready_at - front.started_at) * 1000 if ready_at else None,
        "listening_to_200_ms": (poll.ok_at - ready_at) * 1000 if ready_at else None,
        "child_listening_ms_by_module": child_ms,
        "attempts": poll.attempts, "refused": poll.refused, "other_statuses": poll.statuses,
        "child_pid": child,
    }
    print(f"cold start {index}/{total}: {_ms(result['total_ms'])} to the first 200 "
          f"(front listening after {_ms(result['to_listening_ms'])}, then "
          f"{_ms(result['listening_to_200_ms'])}; the module saw its child listen after "
          f"{_ms(child_ms)})" + _other_answers(poll), flush=True)
    return result


def measure_recovery(bench: Bench, target: Target, index: int, total: int) -> dict[str, Any]:
    """SIGKILL the warm front's child, then time until the next 200."""
    front = target.processes[0]
    check_answer(target.name, fetch(target.url))
    before = bench.note_children(front)
    if not before:
        raise BenchmarkError(f"{target.name} logged no 'started child pid N' line")
    victim = before[-1]
    argv = process_cmdline(victim)
    if argv is None or PROGRAM not in " ".join(argv):
        raise BenchmarkError(f"child pid {victim} is not running the benchmark's program: "
                             f"{argv}")
    killed_at = time.monotonic()
    os.kill(victim, signal.SIGKILL)
    poll = poll_front(front, target.url, killed_at)
    started = wait_for(lambda: [pid for pid in bench.note_children(front)
                                if pid not in before])
    new_child = started[-1] if started else None
    child_ms = (wait_for(lambda: _child_listening_ms(front, new_child))
                if new_child is not None else None)
    gone = wait_for(lambda: process_cmdline(victim) is None)
    result: dict[str, Any] = {
        "total_ms": (poll.ok_at - killed_at) * 1000,
        "killed_pid": victim, "new_child_pid": new_child,
        "child_listening_ms_by_module": child_ms,
        "attempts": poll.attempts, "refused": poll.refused, "other_statuses": poll.statuses,
        "killed_child_reaped": bool(gone),
    }
    print(f"recovery {index}/{total}: {_ms(result['total_ms'])} from SIGKILL of child pid "
          f"{victim} to the next 200 (new child pid {new_child}, listening after "
          f"{_ms(child_ms)} by the module)" + _other_answers(poll), flush=True)
    return result


def _ms(value: float | None) -> str:
    return "?" if value is None else f"{value:.0f} ms"


def _other_answers(poll: Poll) -> str:
    notes = []
    if poll.refused:
        notes.append(f"{poll.refused} connection errors")
    notes += [f"{count}x {status}" for status, count in sorted(poll.statuses.items())]
    return f"; before it: {', '.join(notes)}" if notes else ""


def summarize(samples: list[dict[str, Any]], fields: Sequence[str]) -> dict[str, float | None]:
    """The median of each field over the samples (``None`` when no sample has it)."""
    summary: dict[str, float | None] = {}
    for field in fields:
        values = [s[field] for s in samples if s.get(field) is not None]
        summary[field] = statistics.median(values) if values else None
    return summary


# --- issue 18: a proxy stack against nginx + hypercorn, process by process -----------------

def proxy_comparison(hostkit: Target, nginx: Target, wanted: ProxyTargets) -> dict[str, Any]:
    """Called after the rounds: hostkit's OutOfProcess stack (roles ``front``, ``child``, and
    ``supervisor`` in a web garden) against nginx's (``nginx master``, ``nginx worker``,
    ``hypercorn``), both measured in the same rounds with their CPU counted.

    Returns req/s (the ratio of the medians, each round's and their median), p99, each
    stack's CPU microseconds per request (the median of its runs' totals, and of each role
    summed over its processes), the stack CPU efficiency (nginx's stack CPU per request over
    hostkit's: above 1, hostkit's costs less), front / nginx worker and child / hypercorn CPU
    per request, the machine's busy cores during each, and which of ``wanted`` are met.
    """
    mine, theirs = cli.median_cpu_by_role(hostkit), cli.median_cpu_by_role(nginx)
    per_round = [ours.requests_per_sec / other.requests_per_sec
                 for ours, other in zip(hostkit.runs, nginx.runs)]
    rps = hostkit.median("requests_per_sec") / nginx.median("requests_per_sec")
    efficiency = theirs["stack"] / mine["stack"]
    front = _ratio(mine.get("front"), theirs.get("nginx worker"))
    return {
        "candidate": hostkit.name, "baseline": nginx.name,
        "rps": rps, "rps_per_round": per_round,
        "rps_median_of_rounds": statistics.median(per_round),
        "p99": hostkit.median("p99_ms") / nginx.median("p99_ms"),
        "p50": hostkit.median("p50_ms") / nginx.median("p50_ms"),
        "cpu_us_per_request_by_role": {hostkit.name: mine, nginx.name: theirs},
        "stack_cpu_efficiency": efficiency,
        "front_nginx_worker_cpu": front,
        "child_hypercorn_cpu": _ratio(mine.get("child"), theirs.get("hypercorn")),
        "machine_busy_cores": {target.name: _median_busy(target) for target in (hostkit, nginx)},
        "targets": dataclasses.asdict(wanted),
        "met": {
            "rps": rps >= wanted.rps_min,
            "stack_cpu_efficiency": (None if wanted.efficiency_min is None
                                     else efficiency >= wanted.efficiency_min),
            "front_nginx_worker_cpu": (None if wanted.front_max is None or front is None
                                       else front <= wanted.front_max),
        },
    }


def _ratio(numerator: float | None, denominator: float | None) -> float | None:
    if numerator is None or not denominator:
        return None
    return numerator / denominator


def _median_busy(target: Target) -> float | None:
    busy = [machine["busy_cores"] for machine in target.machine]
    return statistics.median(busy) if busy else None


def _verdict(met: bool | None, target: str) -> str:
    return "" if met is None else f"  ({'MET' if met else 'NOT MET'}: target {target})"


def _x(value: float | None, digits: int = 3) -> str:
    return "?" if value is None else f"{value:.{digits}f}x"


def proxy_lines(result: dict[str, Any], *, indent: str = "  ", rps: bool = True) -> list[str]:
    """:func:`proxy_comparison`'s result as report lines (without the req/s line when
    ``rps`` is false: the caller prints its own)."""
    wanted, met = result["targets"], result["met"]
    candidate, baseline = result["candidate"], result["baseline"]
    mine = result["cpu_us_per_request_by_role"][candidate]
    theirs = result["cpu_us_per_request_by_role"][baseline]
    rounds = ", ".join(f"{value:.3f}" for value in result["rps_per_round"])
    efficiency_target = (None if wanted["efficiency_min"] is None
                         else f">= {wanted['efficiency_min']:.2f}")
    front_target = None if wanted["front_max"] is None else f"<= {wanted['front_max']:.2f}x"
    busy = result["machine_busy_cores"]
    cores = os.cpu_count() or 1

    def us(roles: dict[str, float], role: str) -> str:
        return f"{roles[role]:.0f} us" if role in roles else "?"

    lines = [
        f"{indent}req/s                {result['rps']:.3f}x"
        + _verdict(met["rps"], f">= {wanted['rps_min']:.2f}x")
        + f"; rounds {rounds} (median {result['rps_median_of_rounds']:.3f}x)",
    ] if rps else []
    return lines + [
        f"{indent}p99                  {result['p99']:.3f}x  (p50 {result['p50']:.3f}x)",
        f"{indent}stack CPU efficiency {result['stack_cpu_efficiency']:.3f}"
        + _verdict(met["stack_cpu_efficiency"], efficiency_target or "")
        + f": nginx stack {us(theirs, 'stack')} / hostkit stack {us(mine, 'stack')} "
          "per request",
        f"{indent}front / nginx worker {_x(result['front_nginx_worker_cpu'])}"
        + _verdict(met["front_nginx_worker_cpu"], front_target or "")
        + f": {us(mine, 'front')} / {us(theirs, 'nginx worker')} per request",
        f"{indent}child / hypercorn    {_x(result['child_hypercorn_cpu'])}: "
        f"{us(mine, 'child')} / {us(theirs, 'hypercorn')} per request",
        f"{indent}machine busy         "
        + " / ".join("?" if value is None else f"{value:.2f}" for value in busy.values())
        + f" of {cores} cores (candidate / baseline, median of the runs)",
    ]


# --- reporting -----------------------------------------------------------------------------

def compute_ratios(by_name: dict[str, Target]) -> dict[str, float]:
    """OutOfProcess's medians over each other target's measured (req/s, p50, p99), and
    InProcess's req/s over OutOfProcess's."""
    oop = by_name[OUTOFPROCESS]
    ratio: dict[str, float] = {}
    for baseline, key in ((NGINX, "nginx"), (NGINX_HYPERCORN, "nginx_hypercorn")):
        if baseline in by_name:
            for field, short in (("requests_per_sec", "rps"), ("p50_ms", "p50"),
                                 ("p99_ms", "p99")):
                ratio[f"outofprocess_{key}_{short}"] = (oop.median(field)
                                                        / by_name[baseline].median(field))
    if INPROCESS in by_name:
        ratio["inprocess_outofprocess_rps"] = (by_name[INPROCESS].median("requests_per_sec")
                                               / oop.median("requests_per_sec"))
    return ratio


def targets_met(ratio: dict[str, float],
                issue18: dict[str, Any] | None) -> dict[str, bool | None]:
    met: dict[str, bool | None] = {}
    if "outofprocess_nginx_rps" in ratio:
        met["rps"] = ratio["outofprocess_nginx_rps"] >= RPS_TARGET
        met["p99"] = ratio["outofprocess_nginx_p99"] <= P99_TARGET
    if issue18 is not None:
        met.update({f"issue18_{name}": value for name, value in issue18["met"].items()})
    return met


def format_report(targets: list[Target], ratio: dict[str, float],
                  issue18: dict[str, Any] | None,
                  cold: dict[str, float | None], recovery: dict[str, float | None],
                  options: argparse.Namespace, modes: ServerModes,
                  logged: dict[str, int]) -> str:
    lines = ["", f"targets: {TARGETS}",
             cli.load_line(options, order="order reversed every other round"),
             f"servers: {modes.describe()}", "",
             *cli.medians_table(targets, NAME_WIDTH)]
    if issue18 is not None:
        lines += ["", f"issue 18: {OUTOFPROCESS} / {NGINX_HYPERCORN} (1 nginx worker, one bare "
                  "hypercorn, keep-alive upstream):", *proxy_lines(issue18)]
    if "outofprocess_nginx_rps" in ratio:
        met = targets_met(ratio, None)
        lines += [
            "",
            f"OutOfProcess/{NGINX} req/s: {ratio['outofprocess_nginx_rps']:.3f}x  "
            f"({'MET' if met['rps'] else 'NOT MET'}: target >= {RPS_TARGET:.2f}x)",
            f"OutOfProcess/{NGINX} p99:   {ratio['outofprocess_nginx_p99']:.3f}x  "
            f"({'MET' if met['p99'] else 'NOT MET'}: target <= {P99_TARGET:.2f}x)",
            f"OutOfProcess/{NGINX} p50:   {ratio['outofprocess_nginx_p50']:.3f}x",
        ]
    if "inprocess_outofprocess_rps" in ratio:
        lines.append(f"InProcess/OutOfProcess req/s: {ratio['inprocess_outofprocess_rps']:.3f}x"
                     "  (reference)")
    lines += ["", "CPU us per request (median of the runs), the stack and each process in it:"]
    lines += [f"  {target.name:<{NAME_WIDTH}} {cli.role_note(target)}" for target in targets]
    if cold:
        lines += ["", f"cold start (median of {options.cold_starts}): "
                  f"{_ms(cold['total_ms'])} from spawning the front to the first 200; "
                  f"spawn -> 'Now listening' {_ms(cold['to_listening_ms'])}, "
                  f"listening -> first 200 {_ms(cold['listening_to_200_ms'])} "
                  f"(child listening after {_ms(cold['child_listening_ms_by_module'])} "
                  "as the module logs it)"]
    if recovery:
        lines += [f"recovery (median of {options.recoveries}): "
                  f"{_ms(recovery['total_ms'])} from SIGKILL of the child to the next 200 "
                  f"(new child listening after "
                  f"{_ms(recovery['child_listening_ms_by_module'])} as the module logs it)"]
    lines += ["", "request lines logged (every measured server's output file; nginx's "
              "access.log): " + ", ".join(f"{name} {count}" for name, count in logged.items())]
    lines += cli.warnings(targets)
    lines += access_log_warnings(modes, logged)
    lines += cli.loop_warnings(targets, modes.event_loop)
    for target in targets:
        if target.keep_alive is False:
            lines.append(f"WARNING: {target.name} closes the client connection after every "
                         "response (no keep-alive): wrk counts a read error per request and "
                         "reconnects, so its figures include a TCP connect per request")
    return "\n".join(lines)


def nginx_version(nginx: str) -> str:
    """The line ``nginx -v`` prints (``nginx version: nginx/1.x``)."""
    done = subprocess.run([nginx, "-v"], capture_output=True, text=True, timeout=10)
    return (done.stdout + done.stderr).strip()


def results_document(targets: list[Target], ratio: dict[str, float],
                     issue18: dict[str, Any] | None,
                     cold_starts: list[dict[str, Any]], cold: dict[str, float | None],
                     recoveries: list[dict[str, Any]], recovery: dict[str, float | None],
                     leftovers: list[dict[str, Any]], hangs: list[dict[str, Any]],
                     source: dict[str, Any], options: argparse.Namespace,
                     wrk: str, nginx: str, modes: ServerModes,
                     logged: dict[str, int]) -> dict[str, Any]:
    return {
        **cli.document_header("outofprocess"),
        "modes": modes.settings(),
        "request_lines_logged": logged,
        "targets": TARGETS,
        "target_ratios": {"outofprocess_nginx_rps_min": RPS_TARGET,
                          "outofprocess_nginx_p99_max": P99_TARGET,
                          "issue18": dataclasses.asdict(ISSUE18)},
        "targets_met": targets_met(ratio, issue18),
        "ratios": ratio,
        "issue18": issue18,
        "settings": cli.load_settings(options, "cold_starts", "recoveries", "targets",
                                      "access_log", "event_loop"),
        "environment": cli.environment(wrk, ("hostkit", "hypercorn", "anyio", "h11"),
                                       nginx=nginx_version(nginx)),
        "servers": {
            target.name: {
                "commands": {process.name: process.args for process in target.processes},
                "client_keep_alive": target.keep_alive,
                "uvloop_by_process": target.uvloop,
                "median": cli.medians(target),
                "cpu_us_per_request": {"median": cli.median_cpu(target),
                                       "median_by_role": cli.median_cpu_by_role(target),
                                       "roles": {name: cli.role_of(target, name)
                                                 for name in cli.median_cpu(target)},
                                       "runs": target.cpu},
                "machine": target.machine,
                "runs": cli.runs(target),
            }
            for target in targets
        },
        "cold_start": {"median": cold, "samples": cold_starts},
        "recovery": {"median": recovery, "samples": recoveries},
        "leftover_processes": leftovers,
        "stop_hangs": hangs,
        "source": source,
    }


# --- main ----------------------------------------------------------------------------------

def start_targets(bench: Bench, nginx: str, nginx_dir: str,
                  names: Sequence[str]) -> list[Target]:
    """OutOfProcess and the ``names`` asked for (in :data:`ORDER`), each checked for client
    keep-alive; each nginx gets a folder of its own under ``nginx_dir``."""
    def folder(name: str) -> str:
        path = Path(nginx_dir) / "-".join(name.replace("+", " ").split())
        path.mkdir(mode=0o755)
        path.chmod(0o755)  # nginx's worker runs as nobody when started by root
        return str(path)

    starters: dict[str, Callable[[], Target]] = {
        OUTOFPROCESS: lambda: start_outofprocess(bench),
        NGINX: lambda: start_nginx_stack(bench, nginx, folder(NGINX)),
        NGINX_HYPERCORN: lambda: start_nginx_hypercorns(bench, nginx, folder(NGINX_HYPERCORN)),
        INPROCESS: lambda: start_inprocess(bench),
    }
    targets = []
    for name in ORDER:
        if name not in names:
            continue
        target = starters[name]()
        pids = ", ".join(f"{p.name} pid {p.pid}" for p in target.processes)
        if target.name == OUTOFPROCESS:
            pids += f", child pid {bench.note_children(target.processes[0])[-1]}"
        target.keep_alive = keeps_alive(target.url)
        target.uvloop = cli.uvloop_processes(target)
        print(f"{target.name}: {target.url} ({pids}); client keep-alive: "
              f"{'yes' if target.keep_alive else 'NO'}; {cli.loop_note(target)}", flush=True)
        targets.append(target)
    return targets


def main(argv: Sequence[str] | None = None) -> int:
    """Run the benchmark; 0 when it ran (whether or not the targets are met), 1 on failure."""
    options = parse_args(argv)
    wrk = ensure_wrk()
    nginx = ensure_program("nginx", "nginx-light", why=" (the reverse proxy compared with)")
    modes = cli.modes_of(options, hostkit_environment())
    print(f"servers: {modes.describe()}", flush=True)
    source = {"at_start": source_state(*SOURCES)}
    names = [OUTOFPROCESS, *(OPTIONAL_TARGETS[option] for option in options.targets)]
    targets: list[Target] = []
    cold_starts: list[dict[str, Any]] = []
    recoveries: list[dict[str, Any]] = []
    logged: dict[str, int] = {}
    failed = False
    with tempfile.TemporaryDirectory(prefix="hostkit-bench-") as cwd, \
            tempfile.TemporaryDirectory(prefix="hostkit-bench-nginx-") as nginx_dir, \
            tempfile.TemporaryDirectory(prefix="hostkit-bench-logs-") as logs:
        os.chmod(nginx_dir, 0o755)  # nginx's worker runs as nobody when started by root
        stack = contextlib.ExitStack()
        bench = Bench(stack, cwd, modes=modes, logs=Path(logs))
        stack.callback(bench.check_leftovers)  # the last thing done: after every stop
        try:
            with stack:
                for index in range(1, options.cold_starts + 1):
                    cold_starts.append(measure_cold_start(bench, index, options.cold_starts))
                targets = start_targets(bench, nginx, nginx_dir, names)
                cli.measure(wrk, targets, options, name_width=NAME_WIDTH, count_cpu=True,
                            order=cli.alternations)
                front = next(target for target in targets if target.name == OUTOFPROCESS)
                for index in range(1, options.recoveries + 1):
                    recoveries.append(measure_recovery(bench, front, index, options.recoveries))
                bench.note_children(front.processes[0])
        except BenchmarkError as error:
            print(f"benchmark failed: {error}", file=sys.stderr)
            failed = True
        logged = {**request_lines(Path(logs), Path(logs).iterdir()),
                  **request_lines(Path(nginx_dir), Path(nginx_dir).glob("*/access.log"))}
    if failed:
        return 1
    source["at_end"] = source_state(*SOURCES)
    code_changed = source["at_start"]["sha256"] != source["at_end"]["sha256"]
    by_name = {target.name: target for target in targets}
    ratio = compute_ratios(by_name)
    issue18 = (proxy_comparison(by_name[OUTOFPROCESS], by_name[NGINX_HYPERCORN], ISSUE18)
               if NGINX_HYPERCORN in by_name else None)
    cold = summarize(cold_starts, ("total_ms", "to_listening_ms", "listening_to_200_ms",
                                   "child_listening_ms_by_module"))
    recovery = summarize(recoveries, ("total_ms", "child_listening_ms_by_module"))
    print(format_report(targets, ratio, issue18, cold if cold_starts else {},
                        recovery if recoveries else {}, options, modes, logged))
    if bench.leftovers:
        print(f"BUG: {len(bench.leftovers)} process(es) outlived the benchmark's stop; "
              "killed (see above)")
    else:
        print("no leftover processes after stopping everything")
    if code_changed:
        print(f"WARNING: files under {', '.join(SOURCES)}/ changed during the run: the targets "
              "may have run different code (see 'source' in the JSON)")
    for hang in bench.hangs:
        print(f"BUG? {hang['name']} (pid {hang['pid']}) did not exit within "
              f"{STOP_TIMEOUT:g} s of SIGTERM and was killed; where it was stuck:\n"
              f"{hang['stacks'].strip()}")
    cli.write_results(results_document(targets, ratio, issue18, cold_starts, cold, recoveries,
                                       recovery, bench.leftovers, bench.hangs, source, options,
                                       wrk, nginx, modes, logged), options.output)
    return 0


if __name__ == "__main__":
    sys.exit(main())
