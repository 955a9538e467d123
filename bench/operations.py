"""What the operations features cost (issue 15): the access log on against off, and metrics
on against off, InProcess and OutOfProcess, side by side in one run, on the same trivial app.

Run from the repository root::

    python -m bench.operations                     # 3 rounds x 5 s, wrk -t2 -c32
    python -m bench.operations --rounds 5 --duration 10 --only inprocess

Six hostkit targets (``--only`` keeps one model's three), each ``python -m
bench.hostkit_server`` on a free 127.0.0.1 port, all up for the whole load phase:

- **defaults**: hostkit's defaults (the access log is on, no metrics);
- **no access log**: ``--logging:access_log=false``;
- **metrics**: the defaults and ``--metrics:urls=http://127.0.0.1:PORT`` (a second port);

InProcess, and OutOfProcess (``--hosting_model=OutOfProcess``: the front and its one child).
Every round loads every target (warmup, then a measured wrk run) in that order, reversed
every other round, so each pair compared sits side by side and swaps places; the CPU time of
each target's processes is read around each run (CPU microseconds per request, steadier than
req/s on a shared machine). At the end the benchmark checks that what was measured was on:
the metrics target's ``/metrics`` counts at least the requests wrk made, the access-log
targets wrote a line per request and the others none. Writes
``bench/results/operations.json``.
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

from prometheus_client.parser import text_string_to_metric_families

from bench import cli
from bench._harness import (
    BenchmarkError,
    check_answer,
    ensure_wrk,
    fetch,
    loopback_url,
    start_server,
)
from bench.cli import Target
from bench.outofprocess import hostkit_environment, listening_marker
from tests.support.processes import free_port
from tests.support.source import source_state

#: Each feature may cost at most this share of req/s (issue 15).
TARGET_RATIO = 0.95
TARGET = (f"access log on/off and metrics on/off each >= {TARGET_RATIO:.2f}x req/s, "
          "InProcess and OutOfProcess")
RESULTS_FILE = Path(__file__).resolve().parent / "results" / "operations.json"
MODELS = {"inprocess": "InProcess", "outofprocess": "OutOfProcess"}
DEFAULTS, NO_ACCESS_LOG, METRICS = "defaults", "no access log", "metrics"
#: What a request's access log line holds (the trivial app answers GET / with 200).
ACCESS_LINE = '"GET / HTTP/1.1" 200'
START_TIMEOUT = 30.0
SOURCES = ("hostkit", "plugins", "bench")
NAME_WIDTH = 28


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    """The benchmark's options; defaults give ``wrk -t2 -c32 -d5s``, 3 rounds."""
    parser = cli.benchmark_parser(
        "python -m bench.operations",
        f"Benchmark the access log and metrics on against off. Target: {TARGET}.",
        RESULTS_FILE, duration=5)
    parser.add_argument("--only", choices=sorted(MODELS), nargs="+", default=sorted(MODELS),
                        help="the hosting models to measure (default: both)")
    return cli.parse_load_options(parser, argv)


# --- targets -------------------------------------------------------------------------------

def target_name(model: str, variant: str) -> str:
    return f"{MODELS[model]}, {variant}"


def start(model: str, variant: str, cwd: str) -> tuple[Target, str | None]:
    """One target, checked with a GET (which also starts an OutOfProcess front's child);
    and the URL of its metrics (``None`` without)."""
    port = free_port()
    arguments = [f"--urls={loopback_url(port, '')}"]
    if model == "outofprocess":
        arguments.append("--hosting_model=OutOfProcess")
    metrics_url = None
    if variant == NO_ACCESS_LOG:
        arguments.append("--logging:access_log=false")
    elif variant == METRICS:
        metrics_url = loopback_url(free_port(), "")
        arguments.append(f"--metrics:urls={metrics_url}")
    name = target_name(model, variant)
    server = start_server(name, [sys.executable, "-m", "bench.hostkit_server", *arguments],
                          listening_marker(port), env=hostkit_environment(), cwd=cwd,
                          timeout=START_TIMEOUT)
    target = Target(name, loopback_url(port), [server])
    try:
        check_answer(name, fetch(target.url, timeout=START_TIMEOUT))
    except BaseException:
        server.stop(timeout=5)
        raise
    return target, metrics_url


# --- checking what was measured ------------------------------------------------------------

def counted_requests(metrics_url: str) -> float:
    """``hostkit_requests_total`` over every label, from ``metrics_url``'s ``/metrics``."""
    reply = fetch(metrics_url + "/metrics")
    if reply.status != 200:
        raise BenchmarkError(f"{metrics_url}/metrics answered {reply.status}")
    return sum(sample.value for family in text_string_to_metric_families(reply.body.decode())
               for sample in family.samples if sample.name == "hostkit_requests_total")


def check_features(targets: list[Target], metrics_urls: dict[str, str]) -> dict[str, Any]:
    """Whether each feature measured was on (and off where it should be): the metrics count
    every request wrk made, the access log has a line per request. Returns what was seen;
    raises :class:`BenchmarkError` when a feature was not as measured."""
    seen: dict[str, Any] = {}
    for target in targets:
        made = sum(run.requests for run in target.runs)  # the measured runs only
        lines = sum(1 for line in target.processes[0].lines if ACCESS_LINE in line)
        seen[target.name] = {"access_log_lines": lines, "measured_requests": made}
        logs = not target.name.endswith(NO_ACCESS_LOG)
        if logs and lines < made or not logs and lines:
            raise BenchmarkError(f"{target.name}: {lines} access log lines for {made} "
                                 "measured requests")
        if target.name in metrics_urls:
            counted = counted_requests(metrics_urls[target.name])
            seen[target.name]["metrics_requests"] = counted
            if counted < made:
                raise BenchmarkError(f"{target.name}: the metrics counted {counted:.0f} "
                                     f"requests, wrk made {made} in the measured runs alone")
    return seen


# --- reporting -----------------------------------------------------------------------------


def compute_ratios(by_name: dict[str, Target], models: Sequence[str]) -> dict[str, Any]:
    """Per model: the feature on / off for req/s (the target), per round and of the
    medians, and for CPU per request (on / off: above 1 means it costs)."""
    ratios: dict[str, Any] = {}
    for model in models:
        defaults = by_name[target_name(model, DEFAULTS)]
        for feature, on, off in (
                ("access_log", defaults, by_name[target_name(model, NO_ACCESS_LOG)]),
                ("metrics", by_name[target_name(model, METRICS)], defaults)):
            per_round = [on_run.requests_per_sec / off_run.requests_per_sec
                         for on_run, off_run in zip(on.runs, off.runs)]
            ratios[f"{model}_{feature}"] = {
                "on": on.name, "off": off.name,
                "rps": on.median("requests_per_sec") / off.median("requests_per_sec"),
                "rps_per_round": per_round,
                "rps_median_of_rounds": statistics.median(per_round),
                "cpu_per_request": (cli.median_cpu_total(on)
                                    / cli.median_cpu_total(off)),
            }
    return ratios


def format_report(targets: list[Target], ratios: dict[str, Any],
                  options: argparse.Namespace) -> str:
    lines = ["", f"target: {TARGET}",
             cli.load_line(options, order="order reversed every other round"), "",
             *cli.medians_table(targets, NAME_WIDTH), "",
             "server CPU per request (median): " + ", ".join(
                 f"{target.name} {cli.median_cpu_total(target):.0f} us"
                 for target in targets), ""]
    for key, ratio in ratios.items():
        met = ratio["rps"] >= TARGET_RATIO
        rounds = ", ".join(f"{value:.3f}" for value in ratio["rps_per_round"])
        lines.append(
            f"{key:<24} on/off req/s {ratio['rps']:.3f}x ({'MET' if met else 'NOT MET'}: "
            f">= {TARGET_RATIO:.2f}x); rounds {rounds}; median of rounds "
            f"{ratio['rps_median_of_rounds']:.3f}x; CPU per request on/off "
            f"{ratio['cpu_per_request']:.3f}x")
    return "\n".join(lines + cli.warnings(targets))


def results_document(targets: list[Target], ratios: dict[str, Any], seen: dict[str, Any],
                     source: dict[str, Any], options: argparse.Namespace,
                     wrk: str) -> dict[str, Any]:
    return {
        **cli.document_header("operations"),
        "target": TARGET,
        "target_ratio": TARGET_RATIO,
        "targets_met": {key: ratio["rps"] >= TARGET_RATIO for key, ratio in ratios.items()},
        "ratios": ratios,
        "settings": cli.load_settings(options, "only"),
        "environment": cli.environment(wrk, ("hostkit", "hypercorn", "anyio", "h11",
                                             "prometheus_client")),
        "servers": {
            target.name: {
                "command": target.processes[0].args,
                "median": cli.medians(target),
                "runs": cli.runs(target),
                "cpu_us_per_request": cli.cpu_totals(target),
                "checked": seen[target.name],
            }
            for target in targets
        },
        "source": source,
    }


# --- main ----------------------------------------------------------------------------------

def main(argv: Sequence[str] | None = None) -> int:
    """Run the benchmark; 0 when it ran (whether or not the targets are met), 1 on failure."""
    options = parse_args(argv)
    wrk = ensure_wrk()
    models = [model for model in MODELS if model in options.only]
    source = {"at_start": source_state(*SOURCES)}
    try:
        with tempfile.TemporaryDirectory(prefix="hostkit-bench-") as cwd, \
                contextlib.ExitStack() as servers:
            targets, metrics_urls = [], {}
            for model in models:
                for variant in (NO_ACCESS_LOG, DEFAULTS, METRICS):
                    target, metrics_url = start(model, variant, cwd)
                    servers.enter_context(target.processes[0])
                    if metrics_url is not None:
                        metrics_urls[target.name] = metrics_url
                    print(f"{target.name}: pid {target.processes[0].pid}, {target.url}",
                          flush=True)
                    targets.append(target)
            cli.measure(wrk, targets, options, name_width=NAME_WIDTH, count_cpu=True,
                        cpu_detail=False, order=cli.alternations)
            seen = check_features(targets, metrics_urls)
    except BenchmarkError as error:
        print(f"benchmark failed: {error}", file=sys.stderr)
        return 1
    source["at_end"] = source_state(*SOURCES)
    ratios = compute_ratios({target.name: target for target in targets}, models)
    print(format_report(targets, ratios, options))
    if source["at_start"]["sha256"] != source["at_end"]["sha256"]:
        print("WARNING: source files changed during the run", file=sys.stderr)
    cli.write_results(results_document(targets, ratios, seen, source, options, wrk),
                      options.output)
    return 0


if __name__ == "__main__":
    sys.exit(main())
