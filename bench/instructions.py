"""Instructions per request, counted by callgrind: a cost other work on the machine does not move.

Run from the repository root::

    python -m bench.instructions                        # stage, inprocess, front
    python -m bench.instructions stage inprocess hypercorn
    python -m bench.instructions --event-loop uvloop inprocess hypercorn
    python -m bench.instructions --access-log both inprocess hypercorn
    python -m bench.instructions --python /work/before/.venv/bin/python --root /work/before \\
        --stage hostkit.server_stage:ServerStage stage inprocess front

Measurements (each one process under ``valgrind --tool=callgrind --instr-atstart=no``):

- ``stage``: :class:`hostkit.request_stage.RequestStage` alone. This file, run as a driver
  under the measured checkout's Python, calls the stage with a fake server whose ``receive``
  and ``send`` never wait, so each request runs to its end in one ``coroutine.send(None)``,
  with no event loop: the steadiest figure. It counts a loop of requests to the app alone
  and one to the stage around the app; the stage's cost is the difference.
- ``inprocess``: hostkit InProcess (hypercorn) serving the app, loaded by wrk; the stage's
  cost is inside it.
- ``front``: the OutOfProcess front only (its hostkit child runs natively behind it).
- ``hypercorn``: bare hypercorn serving the same app, for reference.

``--event-loop`` (``asyncio`` by default, or ``uvloop``) is the loop of both servers: hostkit
gets ``--event_loop=LOOP`` (when the measured hostkit has that setting: one without it runs
asyncio and is told nothing; it cannot run uvloop), hypercorn ``--worker-class LOOP``.
``--access-log`` says which servers write an access log (:data:`bench._harness.ACCESS_LOG_MODES`):
``defaults`` (the default) each its own default, hostkit its combined line and bare hypercorn
none; ``both`` hypercorn too, in hostkit's layout, to a file (``--access-logfile``); ``none``
neither (hostkit ``--logging:access_log=false``: the measured environment has no
``HOSTKIT_*`` but plugin autoload off, so hostkit is told on its command line). The request
lines each server logged are counted after it stopped, with a warning when they do not fit.

A server is started under callgrind with counting off, warmed up with one GET and a wrk run,
then counted (``callgrind_control -i on PID``) for one wrk run and switched off again before
anything else happens; the count divided by the requests wrk completed is the figure. Every
measured process gets ``PYTHONHASHSEED=0``, so dict layouts, and with them the counts, repeat
to within a fraction of a percent. A server's moves a little more, as how reads and writes
split on the wire depends on timing (with a single connection, a server that waits for every
request moves by a few percent), so each server is measured ``--rounds`` times and the median
is reported. The requests in flight when wrk stops are counted but not served: at most
``--connections``, a few out of the thousand or more a run serves.

``--python`` and ``--root`` measure another checkout with this tool: its Python, its tree and
its ``plugins/`` on ``PYTHONPATH`` (ahead of the editable install's, which maps the built-in
plugins to the checkout it was installed from), and the programs it names (``--program``, ``--stage``, ``--app``).

This file imports only the standard library at the top: it also runs as the stage driver
under the measured checkout's Python (``python -P bench/instructions.py --drive-stage ...``),
where ``bench`` is that checkout's.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import datetime
import importlib
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any

if TYPE_CHECKING:
    from bench._harness import ServerModes

THIS_FILE = Path(__file__).resolve()
RESULTS_FILE = THIS_FILE.parent / "results" / "instructions.json"
MEASUREMENTS = ("stage", "inprocess", "front", "hypercorn")
#: ``--event-loop``; bench._harness.EVENT_LOOPS, which the command line does not import (see
#: :func:`positive_int`).
EVENT_LOOPS = ("asyncio", "uvloop")
#: ``--access-log``: the names of bench._harness.ACCESS_LOG_MODES, for the same reason.
ACCESS_LOG_MODES = ("both", "none", "defaults")
DEFAULT_MEASUREMENTS = ("stage", "inprocess", "front")

START_TIMEOUT = 60.0      # a Python server under valgrind starts in about 5-10 s
FIRST_GET_TIMEOUT = 30.0  # the front's first request starts its child
CONTROL_TIMEOUT = 30.0    # one callgrind_control command
DUMP_TIMEOUT = 30.0       # callgrind writing a dump file
DRIVER_TIMEOUT = 50.0     # the stage driver, per counted loop
STOP_TIMEOUT = 15.0

# The stage's settings in the driver: hostkit's defaults (server.max_request_body_size).
STAGE_OPTIONS: dict[str, Any] = {"max_request_body_size": 30_000_000,
                                 "allow_synchronous_io": False, "show_details": False,
                                 "bare_error_pages": False}


# --- the stage driver (runs under the measured checkout's Python) --------------------------

def _load(spec: str) -> Any:
    """``module:attribute`` -> the attribute."""
    module, _, name = spec.partition(":")
    return getattr(importlib.import_module(module), name)


def _http_scope() -> dict[str, Any]:
    """A GET / scope as hypercorn makes it for HTTP/1.1."""
    return {"type": "http", "http_version": "1.1",
            "asgi": {"spec_version": "2.1", "version": "3.0"}, "method": "GET",
            "scheme": "http", "path": "/", "raw_path": b"/", "query_string": b"",
            "root_path": "", "headers": [(b"host", b"127.0.0.1:8000"), (b"user-agent", b"wrk")],
            "client": ("127.0.0.1", 50000), "server": ("127.0.0.1", 8000), "state": {},
            "extensions": {}}


async def _receive() -> dict[str, Any]:
    return {"type": "http.request", "body": b"", "more_body": False}


async def _send(message: dict[str, Any]) -> None:
    return None


def _serve(app: Callable[..., Any], requests: int) -> None:
    """Call ``app`` for ``requests`` requests with a fresh scope each, each driven to its end
    by one ``send(None)``: the fake server's callables never wait."""
    template = _http_scope()
    for _ in range(requests):
        call = app(dict(template), _receive, _send)
        try:
            call.send(None)
        except StopIteration:
            continue
        call.close()
        raise RuntimeError(f"{app!r} waited for something the fake server does not do")


def drive_stage(stage_spec: str, app_spec: str, requests: int, warmup: int) -> None:
    """The driver: warm both loops, say ``ready``; then, per line read from stdin, count one
    loop (the app alone, then the stage around it) and say ``done``."""
    from hostkit.context import Features  # the measured checkout's

    app = _load(app_spec)
    stage = _load(stage_spec)(app, Features("InProcess", os.getpid(), "python", "bench"),
                              **STAGE_OPTIONS)
    loops = (app, stage)
    for loop in loops:
        _serve(loop, warmup)
    print("ready", flush=True)
    for loop in loops:
        sys.stdin.readline()
        _serve(loop, requests)
        print("done", flush=True)
    sys.stdin.readline()


# --- callgrind -----------------------------------------------------------------------------

class Callgrind:
    """Programs run under callgrind with counting off until :meth:`counting` switches it on."""

    def __init__(self, directory: Path):
        self.directory = directory
        self._parts = 0

    def command(self, argv: Sequence[str]) -> list[str]:
        """``valgrind --tool=callgrind --instr-atstart=no ... argv``; valgrind's own messages
        go to a file, so the program's stderr is its own."""
        return ["valgrind", "--tool=callgrind", "--instr-atstart=no",
                f"--callgrind-out-file={self.directory / 'callgrind.out'}",
                f"--log-file={self.directory / 'valgrind.log'}", *argv]

    @contextlib.contextmanager
    def counting(self, pid: int) -> Iterator[Count]:
        """Count the instructions of ``pid`` while the block runs; the total is in the
        yielded :class:`Count` once the block is over."""
        count = Count()
        _control(pid, "--instr=on")
        try:
            yield count
        finally:
            _control(pid, "--instr=off")
            _control(pid, "--dump")
            self._parts += 1
            count.instructions = _read_total(self.directory / f"callgrind.out.{self._parts}")


@dataclasses.dataclass
class Count:
    """What :meth:`Callgrind.counting` counted."""

    instructions: int = 0


def _control(pid: int, command: str) -> None:
    done = subprocess.run(["callgrind_control", command, str(pid)], capture_output=True,
                          text=True, timeout=CONTROL_TIMEOUT)
    if done.returncode != 0:
        raise MeasurementError(f"callgrind_control {command} {pid} failed:\n"
                               f"{done.stdout}{done.stderr}")


def _read_total(dump: Path) -> int:
    """The ``totals:`` line of a callgrind dump (waiting for the file, a bounded while)."""
    deadline = time.monotonic() + DUMP_TIMEOUT
    while time.monotonic() < deadline:
        if dump.exists():
            for line in dump.read_text(errors="replace").splitlines():
                if line.startswith("totals:"):
                    return int(line.split()[1])
        time.sleep(0.1)
    raise MeasurementError(f"no totals in {dump} within {DUMP_TIMEOUT:g} s")


class MeasurementError(RuntimeError):
    """A measurement could not be made: a program did not start, callgrind did not answer."""


# --- measurements --------------------------------------------------------------------------

@dataclasses.dataclass
class Figure:
    """One measurement: instructions per request, and what it was computed from."""

    name: str
    per_request: float
    instructions: int
    requests: int
    details: dict[str, Any] = dataclasses.field(default_factory=dict)


def measured_environment(options: argparse.Namespace) -> dict[str, str]:
    """The environment of every measured process: hostkit's defaults only (no ``HOSTKIT_*``
    from the caller, plugin autoload off), the measured tree and its plugins on ``PYTHONPATH``,
    fixed hashes."""
    environment = {name: value for name, value in os.environ.items()
                   if not name.startswith(("HOSTKIT_", "PYTHON"))}
    python_path = os.pathsep.join([str(options.root), str(options.root / "plugins")])
    environment.update(PYTHONPATH=python_path, PYTHONUNBUFFERED="1", PYTHONHASHSEED="0",
                       HOSTKIT_DISABLE_PLUGIN_AUTOLOAD="1")
    return environment


def _readline(stream: IO[str], deadline: float, what: str) -> str:
    """A line from a driver's stdout, or MeasurementError when it does not come in time.

    The driver writes one short line at a time, so a ready pipe holds a whole line."""
    import selectors

    with selectors.DefaultSelector() as selector:
        selector.register(stream, selectors.EVENT_READ)
        if not selector.select(max(0.0, deadline - time.monotonic())):
            raise MeasurementError(f"the stage driver did not say {what!r} in time")
    line = stream.readline()
    if not line:
        raise MeasurementError(f"the stage driver exited before saying {what!r}")
    return line.strip()


def measure_stage(options: argparse.Namespace, work: Path) -> Figure:
    """The stage alone, in the driver (see :func:`drive_stage`)."""
    callgrind = Callgrind(work)
    argv = callgrind.command([options.python, "-P", str(THIS_FILE), "--drive-stage",
                              options.stage, "--app", options.app,
                              "--requests", str(options.requests),
                              "--warmup-requests", str(options.warmup_requests)])
    driver = subprocess.Popen(argv, cwd=options.root, env=measured_environment(options),
                              stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True)
    assert driver.stdin is not None and driver.stdout is not None
    try:
        _readline(driver.stdout, time.monotonic() + START_TIMEOUT, "ready")
        counts = []
        for _ in ("app", "stage"):
            with callgrind.counting(driver.pid) as count:
                driver.stdin.write("go\n")
                driver.stdin.flush()
                _readline(driver.stdout, time.monotonic() + DRIVER_TIMEOUT, "done")
            counts.append(count.instructions)
        driver.stdin.write("exit\n")
        driver.stdin.flush()
        driver.wait(STOP_TIMEOUT)
    except (MeasurementError, OSError, subprocess.TimeoutExpired) as error:
        driver.kill()
        _, stderr = driver.communicate(timeout=STOP_TIMEOUT)
        raise MeasurementError(f"{error}\n{stderr[-3000:]}") from error
    app_alone, with_stage = counts
    requests = options.requests
    return Figure(f"stage ({options.stage}, in-process driver)",
                  (with_stage - app_alone) / requests, with_stage - app_alone, requests,
                  {"app_alone_per_request": app_alone / requests,
                   "with_stage_per_request": with_stage / requests})


def measure_server(options: argparse.Namespace, work: Path, name: str,
                   program: Callable[[int], list[str]], ready: Callable[..., str], *,
                   access_log: bool, access_log_file: Path | None = None) -> Figure:
    """One server under callgrind: ``program(port)`` started, ready once it logs
    ``ready(port=port)``, warmed up, then counted for one wrk run. Once it has stopped, the
    request lines in its output and its ``access_log_file`` are counted, with a warning when
    there are some and it should write no ``access_log``, or none and it should."""
    from bench._harness import (
        REQUEST_LINE,
        check_answer,
        ensure_wrk,
        fetch,
        loopback_url,
        run_wrk,
        start_server,
    )
    from tests.support.processes import free_port

    wrk = ensure_wrk()
    port = free_port()
    url = loopback_url(port)
    callgrind = Callgrind(work)
    content_root = work / "content"
    content_root.mkdir()
    with start_server(name, callgrind.command(program(port)), ready(port=port),
                      env=measured_environment(options), cwd=content_root,
                      timeout=START_TIMEOUT) as server:
        check_answer(name, fetch(url, timeout=FIRST_GET_TIMEOUT))
        load = {"threads": options.threads, "connections": options.connections}
        run_wrk(wrk, url, duration_s=options.warmup, **load)
        with callgrind.counting(server.pid) as count:
            result = run_wrk(wrk, url, duration_s=options.duration, **load)
    if result.errors:
        raise MeasurementError(f"{name}: wrk saw {result.socket_errors} socket errors and "
                               f"{result.non_2xx_3xx} non-2xx/3xx answers")
    lines = list(server.lines)
    if access_log_file is not None and access_log_file.exists():
        lines += access_log_file.read_text(errors="replace").splitlines()
    logged = sum(REQUEST_LINE in line for line in lines)
    if access_log and not logged:
        print(f"WARNING: {name} should write an access log but logged no request line",
              file=sys.stderr)
    elif logged and not access_log:
        print(f"WARNING: {name} should write no access log but logged {logged} request lines",
              file=sys.stderr)
    return Figure(name, count.instructions / result.requests, count.instructions,
                  result.requests, {"requests_per_sec_under_callgrind": result.requests_per_sec,
                                    "request_lines_logged": logged})


def _hostkit(options: argparse.Namespace, modes: ServerModes,
             *arguments: str) -> Callable[[int], list[str]]:
    """The measured checkout's hostkit program (``--program``) on 127.0.0.1:PORT, told
    ``modes``' event loop and access log (its front's child too: it runs the same command
    line)."""
    def program(port: int) -> list[str]:
        return [options.python, "-m", options.program, *arguments,
                *modes.hostkit_arguments(), f"--urls=http://127.0.0.1:{port}"]
    return program


def _bare_hypercorn(options: argparse.Namespace, modes: ServerModes,
                    access_log_file: Path) -> Callable[[int], list[str]]:
    """hypercorn serving ``--app`` in one process on 127.0.0.1:PORT, as bench.inprocess
    runs it, with ``modes``' worker class (``asyncio`` or ``uvloop``) and access log (to
    ``access_log_file``)."""
    def program(port: int) -> list[str]:
        return [options.python, "-m", "hypercorn", "--bind", f"127.0.0.1:{port}",
                "--worker-class", modes.hypercorn_worker_class, "--workers", "0",
                *modes.hypercorn_access_arguments(access_log_file), options.app]
    return program


def measure(options: argparse.Namespace, measurement: str, work: Path,
            modes: ServerModes) -> Figure:
    """One measurement by name (:data:`MEASUREMENTS`), its servers run as ``modes`` says."""
    if measurement == "stage":
        return measure_stage(options, work)
    access_log_file = work / "hypercorn-access.log"
    servers = {
        "inprocess": ("hostkit InProcess (hypercorn)", _hostkit(options, modes),
                      "Now listening on: http://127.0.0.1:{port}", modes.access_log),
        "front": ("hostkit OutOfProcess front",
                  _hostkit(options, modes, "--hosting_model=OutOfProcess"),
                  "Now listening on: http://127.0.0.1:{port}", modes.access_log),
        "hypercorn": ("bare hypercorn", _bare_hypercorn(options, modes, access_log_file),
                      "Running on http://127.0.0.1:{port}", modes.hypercorn_access_log),
    }
    name, program, ready, access_log = servers[measurement]
    return measure_server(options, work, name, program, ready.format, access_log=access_log,
                          access_log_file=access_log_file)


# --- command line --------------------------------------------------------------------------

def positive_int(text: str) -> int:
    """argparse type: a whole number of at least 1 (this tool's command line imports nothing
    of the tree it measures from, so it runs while that tree is half-edited)."""
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text}")
    return value


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m bench.instructions",
        description="Instructions per request under callgrind: the request stage alone, "
                    "hostkit InProcess, the OutOfProcess front, bare hypercorn.")
    parser.add_argument("--rounds", type=positive_int, default=3,
                        help="measurements of each server, each a fresh process (default: 3; "
                             "the median is reported). The stage is counted once: its count "
                             "repeats to within a fraction of a percent")
    parser.add_argument("--duration", type=positive_int, default=15, metavar="SECONDS",
                        help="the counted wrk run (default: 15)")
    parser.add_argument("--warmup", type=positive_int, default=3, metavar="SECONDS",
                        help="the uncounted wrk run before it (default: 3)")
    parser.add_argument("--connections", type=positive_int, default=4,
                        help="wrk connections (default: 4: a server busy with more than one "
                             "request counts steadier than one waiting for each; the requests "
                             "in flight when wrk stops are counted but not served, at most "
                             "this many)")
    parser.add_argument("--threads", type=positive_int, default=1,
                        help="wrk threads (default: 1)")
    parser.add_argument("--output", type=Path, default=RESULTS_FILE,
                        help=f"JSON results file (default: {RESULTS_FILE})")
    parser.add_argument("--event-loop", choices=EVENT_LOOPS, default="asyncio",
                        help="the event loop of hostkit (--event_loop=LOOP, when the measured "
                             "hostkit has that setting) and of bare hypercorn (--worker-class "
                             "LOOP) (default: asyncio)")
    parser.add_argument("--access-log", choices=ACCESS_LOG_MODES, default="defaults",
                        help="defaults: each server's own (hostkit's combined line, none from "
                             "bare hypercorn); both: hypercorn too, --access-logfile in "
                             "hostkit's layout; none: neither (hostkit "
                             "--logging:access_log=false) (default: defaults)")
    parser.add_argument("measurements", nargs="*", metavar="MEASUREMENT",
                        help=f"any of {', '.join(MEASUREMENTS)} "
                             f"(default: {' '.join(DEFAULT_MEASUREMENTS)})")
    parser.add_argument("--python", default=sys.executable,
                        help="the Python of the measured checkout (default: this one)")
    parser.add_argument("--root", type=Path, default=THIS_FILE.parent.parent,
                        help="the measured checkout, put on PYTHONPATH and used as the "
                             "stage driver's working directory (default: this one)")
    parser.add_argument("--program", default="bench.hostkit_server",
                        help="the hostkit program (a module taking hostkit's arguments) "
                             "for inprocess and front (default: bench.hostkit_server)")
    parser.add_argument("--stage", default="hostkit.request_stage:RequestStage",
                        help="MODULE:CLASS of the request stage (default: "
                             "hostkit.request_stage:RequestStage)")
    parser.add_argument("--app", default="bench.trivial_app:app",
                        help="MODULE:NAME of the app served (default: bench.trivial_app:app)")
    parser.add_argument("--requests", type=positive_int, default=20_000,
                        help="requests per counted loop of the stage driver (default: 20000)")
    parser.add_argument("--warmup-requests", type=positive_int, default=2_000,
                        help="uncounted requests per loop before the driver counts "
                             "(default: 2000)")
    options = parser.parse_args(argv)
    if options.connections < options.threads:
        parser.error("--connections must be at least --threads (wrk needs one per thread)")
    unknown = sorted(set(options.measurements) - set(MEASUREMENTS))
    if unknown:
        parser.error(f"unknown measurement {', '.join(unknown)}: expected any of "
                     f"{', '.join(MEASUREMENTS)}")
    options.measurements = options.measurements or list(DEFAULT_MEASUREMENTS)
    options.root = options.root.resolve()
    return options


def _source(root: Path) -> dict[str, Any]:
    def git(*args: str) -> str:
        try:
            return subprocess.run(["git", *args], cwd=root, capture_output=True, text=True,
                                  timeout=10).stdout.strip()
        except (OSError, subprocess.TimeoutExpired):
            return ""
    return {"root": str(root), "git_head": git("rev-parse", "HEAD"),
            "uncommitted": git("status", "--porcelain", "--", "hostkit", "plugins",
                               "bench").splitlines()}


def main(argv: Sequence[str] | None = None) -> int:
    options = parse_args(argv)
    _ensure_valgrind()
    from bench._harness import ACCESS_LOG_MODES as LOGS_BY_MODE
    from bench._harness import server_modes

    hostkit_log, hypercorn_log = LOGS_BY_MODE[options.access_log]
    modes = server_modes(hostkit_log, options.event_loop, env=measured_environment(options),
                         python=options.python, hypercorn_access_log=hypercorn_log)
    print(f"servers: {modes.describe_inprocess()}", flush=True)
    results: dict[str, Any] = {
        "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "settings": {key: str(value) for key, value in vars(options).items()
                     if key != "output"},
        "event_loop": {"event_loop": modes.event_loop,
                       "hostkit_arguments": modes.hostkit_arguments(),
                       "hypercorn_worker_class": modes.hypercorn_worker_class,
                       "description": modes.describe_event_loop()},
        "modes": modes.inprocess_settings(),
        "platform": platform.platform(), "cpus": os.cpu_count(),
        "source": _source(options.root), "measurements": {}}
    failed = False
    for measurement in options.measurements:
        figures = []
        for _ in range(1 if measurement == "stage" else options.rounds):
            with tempfile.TemporaryDirectory(prefix="hostkit-callgrind-") as work:
                try:
                    figure = measure(options, measurement, Path(work), modes)
                except Exception as error:  # noqa: BLE001 - report it, go on with the next
                    print(f"{measurement}: could not measure: {error}", file=sys.stderr)
                    failed = True
                    break
            figures.append(figure)
            print(f"{figure.name}: {figure.per_request:,.0f} instructions per request "
                  f"({figure.requests} requests, {figure.instructions:,} instructions"
                  + "".join(f", {key} {value:,.0f}" for key, value in figure.details.items())
                  + ")", flush=True)
        if figures:
            values = [figure.per_request for figure in figures]
            results["measurements"][measurement] = {
                "name": figures[0].name, "median_per_request": statistics.median(values),
                "rounds": [dataclasses.asdict(figure) for figure in figures]}
            if len(values) > 1:
                print(f"{figures[0].name}: median {statistics.median(values):,.0f}, "
                      f"spread {min(values):,.0f} .. {max(values):,.0f}")
    options.output.parent.mkdir(parents=True, exist_ok=True)
    options.output.write_text(json.dumps(results, indent=2) + "\n")
    print(f"results: {options.output}")
    return 1 if failed else 0


def _ensure_valgrind() -> None:
    """valgrind and callgrind_control on PATH, installed (Debian, as root) when missing."""
    if shutil.which("valgrind") and shutil.which("callgrind_control"):
        return
    from bench._harness import ensure_program

    ensure_program("valgrind", "valgrind", why=" (callgrind counts the instructions)")
    ensure_program("callgrind_control", "valgrind")


def _driver_main(argv: Sequence[str]) -> None:
    parser = argparse.ArgumentParser(prog="bench/instructions.py --drive-stage")
    parser.add_argument("--drive-stage", required=True, metavar="MODULE:CLASS")
    parser.add_argument("--app", required=True)
    parser.add_argument("--requests", type=int, required=True)
    parser.add_argument("--warmup-requests", type=int, required=True)
    options = parser.parse_args(argv)
    drive_stage(options.drive_stage, options.app, options.requests, options.warmup_requests)


if __name__ == "__main__":
    if "--drive-stage" in sys.argv:
        _driver_main(sys.argv[1:])
    else:
        sys.exit(main())
