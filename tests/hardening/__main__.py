"""``python -m tests.hardening [--full] [--only SUITE ...]``: run the suites, print every figure.

Without ``--full`` the suites run at CI's size (``tests/security``, ``tests/reliability``;
CI runs the reload suites on fewer model and backend pairs); with it, at full size: 3000
generated smuggling vectors per backend, 10,000 direct requests per backend, the child killed
every 2 s for 60 s, the front killed 20 times, one of two workers killed every 2 s for 60 s
per backend, the supervisor killed 20 times, 500 slow heads and 100 slow bodies at 1 byte /
5 s with 500 silent TLS connections, 2x100 MB of output in each of the 4 logging modes, the
rapid-fail recovery waited out over the real minute, and per backend SIGHUP every 5 s for 60 s
under 64 clients per model, 6 configuration changes (OutOfProcess) and 60 s of ``max_requests = 1000``
recycling per model, and the external tools (``external_tools``: slowhttptest's four modes at
1000 connections for 20 s, its ``-X`` run as issue 17's, then sslscan and 20,000-request
h2load runs, against both models), and HTTP/2 at the front (``h2_smuggling``: the downgrade
corpus; ``h2_floods``: each flood's frames before GOAWAY and other clients' p99, 10 s per
measurement). Each suite prints its figures as it finishes; the summary
says which targets were met. Results also go to ``bench/results/hardening.json``.

Exit status: 0 when every target was met, 1 otherwise.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path

import anyio

from tests.hardening import (
    corpus,
    crash,
    direct,
    external_tools,
    front_kill,
    graceful,
    h2_floods,
    h2_smuggling,
    logging_stall,
    reload,
    slow_clients,
    smuggling,
    spoof,
    startup,
    supervisor_kill,
    worker_kill,
)
from tests.hardening.fronts import Front
from tests.hardening.report import Reported
from tests.support.paths import ROOT
from tests.support.source import source_state

BACKENDS = ("asyncio", "trio")
RESULTS = ROOT / "bench" / "results" / "hardening.json"


Suite = Callable[[bool], Iterator[Reported]]


def security_smuggling(full: bool) -> Iterator[Reported]:
    for backend in BACKENDS:
        with smuggling.RecordingFront(backend) as front:
            yield smuggling.run_corpus(front, corpus.vectors())
            yield smuggling.run_mutations(
                front, smuggling.FULL_MUTATIONS if full else smuggling.QUICK_MUTATIONS)
        with smuggling.RecordingServer(backend) as in_process:
            yield smuggling.run_corpus(in_process, corpus.vectors())
            yield smuggling.run_mutations(
                in_process, smuggling.FULL_MUTATIONS if full else smuggling.QUICK_MUTATIONS)


def security_h2_smuggling(full: bool) -> Iterator[Reported]:
    for backend in BACKENDS:
        yield h2_smuggling.run(backend)


def security_h2_floods(full: bool) -> Iterator[Reported]:
    for backend in BACKENDS:
        yield h2_floods.run(backend, 10.0 if full else 2.0)


def security_spoof(full: bool) -> Iterator[Reported]:
    for backend in BACKENDS:
        with smuggling.RecordingFront(backend) as recording:
            yield spoof.run_recorded(recording)
        with Front(backend) as front:
            yield spoof.run_app(backend, front.url)
        yield from spoof.run_forwarding(backend)


def security_direct(full: bool) -> Iterator[Reported]:
    for backend in BACKENDS:
        with direct.HandStartedChild(backend) as child:
            yield anyio.run(direct.run, child, direct.FULL if full else direct.QUICK,
                            backend=backend)


def reliability_crash(full: bool) -> Iterator[Reported]:
    for backend in BACKENDS:
        with tempfile.TemporaryDirectory(prefix="hostkit-ledger-") as folder:
            ledger = Path(folder) / "ledger"
            with crash.front_for(backend, ledger) as front:
                yield anyio.run(crash.run, front, ledger, crash.FULL if full else crash.QUICK,
                                backend=backend)


def reliability_front_kill(full: bool) -> Iterator[Reported]:
    yield front_kill.run(list(BACKENDS), front_kill.FULL if full else front_kill.QUICK)


def reliability_worker_kill(full: bool) -> Iterator[Reported]:
    settings = worker_kill.FULL if full else worker_kill.QUICK
    for backend in BACKENDS:
        with supervisor_kill.Supervised(backend) as supervisor:
            yield anyio.run(worker_kill.run, supervisor, settings, backend=backend)


def reliability_supervisor_kill(full: bool) -> Iterator[Reported]:
    yield supervisor_kill.run(list(BACKENDS),
                              supervisor_kill.FULL if full else supervisor_kill.QUICK)


def reliability_graceful(full: bool) -> Iterator[Reported]:
    for backend in BACKENDS:
        with graceful.front_for(backend) as front:
            yield anyio.run(graceful.run, front, graceful.FULL if full else graceful.QUICK,
                            backend=backend)


def reliability_slow_clients(full: bool) -> Iterator[Reported]:
    settings = slow_clients.FULL if full else slow_clients.QUICK
    for backend in BACKENDS:
        with slow_clients.front_for(backend, settings.header_timeout) as front:
            yield anyio.run(slow_clients.run, front, settings, backend=backend)


def reliability_slowhttptest(full: bool) -> Iterator[Reported]:
    yield from external_tools.slow_suite(full, BACKENDS)


def security_tls_tools(full: bool) -> Iterator[Reported]:
    yield from external_tools.tls_suite(full, BACKENDS)


def reliability_logging(full: bool) -> Iterator[Reported]:
    settings = logging_stall.FULL if full else logging_stall.QUICK
    for backend in BACKENDS:
        for mode in logging_stall.MODES:
            with logging_stall.front_for(backend, mode) as front:
                yield anyio.run(logging_stall.run, front, mode, settings, backend=backend)


def reliability_startup(full: bool) -> Iterator[Reported]:
    settings = startup.FULL if full else startup.QUICK
    for backend in BACKENDS:
        with tempfile.TemporaryDirectory(prefix="hostkit-flaky-") as folder:
            with startup.flaky_front(backend, settings.crashes,
                                     Path(folder) / "starts") as front:
                yield anyio.run(startup.rapid_fail, front, settings, backend=backend)
        yield anyio.run(startup.recovery_in_process, settings, backend=backend)
        with startup.never_listening_front(backend, settings.limit) as front:
            yield anyio.run(startup.startup_timeout, front, settings, backend=backend)


def reliability_reload(full: bool) -> Iterator[Reported]:
    for backend in BACKENDS:
        for model in reload.MODELS:
            yield reload.measure_sighups(backend, model,
                                         reload.RELOADS_FULL if full else reload.RELOADS_QUICK)


def reliability_config_change(full: bool) -> Iterator[Reported]:
    for backend in BACKENDS:
        yield reload.measure_changes(backend,
                                     reload.CHANGES_FULL if full else reload.CHANGES_QUICK)


def reliability_recycle(full: bool) -> Iterator[Reported]:
    for backend in BACKENDS:
        for model in reload.MODELS:
            yield reload.measure_recycles(
                backend, model, reload.RECYCLES_FULL if full else reload.RECYCLES_QUICK)


SUITES: dict[str, Suite] = {
    "smuggling": security_smuggling, "h2-smuggling": security_h2_smuggling,
    "h2-floods": security_h2_floods, "spoof": security_spoof, "direct": security_direct,
    "crash": reliability_crash, "front-kill": reliability_front_kill,
    "worker-kill": reliability_worker_kill, "supervisor-kill": reliability_supervisor_kill,
    "graceful": reliability_graceful, "slow-clients": reliability_slow_clients,
    "slowhttptest": reliability_slowhttptest, "tls-tools": security_tls_tools,
    "logging": reliability_logging, "startup": reliability_startup,
    "reload": reliability_reload, "config-change": reliability_config_change,
    "recycle": reliability_recycle,
}


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m tests.hardening",
                                     description=__doc__.split("\n\n")[0])
    parser.add_argument("--full", action="store_true", help="the full-size runs (about 42 min)")
    parser.add_argument("--only", nargs="+", choices=sorted(SUITES), metavar="SUITE",
                        help=f"run only these suites: {', '.join(SUITES)}")
    parser.add_argument("--output", type=Path, default=RESULTS, help="where the JSON goes")
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    options = parse_args(argv)
    names = options.only or list(SUITES)
    report: dict[str, object] = {"full": options.full,
                                 "source": source_state("hostkit", "plugins", "tests"),
                                 "suites": {}}
    unmet: list[str] = []
    started = time.monotonic()
    for name in names:
        suite_started = time.monotonic()
        entries: list[dict[str, object]] = []
        try:
            for figures in SUITES[name](options.full):
                for line in figures.lines():
                    print(line, flush=True)
                entries.append({"figures": figures.lines(), "problems": figures.problems()})
                unmet += [f"{name}: {problem}" for problem in figures.problems()]
        except Exception as error:  # a suite that cannot run is a result too
            print(f"{name}: could not run: {error!r}", flush=True)
            unmet.append(f"{name}: could not run: {error!r}")
            entries.append({"error": repr(error)})
        report["suites"][name] = {  # type: ignore[index]
            "seconds": round(time.monotonic() - suite_started, 1), "runs": entries}
    print(f"\n{len(names)} suites in {time.monotonic() - started:.0f} s "
          f"({'full' if options.full else 'quick'}): "
          + ("every target met" if not unmet else f"{len(unmet)} targets NOT MET"))
    for problem in unmet:
        print(f"  NOT MET {problem}")
    report["unmet"] = unmet
    options.output.parent.mkdir(parents=True, exist_ok=True)
    options.output.write_text(json.dumps(report, indent=2) + "\n")
    print(f"results: {options.output}")
    return 1 if unmet else 0


if __name__ == "__main__":
    sys.exit(main())
