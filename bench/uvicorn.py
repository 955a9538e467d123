"""The uvicorn plugin (samples/hostkit_uvicorn) InProcess against bare uvicorn, with hostkit's
built-in hypercorn InProcess alongside, on the same trivial app.

Run from the repository root::

    python -m bench.uvicorn                   # 3 rounds x 10 s, wrk -t2 -c32
    python -m bench.uvicorn --rounds 5 --duration 20 --connections 64

Three servers run for the whole benchmark, each in its own process on a free 127.0.0.1 port:

- **bare uvicorn**: ``python -m uvicorn bench.trivial_app:app`` with httptools, the asyncio
  loop, no access log, no ``server`` header and no proxy-headers middleware (the settings the
  plugin gives uvicorn; hostkit applies forwarded headers itself, and only behind the module);
- **hostkit uvicorn**: ``python -m bench.hostkit_server --server=uvicorn
  --plugins=hostkit_uvicorn``: the plugin's uvicorn serving hostkit's server stage;
- **hostkit hypercorn**: ``python -m bench.hostkit_server``: hostkit's default server.

Each round loads every server (warmup, then a measured wrk run), the order rotated between
rounds so drift on a shared machine hits all alike. Prints every run, each round's ratios and
the medians, and writes them to ``bench/results/uvicorn.json``.
"""

from __future__ import annotations

import argparse
import contextlib
import statistics
import sys
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from bench import cli
from bench._harness import (
    BenchmarkError,
    check_answer,
    distribution_version,
    ensure_wrk,
    fetch,
    loopback_url,
    server_environment,
    start_server,
)
from bench.cli import Target
from bench.outofprocess import hostkit_environment
from tests.support.processes import free_port
from tests.support.source import source_state

BARE = "bare uvicorn"
PLUGIN = "hostkit uvicorn"
HYPERCORN = "hostkit hypercorn"
TARGET_RATIO = 0.95
TARGET = f"{PLUGIN} >= {TARGET_RATIO:.2f}x {BARE} req/s"
RESULTS_FILE = Path(__file__).resolve().parent / "results" / "uvicorn.json"
APP = "bench.trivial_app:app"
PROGRAM = "bench.hostkit_server"
START_TIMEOUT = 30.0
SOURCES = ("hostkit", "plugins", "samples/hostkit_uvicorn", "bench")
NAME_WIDTH = 20


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    """The benchmark's options; defaults give ``wrk -t2 -c32 -d10s``, 3 rounds."""
    parser = cli.benchmark_parser(
        "python -m bench.uvicorn",
        f"Benchmark the uvicorn plugin against bare uvicorn. Target: {TARGET}.", RESULTS_FILE)
    return cli.parse_load_options(parser, argv)


# --- servers -------------------------------------------------------------------------------

def bare_command(port: int, workers: int | None = None, *,
                 module: str = "uvicorn") -> list[str]:
    """uvicorn with the settings the plugin uses: httptools, asyncio, no access log, no
    ``server`` header, no proxy-headers middleware (its lifespan runs: the app has one);
    with ``workers``, that many worker processes under uvicorn's own parent process. It runs
    as ``python -m MODULE`` (another module taking uvicorn's command line)."""
    processes = [] if workers is None else ["--workers", str(workers)]
    return [sys.executable, "-m", module, "--host", "127.0.0.1", "--port", str(port),
            "--http", "httptools", "--loop", "asyncio", "--no-access-log",
            "--no-server-header", "--no-proxy-headers", "--lifespan", "on", *processes, APP]


def hostkit_command(port: int, *server: str) -> list[str]:
    return [sys.executable, "-m", PROGRAM, *server, f"--urls={loopback_url(port, '')}"]


def start(name: str, cwd: str) -> Target:
    """Start one of the three servers and wait for its ready line on stderr."""
    port = free_port()
    if name == BARE:
        argv, marker = bare_command(port), f"Uvicorn running on {loopback_url(port, '')}"
        env = server_environment()
    else:
        plugin = ["--server=uvicorn", "--plugins=hostkit_uvicorn"] if name == PLUGIN else []
        argv = hostkit_command(port, *plugin)
        marker = f"Now listening on: {loopback_url(port, '')}"
        env = hostkit_environment()  # defaults only; the plugin through the `plugins` setting
    server = start_server(name, argv, marker, env=env, cwd=cwd, timeout=START_TIMEOUT)
    return Target(name, loopback_url(port), [server])


# --- measuring -----------------------------------------------------------------------------


# --- reporting -----------------------------------------------------------------------------

def ratio(candidate: Target, baseline: Target, field: str, run: int | None = None) -> float:
    """candidate/baseline: the medians, or one round's runs (``run``)."""
    if run is None:
        return candidate.median(field) / baseline.median(field)
    return float(getattr(candidate.runs[run], field) / getattr(baseline.runs[run], field))


def compute_ratios(by_name: dict[str, Target], cpu: dict[str, list[float]]) -> dict[str, Any]:
    plugin, bare, hypercorn = by_name[PLUGIN], by_name[BARE], by_name[HYPERCORN]
    per_round = [{"plugin_bare_rps": ratio(plugin, bare, "requests_per_sec", index),
                  "plugin_hypercorn_rps": ratio(plugin, hypercorn, "requests_per_sec", index)}
                 for index in range(len(plugin.runs))]
    return {
        "plugin_bare_rps": ratio(plugin, bare, "requests_per_sec"),
        "plugin_bare_p50": ratio(plugin, bare, "p50_ms"),
        "plugin_bare_p99": ratio(plugin, bare, "p99_ms"),
        "plugin_hypercorn_rps": ratio(plugin, hypercorn, "requests_per_sec"),
        "per_round": per_round,
        "plugin_bare_rps_median_of_rounds": statistics.median(
            round_ratios["plugin_bare_rps"] for round_ratios in per_round),
        "cpu_us_per_request": {name: statistics.median(runs) for name, runs in cpu.items()},
        "plugin_bare_cpu": statistics.median(cpu[PLUGIN]) / statistics.median(cpu[BARE]),
    }


def format_report(targets: list[Target], ratios: dict[str, Any],
                  options: argparse.Namespace) -> str:
    met = ratios["plugin_bare_rps"] >= TARGET_RATIO
    lines = ["", f"target: {TARGET}", cli.load_line(options, rotated=True), ""]
    for index, round_ratios in enumerate(ratios["per_round"], 1):
        lines.append(f"round {index}: {PLUGIN}/{BARE} req/s "
                     f"{round_ratios['plugin_bare_rps']:.3f}x, {PLUGIN}/{HYPERCORN} req/s "
                     f"{round_ratios['plugin_hypercorn_rps']:.3f}x")
    lines += ["", *cli.medians_table(targets, NAME_WIDTH)]
    lines += [
        "",
        f"{PLUGIN}/{BARE} req/s:       {ratios['plugin_bare_rps']:.3f}x  "
        f"({'MET' if met else 'NOT MET'}: target >= {TARGET_RATIO:.2f}x)",
        f"{PLUGIN}/{BARE} req/s, median of the rounds' ratios: "
        f"{ratios['plugin_bare_rps_median_of_rounds']:.3f}x",
        f"{PLUGIN}/{BARE} p50:         {ratios['plugin_bare_p50']:.3f}x",
        f"{PLUGIN}/{BARE} p99:         {ratios['plugin_bare_p99']:.3f}x",
        f"{PLUGIN}/{HYPERCORN} req/s:  {ratios['plugin_hypercorn_rps']:.3f}x  (reference)",
        "",
        "server CPU per request (median): " + ", ".join(
            f"{name} {value:.1f} us" for name, value in ratios["cpu_us_per_request"].items()),
        f"{PLUGIN}/{BARE} CPU per request: {ratios['plugin_bare_cpu']:.3f}x "
        "(the cost, less sensitive than req/s to what else the machine runs)",
    ]
    return "\n".join(lines + cli.warnings(targets))


def results_document(targets: list[Target], ratios: dict[str, Any], cpu: dict[str, list[float]],
                     source: dict[str, Any], options: argparse.Namespace,
                     wrk: str) -> dict[str, Any]:
    return {
        **cli.document_header("uvicorn"),
        "target": TARGET,
        "target_ratio": TARGET_RATIO,
        "target_met": ratios["plugin_bare_rps"] >= TARGET_RATIO,
        "ratios": ratios,
        "settings": cli.load_settings(options),
        "environment": cli.environment(wrk, ("hostkit", "hostkit-uvicorn", "uvicorn",
                                             "httptools", "hypercorn", "anyio")),
        "servers": {
            target.name: {
                "command": target.processes[0].args,
                "median": cli.medians(target),
                "runs": cli.runs(target),
                "cpu_us_per_request": cpu[target.name],
            }
            for target in targets
        },
        "source": source,
    }


# --- main ----------------------------------------------------------------------------------

def main(argv: Sequence[str] | None = None) -> int:
    """Run the benchmark; 0 when it ran (whether or not the target is met), 1 on failure."""
    options = parse_args(argv)
    wrk = ensure_wrk()
    for distribution in ("uvicorn", "hostkit-uvicorn"):
        if distribution_version(distribution) == "not installed":
            raise SystemExit(f"{distribution} is not installed: run `make setup` (it installs "
                             "samples/hostkit_uvicorn and uvicorn)")
    source = {"at_start": source_state(*SOURCES)}
    try:
        with tempfile.TemporaryDirectory(prefix="hostkit-bench-") as cwd, \
                contextlib.ExitStack() as servers:
            targets = []
            for name in (BARE, PLUGIN, HYPERCORN):
                target = start(name, cwd)
                servers.enter_context(target.processes[0])
                print(f"{name}: pid {target.processes[0].pid}, {target.url}", flush=True)
                check_answer(name, fetch(target.url))
                targets.append(target)
            cli.measure(wrk, targets, options, name_width=22, count_cpu=True)
            cpu = {target.name: cli.cpu_totals(target) for target in targets}
    except BenchmarkError as error:
        print(f"benchmark failed: {error}", file=sys.stderr)
        return 1
    source["at_end"] = source_state(*SOURCES)
    ratios = compute_ratios({target.name: target for target in targets}, cpu)
    print(format_report(targets, ratios, options))
    if source["at_start"]["sha256"] != source["at_end"]["sha256"]:
        print("WARNING: source files changed during the run", file=sys.stderr)
    cli.write_results(results_document(targets, ratios, cpu, source, options, wrk),
                      options.output)
    return 0


if __name__ == "__main__":
    sys.exit(main())
