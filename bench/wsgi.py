"""A WSGI hello app: hostkit InProcess against ``gunicorn -w 1 --threads 10``, side by side.

Run from the repository root::

    python -m bench.wsgi                      # 3 rounds x 10 s, wrk -t2 -c32
    python -m bench.wsgi --rounds 5 --duration 20

Every server runs for the whole benchmark on a free 127.0.0.1 port and serves the same app
object, :func:`app` (200, ``Hello, world!``, ``text/plain``, ``content-length: 13``):

- **gunicorn**: ``gunicorn -w 1 --threads 10 bench.wsgi:app`` (its gthread worker: one
  process, 10 threads; no access log, its default);
- **hostkit InProcess (WSGI)**: ``python -m bench.wsgi_server --urls=...``, the default builder
  with ``use_app(app)`` (hostkit's WSGI adapter, ``[server] wsgi_threads`` = 10, its
  default), only hostkit's defaults (the access log on; ``--no-access-log`` turns it off);
- **hostkit InProcess (ASGI)**, for reference: ``python -m bench.hostkit_server``, the same
  hello as ASGI (:mod:`bench.trivial_app`), so the difference from the WSGI line is what the
  adapter costs;
- **granian (WSGI)**, when ``granian`` is installed (the ``bench`` extra):
  ``granian --interface wsgi --workers 1 --blocking-threads 10``, for reference.

Each round loads every server in turn (a warmup, then the measured wrk run), the order
rotating between rounds; CPU microseconds per request of each server's processes are
counted. Prints the medians and the ratios to gunicorn, and writes everything to
``bench/results/wsgi.json``. Target: hostkit InProcess (WSGI) >= 0.9x gunicorn req/s.
"""

from __future__ import annotations

import argparse
import contextlib
import importlib.util
import sys
import tempfile
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import Any

BODY = b"Hello, world!"
HEADERS = [("Content-Type", "text/plain"), ("Content-Length", str(len(BODY)))]


def app(environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
    """The WSGI hello every server here serves."""
    start_response("200 OK", HEADERS)
    return [BODY]


TARGET_RATIO = 0.9
TARGET = f"hostkit InProcess (WSGI) >= {TARGET_RATIO:.2f}x gunicorn -w 1 --threads 10 req/s"
GUNICORN = "gunicorn gthread"
HOSTKIT = "hostkit WSGI"
HOSTKIT_ASGI = "hostkit ASGI"
GRANIAN = "granian WSGI"
RESULTS_FILE = Path(__file__).resolve().parent / "results" / "wsgi.json"
START_TIMEOUT = 30.0
NAME_WIDTH = 16


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    from bench import cli

    parser = cli.benchmark_parser(
        "python -m bench.wsgi",
        f"Benchmark hostkit's WSGI hosting against gunicorn. Target: {TARGET}.", RESULTS_FILE)
    parser.add_argument("--no-granian", action="store_true",
                        help="leave granian out even when it is installed")
    parser.add_argument("--no-access-log", action="store_true",
                        help="run hostkit with --logging:access_log=false (gunicorn and "
                             "granian write none by default)")
    return cli.parse_load_options(parser, argv)


def start_targets(cwd: str, granian: bool, hostkit_args: Sequence[str] = ()) -> list[Any]:
    """Start every server; each waits for its ready line."""
    from bench._harness import loopback_url, server_environment, start_server
    from bench.cli import Target
    from tests.support.processes import free_port

    python = sys.executable
    commands = [
        (GUNICORN, lambda port: [python, "-m", "gunicorn", "-w", "1", "--threads", "10",
                                 "--bind", f"127.0.0.1:{port}", "bench.wsgi:app"],
         lambda port: "Booting worker", {}),
        (HOSTKIT, lambda port: [python, "-m", "bench.wsgi_server",
                                f"--urls={loopback_url(port, '')}", *hostkit_args],
         lambda port: f"Now listening on: {loopback_url(port, '')}",
         {"HOSTKIT_DISABLE_PLUGIN_AUTOLOAD": "1"}),
        (HOSTKIT_ASGI, lambda port: [python, "-m", "bench.hostkit_server",
                                     f"--urls={loopback_url(port, '')}", *hostkit_args],
         lambda port: f"Now listening on: {loopback_url(port, '')}",
         {"HOSTKIT_DISABLE_PLUGIN_AUTOLOAD": "1"}),
    ]
    if granian:
        commands.append(
            (GRANIAN, lambda port: [python, "-m", "granian", "--interface", "wsgi",
                                    "--workers", "1", "--blocking-threads", "10", "--host",
                                    "127.0.0.1", "--port", str(port), "--no-access-log",
                                    "bench.wsgi:app"],
             lambda port: "Started worker", {}))
    targets = []
    for name, command, marker, extra in commands:
        port = free_port()
        server = start_server(name, command(port), marker(port),
                              env=server_environment(extra), cwd=cwd, timeout=START_TIMEOUT)
        targets.append(Target(name, loopback_url(port), [server]))
    return targets



def format_report(targets: list[Any], options: argparse.Namespace) -> tuple[str, dict[str, Any]]:
    """The table, the ratios to gunicorn and the verdict; and the ratios as data."""
    from bench import cli

    by_name = {target.name: target for target in targets}
    gunicorn = by_name[GUNICORN]
    ratios = {target.name: {
        "requests_per_sec": target.median("requests_per_sec")
        / gunicorn.median("requests_per_sec"),
        "cpu_us_per_request": (cli.median_cpu_total(target)
                               / max(cli.median_cpu_total(gunicorn), 1e-9))}
        for target in targets if target is not gunicorn}
    met = ratios[HOSTKIT]["requests_per_sec"] >= TARGET_RATIO
    lines = ["", f"target: {TARGET}", cli.load_line(options, rotated=True), "",
             f"{'server':<{NAME_WIDTH}} {'req/s':>10} {'p50 ms':>8} {'p99 ms':>8} "
             f"{'CPU us/req':>10}"]
    for target in targets:
        lines.append(f"{target.name:<{NAME_WIDTH}} {target.median('requests_per_sec'):>10.0f} "
                     f"{target.median('p50_ms'):>8.2f} {target.median('p99_ms'):>8.2f} "
                     f"{cli.median_cpu_total(target):>10.0f}")
    lines.append("")
    for name, ratio in ratios.items():
        verdict = (f"  ({'MET' if met else 'NOT MET'}: target >= {TARGET_RATIO:.2f}x)"
                   if name == HOSTKIT else "")
        lines.append(f"{name}/gunicorn req/s: {ratio['requests_per_sec']:.3f}x, CPU per "
                     f"request: {ratio['cpu_us_per_request']:.3f}x{verdict}")
    return "\n".join(lines + cli.warnings(targets)), ratios


def main(argv: Sequence[str] | None = None) -> int:
    """Run the benchmark; 0 when it ran (whether or not the target is met), 1 on failure."""
    from bench import cli
    from bench._harness import BenchmarkError, check_answer, ensure_wrk, fetch

    options = parse_args(argv)
    wrk = ensure_wrk()
    granian = not options.no_granian and importlib.util.find_spec("granian") is not None
    try:
        with tempfile.TemporaryDirectory(prefix="hostkit-bench-") as cwd, \
                contextlib.ExitStack() as servers:
            hostkit_args = ["--logging:access_log=false"] if options.no_access_log else []
            targets = start_targets(cwd, granian, hostkit_args)
            for target in targets:
                servers.enter_context(target.processes[0])
                print(f"{target.name}: pid {target.processes[0].pid}, {target.url}", flush=True)
                check_answer(target.name, fetch(target.url))
            cli.measure(wrk, targets, options, name_width=NAME_WIDTH, count_cpu=True)
    except BenchmarkError as error:
        print(f"benchmark failed: {error}", file=sys.stderr)
        return 1
    report, ratios = format_report(targets, options)
    print(report)
    cli.write_results({
        **cli.document_header("wsgi"), "target": TARGET, "target_ratio": TARGET_RATIO,
        "target_met": ratios[HOSTKIT]["requests_per_sec"] >= TARGET_RATIO, "ratios": ratios,
        "settings": cli.load_settings(options, "no_access_log"),
        "environment": cli.environment(wrk, ("hostkit", "hypercorn", "gunicorn", "granian",
                                             "anyio")),
        "servers": {target.name: {"command": target.processes[0].args,
                                  "median": cli.medians(target),
                                  "cpu_us_per_request": cli.median_cpu_total(target),
                                  "runs": cli.runs(target)} for target in targets},
    }, options.output)
    return 0


if __name__ == "__main__":
    sys.exit(main())
