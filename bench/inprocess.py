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
import sys
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from bench import cli
from bench._harness import (
    BenchmarkError,
    check_answer,
    ensure_wrk,
    fetch,
    loopback_url,
    server_environment,
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


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    """The benchmark's options; defaults give ``wrk -t2 -c32 -d10s``, 3 rounds."""
    parser = cli.benchmark_parser(
        "python -m bench.inprocess",
        f"Benchmark hostkit InProcess against bare hypercorn. Target: {TARGET}.", RESULTS_FILE)
    return cli.parse_load_options(parser, argv)


# --- servers -------------------------------------------------------------------------------

def hypercorn_command(port: int, workers: int = 0, *,
                      worker_class: str = "asyncio") -> list[str]:
    """Bare hypercorn: asyncio (or the ``worker_class`` given: ``uvloop``), no access log; one
    serving process (``--workers 0``), or that many worker processes under hypercorn's own
    parent process."""
    return [sys.executable, "-m", "hypercorn", "--bind", f"127.0.0.1:{port}",
            "--worker-class", worker_class, "--workers", str(workers), APP]


def hostkit_command(port: int) -> list[str]:
    """``Host.create_default_builder(["--urls=http://127.0.0.1:PORT"]).use_app(app)...run()``."""
    return [sys.executable, "-m", "bench.hostkit_inprocess_server", str(port)]


def start_hypercorn(cwd: str) -> Target:
    port = free_port()
    server = start_server(HYPERCORN, hypercorn_command(port),
                          f"Running on {loopback_url(port, '')}",
                          env=server_environment(), cwd=cwd, timeout=START_TIMEOUT)
    return Target(HYPERCORN, loopback_url(port), [server])


def start_hostkit(cwd: str) -> Target:
    """hostkit with defaults only: no hostkit.toml in ``cwd``, no HOSTKIT_* but the one below."""
    port = free_port()
    env = server_environment({"HOSTKIT_DISABLE_PLUGIN_AUTOLOAD": "1"})
    server = start_server(HOSTKIT, hostkit_command(port),
                          f"Now listening on: {loopback_url(port, '')}",
                          env=env, cwd=cwd, timeout=START_TIMEOUT)
    return Target(HOSTKIT, loopback_url(port), [server])


# --- reporting -----------------------------------------------------------------------------

def ratios(baseline: Target, candidate: Target) -> dict[str, float]:
    """candidate/baseline for the medians: req/s (higher is better), p50 and p99 (lower)."""
    return {field: candidate.median(field) / baseline.median(field) for field in cli.FIELDS}


def format_report(targets: list[Target], ratio: dict[str, float],
                  options: argparse.Namespace) -> str:
    """The summary table and the verdict against the target."""
    met = ratio["requests_per_sec"] >= TARGET_RATIO
    lines = ["", f"target: {TARGET}", cli.load_line(options, rotated=False), "",
             *cli.medians_table(targets, NAME_WIDTH)]
    lines += [
        "",
        f"hostkit/hypercorn req/s: {ratio['requests_per_sec']:.3f}x  "
        f"({'MET' if met else 'NOT MET'}: target >= {TARGET_RATIO:.2f}x)",
        f"hostkit/hypercorn p50:   {ratio['p50_ms']:.3f}x",
        f"hostkit/hypercorn p99:   {ratio['p99_ms']:.3f}x",
    ]
    return "\n".join(lines + cli.warnings(targets))


def results_document(targets: list[Target], ratio: dict[str, float],
                     options: argparse.Namespace, wrk: str) -> dict[str, Any]:
    """Everything needed to compare this run with a later one, as JSON-ready data."""
    return {
        **cli.document_header("inprocess"),
        "target": TARGET,
        "target_ratio": TARGET_RATIO,
        "target_met": ratio["requests_per_sec"] >= TARGET_RATIO,
        "ratios": ratio,
        "settings": cli.load_settings(options),
        "environment": cli.environment(wrk, ("hostkit", "hypercorn", "anyio", "h11")),
        "servers": {
            target.name: {"command": target.processes[0].args, "median": cli.medians(target),
                          "runs": cli.runs(target)}
            for target in targets
        },
    }


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
                servers.enter_context(target.processes[0])
                print(f"{target.name}: pid {target.processes[0].pid}, {target.url}", flush=True)
                check_answer(target.name, fetch(target.url))
                targets.append(target)
            cli.measure(wrk, targets, options, name_width=NAME_WIDTH, count_cpu=False)
    except BenchmarkError as error:
        print(f"benchmark failed: {error}", file=sys.stderr)
        return 1
    hypercorn, hostkit = targets
    ratio = ratios(hypercorn, hostkit)
    print(format_report(targets, ratio, options))
    cli.write_results(results_document(targets, ratio, options, wrk), options.output)
    return 0


if __name__ == "__main__":
    sys.exit(main())
