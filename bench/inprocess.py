"""hostkit InProcess against bare hypercorn, side by side, on the same trivial app.

Run from the repository root::

    python -m bench.inprocess                 # 3 rounds x 10 s, wrk -t2 -c32
    python -m bench.inprocess --rounds 5 --duration 20 --connections 64
    python -m bench.inprocess --access-log none   # neither server writes an access log

Both servers run for the whole benchmark, each in its own process on a free 127.0.0.1 port,
its output going to a file (:class:`bench._harness.LogFileProgram`); each round loads one then
the other (warmup, then a measured wrk run), the order alternating between rounds so drift on
a shared machine hits both alike. What each server is told is a
:class:`bench._harness.ServerModes`: ``--access-log both`` (the default) has both write an
access log, hostkit its default combined line and hypercorn the same layout to a file
(``--access-logfile``); ``none`` neither; ``defaults`` each its own default (hostkit logs,
hypercorn does not); both run asyncio (``--event-loop``: or uvloop). Prints the medians, the
hostkit/hypercorn ratios (req/s, p50, p99, and each server process's CPU time per request,
from ``/proc``: steadier than req/s on a shared machine) and the request lines each log holds, and writes them with every
run to ``bench/results/inprocess.json``.
"""

from __future__ import annotations

import argparse
import contextlib
import sys
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from bench import cli
from bench._harness import (
    ACCESS_LOG_MODES,
    EVENT_LOOPS,
    REQUEST_LINE,
    BenchmarkError,
    ServerModes,
    check_answer,
    ensure_wrk,
    fetch,
    loopback_url,
    request_line_warnings,
    request_lines,
    server_environment,
    server_modes,
    start_server,
)
from bench.cli import Target
from tests.support.processes import free_port

TARGET_RATIO = 0.95
TARGET = f"hostkit InProcess >= {TARGET_RATIO:.2f}x bare hypercorn req/s"
HYPERCORN = "bare hypercorn"
HOSTKIT = "hostkit InProcess"
RESULTS_FILE = Path(__file__).resolve().parent / "results" / "inprocess.json"
APP = "bench.trivial_app:app"
START_TIMEOUT = 30.0
NAME_WIDTH = 18
#: the files in a run's log folder: each server's output, and hypercorn's access log.
HYPERCORN_OUTPUT = "bare-hypercorn.log"
HYPERCORN_ACCESS_LOG = "bare-hypercorn-access.log"
HOSTKIT_OUTPUT = "hostkit-InProcess.log"


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    """The benchmark's options; defaults give ``wrk -t2 -c32 -d10s``, 3 rounds."""
    parser = cli.benchmark_parser(
        "python -m bench.inprocess",
        f"Benchmark hostkit InProcess against bare hypercorn. Target: {TARGET}.", RESULTS_FILE)
    parser.add_argument("--access-log", choices=ACCESS_LOG_MODES, default="both",
                        help="both: hostkit's default access log and hypercorn "
                             "--access-logfile in hostkit's layout; none: neither "
                             "(hostkit --logging:access_log=false); defaults: each server's "
                             "own (hostkit logs, hypercorn does not) (default: both)")
    parser.add_argument("--event-loop", choices=EVENT_LOOPS, default="asyncio",
                        help="the event loop of hostkit (--event_loop=LOOP) and of bare "
                             "hypercorn (--worker-class LOOP) (default: asyncio)")
    return cli.parse_load_options(parser, argv)


# --- servers -------------------------------------------------------------------------------

def hypercorn_command(port: int, workers: int = 0, *, worker_class: str = "asyncio",
                      arguments: Sequence[str] = ()) -> list[str]:
    """Bare hypercorn: asyncio (or the ``worker_class`` given: ``uvloop``), no access log
    unless ``arguments`` (more of hypercorn's options) ask for one; one serving process
    (``--workers 0``), or that many worker processes under hypercorn's own parent process."""
    return [sys.executable, "-m", "hypercorn", "--bind", f"127.0.0.1:{port}",
            "--worker-class", worker_class, "--workers", str(workers), *arguments, APP]


def hostkit_command(port: int, arguments: Sequence[str] = ()) -> list[str]:
    """``Host.create_default_builder([*ARGUMENTS, "--urls=http://127.0.0.1:PORT"])
    .use_app(app).build().run()`` (:mod:`bench.hostkit_server`)."""
    return [sys.executable, "-m", "bench.hostkit_server", *arguments,
            f"--urls={loopback_url(port, '')}"]


def hostkit_environment() -> dict[str, str]:
    """hostkit's environment: no HOSTKIT_* but plugin autoload off, so only its defaults
    and its command line apply."""
    return server_environment({"HOSTKIT_DISABLE_PLUGIN_AUTOLOAD": "1"})


def start_hypercorn(cwd: Path, logs: Path, modes: ServerModes) -> Target:
    """Bare hypercorn with ``modes``' worker class and access log (to a file in ``logs``),
    its output to another file there."""
    port = free_port()
    arguments = modes.hypercorn_access_arguments(logs / HYPERCORN_ACCESS_LOG)
    argv = hypercorn_command(port, worker_class=modes.hypercorn_worker_class,
                             arguments=arguments)
    server = start_server(HYPERCORN, argv, f"Running on {loopback_url(port, '')}",
                          env=server_environment(), cwd=cwd, timeout=START_TIMEOUT,
                          log_file=logs / HYPERCORN_OUTPUT)
    return Target(HYPERCORN, loopback_url(port), [server])


def start_hostkit(cwd: Path, logs: Path, modes: ServerModes) -> Target:
    """hostkit with its defaults but ``modes``' arguments: no hostkit.toml in ``cwd``, no
    HOSTKIT_* but plugin autoload off; its output (its access log with it) to a file in
    ``logs``."""
    port = free_port()
    server = start_server(HOSTKIT, hostkit_command(port, modes.hostkit_arguments()),
                          f"Now listening on: {loopback_url(port, '')}",
                          env=hostkit_environment(), cwd=cwd, timeout=START_TIMEOUT,
                          log_file=logs / HOSTKIT_OUTPUT)
    return Target(HOSTKIT, loopback_url(port), [server])


def expected_logs(modes: ServerModes) -> dict[str, bool]:
    """Each file of a run's log folder and whether it should hold request lines in
    ``modes``: hostkit's output, hypercorn's access log, never hypercorn's output."""
    return {HOSTKIT_OUTPUT: modes.access_log, HYPERCORN_ACCESS_LOG: modes.hypercorn_access_log,
            HYPERCORN_OUTPUT: False}


def first_request_lines(logs: Path) -> dict[str, str]:
    """The first request line (:data:`bench._harness.REQUEST_LINE`) of each file in
    ``logs`` that has one: what each server's access log looks like."""
    found = {}
    for path in sorted(logs.iterdir()):
        with open(path, encoding="utf-8", errors="replace") as log:
            line = next((line.rstrip("\n") for line in log if REQUEST_LINE in line), None)
        if line is not None:
            found[path.name] = line
    return found


# --- reporting -----------------------------------------------------------------------------

def ratios(baseline: Target, candidate: Target) -> dict[str, float]:
    """candidate/baseline for the medians: req/s (higher is better), p50, p99 and the server
    process's CPU microseconds per request (lower)."""
    ratio = {field: candidate.median(field) / baseline.median(field) for field in cli.FIELDS}
    ratio["cpu_us_per_request"] = (cli.median_cpu_total(candidate)
                                   / cli.median_cpu_total(baseline))
    return ratio



def format_report(targets: list[Target], ratio: dict[str, float],
                  options: argparse.Namespace, modes: ServerModes, logged: dict[str, int],
                  samples: dict[str, str]) -> str:
    """The summary table, the verdict against the target, and the request lines logged."""
    met = ratio["requests_per_sec"] >= TARGET_RATIO
    lines = ["", f"target: {TARGET}", cli.load_line(options, rotated=False),
             f"servers: {modes.describe_inprocess()}", "",
             *cli.medians_table(targets, NAME_WIDTH)]
    lines += [
        "",
        f"hostkit/hypercorn req/s: {ratio['requests_per_sec']:.3f}x  "
        f"({'MET' if met else 'NOT MET'}: target >= {TARGET_RATIO:.2f}x)",
        f"hostkit/hypercorn p50:   {ratio['p50_ms']:.3f}x",
        f"hostkit/hypercorn p99:   {ratio['p99_ms']:.3f}x",
        f"hostkit/hypercorn CPU per request: {ratio['cpu_us_per_request']:.3f}x ("
        + ", ".join(f"{target.name} {cli.median_cpu_total(target):.0f} us"
                    for target in targets)
        + ")",
        "",
        "request lines logged (each server's output file; hypercorn's access log): "
        + ", ".join(f"{name} {count}" for name, count in logged.items()),
    ]
    lines += [f"  first in {name}: {line}" for name, line in samples.items()]
    lines += cli.warnings(targets)
    lines += request_line_warnings(logged, expected_logs(modes), str(modes.access_log_mode))
    lines += cli.loop_warnings(targets, modes.event_loop)
    return "\n".join(lines)


def results_document(targets: list[Target], ratio: dict[str, float],
                     options: argparse.Namespace, wrk: str, modes: ServerModes,
                     logged: dict[str, int], samples: dict[str, str]) -> dict[str, Any]:
    """Everything needed to compare this run with a later one, as JSON-ready data."""
    return {
        **cli.document_header("inprocess"),
        "target": TARGET,
        "target_ratio": TARGET_RATIO,
        "target_met": ratio["requests_per_sec"] >= TARGET_RATIO,
        "ratios": ratio,
        "modes": modes.inprocess_settings(),
        "request_lines_logged": logged,
        "first_request_lines": samples,
        "settings": cli.load_settings(options, "access_log", "event_loop"),
        "environment": cli.environment(wrk, ("hostkit", "hypercorn", "anyio", "h11")),
        "servers": {
            target.name: {"command": target.processes[0].args, "median": cli.medians(target),
                          "cpu_us_per_request": cli.median_cpu_total(target),
                          "uvloop_by_process": target.uvloop, "runs": cli.runs(target)}
            for target in targets
        },
    }


# --- main ----------------------------------------------------------------------------------

def main(argv: Sequence[str] | None = None) -> int:
    """Run the benchmark; 0 when it ran (whether or not the target is met), 1 on failure."""
    options = parse_args(argv)
    wrk = ensure_wrk()
    hostkit_log, hypercorn_log = ACCESS_LOG_MODES[options.access_log]
    modes = server_modes(hostkit_log, options.event_loop, env=hostkit_environment(),
                         hypercorn_access_log=hypercorn_log)
    print(f"servers: {modes.describe_inprocess()}", flush=True)
    try:
        with tempfile.TemporaryDirectory(prefix="hostkit-bench-") as root_name:
            root = Path(root_name)
            cwd, logs = root / "content", root / "logs"
            cwd.mkdir()
            logs.mkdir()
            with contextlib.ExitStack() as servers:
                targets = []
                for start in (start_hypercorn, start_hostkit):
                    target = start(cwd, logs, modes)
                    servers.enter_context(target.processes[0])
                    check_answer(target.name, fetch(target.url))
                    target.uvloop = cli.uvloop_processes(target)
                    print(f"{target.name}: pid {target.processes[0].pid}, {target.url}; "
                          f"{cli.loop_note(target)}", flush=True)
                    targets.append(target)
                cli.measure(wrk, targets, options, name_width=NAME_WIDTH, count_cpu=True)
            logged = request_lines(logs, logs.iterdir())  # once every server has stopped
            samples = first_request_lines(logs)
    except BenchmarkError as error:
        print(f"benchmark failed: {error}", file=sys.stderr)
        return 1
    hypercorn, hostkit = targets
    ratio = ratios(hypercorn, hostkit)
    print(format_report(targets, ratio, options, modes, logged, samples))
    cli.write_results(results_document(targets, ratio, options, wrk, modes, logged, samples),
                      options.output)
    return 0


if __name__ == "__main__":
    sys.exit(main())
