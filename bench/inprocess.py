"""hostkit InProcess against bare hypercorn, side by side, on the same trivial app.

Run from the repository root::

    python -m bench.inprocess                 # 3 rounds x 10 s, wrk -t2 -c32
    python -m bench.inprocess --rounds 5 --duration 20 --connections 64

Both servers run for the whole benchmark, each in its own process on a free 127.0.0.1 port;
each round loads one then the other (warmup, then a measured wrk run), the order alternating
between rounds so drift on a shared machine hits both alike. Prints the medians and the
hostkit/hypercorn ratios, and writes them with every run to ``bench/results/inprocess.json``.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import datetime
import json
import os
import platform
import statistics
import sys
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from bench._harness import (
    distribution_version,
    check_answer,
    benchmark_parser,
    parse_load_options,
    BenchmarkError,
    ServerProcess,
    WrkResult,
    ensure_wrk,
    fetch,
    free_port,
    loopback_url,
    run_wrk,
    server_environment,
    start_server,
    wrk_command,
    wrk_version,
)

TARGET_RATIO = 0.95
TARGET = f"hostkit InProcess >= {TARGET_RATIO:.2f}x bare hypercorn req/s"
HYPERCORN = "bare hypercorn"
HOSTKIT = "hostkit InProcess"
RESULTS_FILE = Path(__file__).resolve().parent / "results" / "inprocess.json"
APP = "bench.trivial_app:app"
START_TIMEOUT = 30.0


@dataclasses.dataclass
class Target:
    """One server under test and its measured runs."""

    name: str
    server: ServerProcess
    url: str
    runs: list[WrkResult] = dataclasses.field(default_factory=list)

    def median(self, field: str) -> float:
        """The median of one :class:`WrkResult` field over the measured runs."""
        values: list[float] = [getattr(run, field) for run in self.runs]
        return statistics.median(values)


# --- command line --------------------------------------------------------------------------

def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    """The benchmark's options; defaults give ``wrk -t2 -c32 -d10s``, 3 rounds."""
    parser = benchmark_parser(
        "python -m bench.inprocess",
        f"Benchmark hostkit InProcess against bare hypercorn. Target: {TARGET}.", RESULTS_FILE)
    return parse_load_options(parser, argv)


# --- servers -------------------------------------------------------------------------------

def hypercorn_command(port: int) -> list[str]:
    """Bare hypercorn: asyncio, one serving process (``--workers 0``), no access log."""
    return [sys.executable, "-m", "hypercorn", "--bind", f"127.0.0.1:{port}",
            "--worker-class", "asyncio", "--workers", "0", APP]


def hostkit_command(port: int) -> list[str]:
    """``Host.create_default_builder(["--urls=http://127.0.0.1:PORT"]).use_app(app)...run()``."""
    return [sys.executable, "-m", "bench.hostkit_inprocess_server", str(port)]


def start_hypercorn(cwd: str) -> Target:
    port = free_port()
    server = start_server(HYPERCORN, hypercorn_command(port),
                          f"Running on {loopback_url(port, '')}",
                          env=server_environment(drop_prefixes=("HOSTKIT_",)), cwd=cwd,
                          timeout=START_TIMEOUT)
    return Target(HYPERCORN, server, loopback_url(port))


def start_hostkit(cwd: str) -> Target:
    """hostkit with defaults only: no hostkit.toml in ``cwd``, no HOSTKIT_* but the one below."""
    port = free_port()
    env = server_environment({"HOSTKIT_DISABLE_PLUGIN_AUTOLOAD": "1"},
                             drop_prefixes=("HOSTKIT_",))
    server = start_server(HOSTKIT, hostkit_command(port),
                          f"Now listening on: {loopback_url(port, '')}",
                          env=env, cwd=cwd, timeout=START_TIMEOUT)
    return Target(HOSTKIT, server, loopback_url(port))


# --- measuring -----------------------------------------------------------------------------

def load(wrk: str, target: Target, options: argparse.Namespace, duration_s: int) -> WrkResult:
    return run_wrk(wrk, target.url, threads=options.threads,
                   connections=options.connections, duration_s=duration_s)


def measure(wrk: str, targets: list[Target], options: argparse.Namespace) -> None:
    """Every round: warmup + measured run per target, the first target alternating."""
    for round_index in range(options.rounds):
        order = targets if round_index % 2 == 0 else targets[::-1]
        for target in order:
            load(wrk, target, options, options.warmup)
            result = load(wrk, target, options, options.duration)
            target.runs.append(result)
            print(f"round {round_index + 1}/{options.rounds}  {target.name:<18} "
                  f"{result.requests_per_sec:>9.0f} req/s  p50 {result.p50_ms:6.2f} ms  "
                  f"p99 {result.p99_ms:6.2f} ms" + _errors_note(result), flush=True)


def _errors_note(result: WrkResult) -> str:
    if not result.errors:
        return ""
    return (f"  ({result.socket_errors} socket errors, "
            f"{result.non_2xx_3xx} non-2xx/3xx: results not comparable)")


# --- reporting -----------------------------------------------------------------------------

def ratios(baseline: Target, candidate: Target) -> dict[str, float]:
    """candidate/baseline for the medians: req/s (higher is better), p50 and p99 (lower)."""
    return {field: candidate.median(field) / baseline.median(field)
            for field in ("requests_per_sec", "p50_ms", "p99_ms")}


def format_report(targets: list[Target], ratio: dict[str, float],
                  options: argparse.Namespace) -> str:
    """The summary table and the verdict against the target."""
    command = " ".join(wrk_command("wrk", "http://127.0.0.1:PORT/", threads=options.threads,
                                   connections=options.connections,
                                   duration_s=options.duration))
    met = ratio["requests_per_sec"] >= TARGET_RATIO
    lines = [
        "",
        f"target: {TARGET}",
        f"load: {command}; {options.warmup} s warmup before each run; "
        f"median of {options.rounds} rounds",
        "",
        f"{'server':<18} {'req/s':>10} {'p50 ms':>8} {'p99 ms':>8}",
    ]
    for target in targets:
        lines.append(f"{target.name:<18} {target.median('requests_per_sec'):>10.0f} "
                     f"{target.median('p50_ms'):>8.2f} {target.median('p99_ms'):>8.2f}")
    lines += [
        "",
        f"hostkit/hypercorn req/s: {ratio['requests_per_sec']:.3f}x  "
        f"({'MET' if met else 'NOT MET'}: target >= {TARGET_RATIO:.2f}x)",
        f"hostkit/hypercorn p50:   {ratio['p50_ms']:.3f}x",
        f"hostkit/hypercorn p99:   {ratio['p99_ms']:.3f}x",
    ]
    if any(run.errors for target in targets for run in target.runs):
        lines.append("WARNING: some runs had socket errors or non-2xx/3xx responses")
    return "\n".join(lines)


def results_document(targets: list[Target], ratio: dict[str, float],
                     options: argparse.Namespace, wrk: str) -> dict[str, Any]:
    """Everything needed to compare this run with a later one, as JSON-ready data."""
    return {
        "benchmark": "inprocess",
        "finished_at": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "target": TARGET,
        "target_ratio": TARGET_RATIO,
        "target_met": ratio["requests_per_sec"] >= TARGET_RATIO,
        "ratios": ratio,
        "settings": {
            "rounds": options.rounds, "duration_s": options.duration,
            "warmup_s": options.warmup, "connections": options.connections,
            "threads": options.threads,
        },
        "environment": {
            "python": platform.python_version(), "platform": platform.platform(),
            "cpus": os.cpu_count(), "wrk": wrk_version(wrk),
            **{name: distribution_version(name)
               for name in ("hostkit", "hypercorn", "anyio", "h11")},
        },
        "servers": {
            target.name: {
                "command": target.server.argv,
                "median": {field: target.median(field)
                           for field in ("requests_per_sec", "p50_ms", "p99_ms")},
                "runs": [dataclasses.asdict(run) for run in target.runs],
            }
            for target in targets
        },
    }


def write_results(document: dict[str, Any], path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(document, indent=2) + "\n")


# --- main ----------------------------------------------------------------------------------

def main(argv: Sequence[str] | None = None) -> int:
    """Run the benchmark; 0 when it ran (whether or not the target is met), 1 on failure."""
    options = parse_args(argv)
    wrk = ensure_wrk()
    try:
        with tempfile.TemporaryDirectory(prefix="hostkit-bench-") as cwd, \
                contextlib.ExitStack() as servers:
            targets = []
            for start in (start_hypercorn, start_hostkit):
                target = start(cwd)
                servers.enter_context(target.server)
                print(f"{target.name}: pid {target.server.pid}, {target.url}", flush=True)
                check_answer(target.name, fetch(target.url))
                targets.append(target)
            measure(wrk, targets, options)
    except BenchmarkError as error:
        print(f"benchmark failed: {error}", file=sys.stderr)
        return 1
    hypercorn, hostkit = targets
    ratio = ratios(hypercorn, hostkit)
    print(format_report(targets, ratio, options))
    write_results(results_document(targets, ratio, options, wrk), options.output)
    print(f"\nresults: {options.output}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
