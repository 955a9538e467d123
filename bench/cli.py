"""The skeleton the wrk benchmarks share: their options, the measured rounds, what they
print and the JSON they write.

A benchmark parses its command line with :func:`benchmark_parser` (plus its own options) and
:func:`parse_load_options`, starts its :class:`Target` servers, runs :func:`measure` (rounds
of warmup + measured wrk run per target, the order rotated), prints :func:`load_line`,
:func:`medians_table` and :func:`warnings` around its own ratios, and writes a document built
from :func:`document_header`, :func:`load_settings`, :func:`environment` and
:func:`medians`/:func:`runs` with :func:`write_results`.
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
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

from bench._harness import (
    EVENT_LOOPS,
    BenchmarkError,
    ServerModes,
    WrkResult,
    distribution_version,
    loads_uvloop,
    run_wrk,
    server_modes,
    wrk_command,
    wrk_version,
)
from hostkit.testing import Program
from tests.support.processes import child_pids, cpu_seconds

#: the :class:`WrkResult` fields reported per server: medians and ratios.
FIELDS = ("requests_per_sec", "p50_ms", "p99_ms")


# --- command line --------------------------------------------------------------------------

def positive_int(text: str) -> int:
    """argparse type: a whole number of at least 1."""
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text}")
    return value


def count(text: str) -> int:
    """argparse type: a whole number of at least 0."""
    value = int(text)
    if value < 0:
        raise argparse.ArgumentTypeError(f"expected 0 or more, got {text}")
    return value


def add_load_options(parser: argparse.ArgumentParser, *, noun: str = "server",
                     duration: int = 10) -> None:
    """The options every wrk benchmark shares: rounds, duration (default ``duration`` s),
    warmup, connections, threads."""
    parser.add_argument("--rounds", type=positive_int, default=3,
                        help=f"measured runs per {noun} (default: 3; the median is reported)")
    parser.add_argument("--duration", type=positive_int, default=duration, metavar="SECONDS",
                        help=f"length of each measured wrk run (default: {duration})")
    parser.add_argument("--warmup", type=positive_int, default=2, metavar="SECONDS",
                        help="length of the unmeasured wrk run before each one (default: 2)")
    parser.add_argument("--connections", type=positive_int, default=32,
                        help="wrk connections (default: 32)")
    parser.add_argument("--threads", type=positive_int, default=2,
                        help="wrk threads (default: 2)")


def benchmark_parser(prog: str, description: str, results_file: Path, *,
                     noun: str = "server", duration: int = 10) -> argparse.ArgumentParser:
    """A benchmark's command line: the load options and ``--output`` (default
    ``results_file``); add the benchmark's own options, then :func:`parse_load_options`."""
    parser = argparse.ArgumentParser(prog=prog, description=description)
    add_load_options(parser, noun=noun, duration=duration)
    parser.add_argument("--output", type=Path, default=results_file,
                        help=f"JSON results file (default: {results_file})")
    return parser


def add_server_options(parser: argparse.ArgumentParser) -> None:
    """``--no-access-log`` and ``--event-loop``: what every server of the run is told, read
    back by :func:`modes_of`."""
    parser.add_argument("--no-access-log", dest="access_log", action="store_false",
                        help="hostkit with --logging:access_log=false, nginx with access_log "
                             "off (default: both write one: hostkit's default, combined on "
                             "stderr, which goes to a file; nginx's combined, to access.log)")
    parser.add_argument("--event-loop", choices=EVENT_LOOPS, default="asyncio",
                        help="the event loop of hostkit (--event_loop=LOOP) and of bare "
                             "hypercorn (--worker-class LOOP) (default: asyncio)")


def modes_of(options: argparse.Namespace, env: dict[str, str]) -> ServerModes:
    """The :class:`ServerModes` of :func:`add_server_options`' options, checked against the
    hostkit run with ``env`` (:func:`bench._harness.server_modes`: exits saying why uvloop
    cannot run)."""
    return server_modes(options.access_log, options.event_loop, env=env)


def parse_load_options(parser: argparse.ArgumentParser,
                       argv: Sequence[str] | None) -> argparse.Namespace:
    """Parse, and check wrk gets at least one connection per thread."""
    options = parser.parse_args(argv)
    if options.connections < options.threads:
        parser.error("--connections must be at least --threads (wrk needs one per thread)")
    return options


# --- targets and the measured rounds -------------------------------------------------------

@dataclasses.dataclass
class Target:
    """One stack under test: its processes (the one wrk talks to first) and measured runs."""

    name: str
    url: str
    processes: list[Program]
    runs: list[WrkResult] = dataclasses.field(default_factory=list)
    keep_alive: bool | None = None
    #: per measured run, each serving process's CPU microseconds per request (when counted).
    cpu: list[dict[str, float]] = dataclasses.field(default_factory=list)
    #: per measured run, the whole machine's cores: busy, of which interrupts, and stolen
    #: (``busy_cores``, ``irq_cores``, ``steal_cores``; when CPU is counted).
    machine: list[dict[str, float]] = dataclasses.field(default_factory=list)
    #: per measured run, what ``measure(during=...)`` saw in the middle of it (when asked).
    during: list[dict[str, Any]] = dataclasses.field(default_factory=list)
    #: the role of each of :attr:`processes` (by its name) and of its descendants, by depth:
    #: ``{"nginx": ("nginx master", "nginx worker")}``, ``{SUPERVISOR: ("supervisor",
    #: "front", "child")}`` (the last role also for anything deeper); see :func:`role_of`.
    roles: dict[str, tuple[str, ...]] = dataclasses.field(default_factory=dict)
    #: each Python process serving it and whether it runs uvloop, as seen once it served
    #: (:func:`uvloop_processes`; set by the benchmarks that say which loop ran).
    uvloop: list[tuple[str, bool]] = dataclasses.field(default_factory=list)

    def median(self, field: str) -> float:
        """The median of one :class:`WrkResult` field over the measured runs."""
        values: list[float] = [getattr(run, field) for run in self.runs]
        return statistics.median(values)


def rotations(targets: list[Target], rounds: int) -> Iterator[list[Target]]:
    """Round i starts with target i (mod n), so each goes first, second, ... in turn (with
    two targets: the order alternates)."""
    for index in range(rounds):
        shift = index % len(targets)
        yield targets[shift:] + targets[:shift]


def alternations(targets: list[Target], rounds: int) -> Iterator[list[Target]]:
    """Rounds 1, 3, ... in the given order, rounds 2, 4, ... reversed: targets next to each
    other (the ones compared) swap places every round, and each end goes first in turn."""
    for index in range(rounds):
        yield list(targets) if index % 2 == 0 else list(reversed(targets))


def processes_of(target: Target) -> dict[str, int]:
    """The processes serving ``target``, by name: its own and all their descendants (the
    front's child, nginx's workers, a supervisor's workers and their children: ``NAME's
    child 2``, ``NAME's child 2.1``), so each one's CPU is counted."""
    named = {}
    for process in target.processes:
        named[process.name] = process.pid
        named.update(_descendants(process.pid, f"{process.name}'s child "))
    return named


def _descendants(pid: int, prefix: str) -> dict[str, int]:
    named = {}
    for index, child in enumerate(sorted(child_pids(pid)), start=1):
        named[f"{prefix}{index}"] = child
        named.update(_descendants(child, f"{prefix}{index}."))
    return named


def uvloop_processes(target: Target) -> list[tuple[str, bool]]:
    """Each Python process serving ``target`` (:func:`processes_of`; its role, when the
    target has :attr:`Target.roles`) and whether it has uvloop loaded: its event loop, once
    it serves."""
    loaded = []
    for name, pid in processes_of(target).items():
        uses = loads_uvloop(pid)
        if uses is not None:
            loaded.append((role_of(target, name) if target.roles else name, uses))
    return loaded


def loop_note(target: Target) -> str:
    """``uvloop in front, child (of 2 Python processes)``, or ``uvloop in none of ...``:
    :attr:`Target.uvloop` on one line."""
    with_uvloop = [name for name, uses in target.uvloop if uses]
    return (f"uvloop in {', '.join(with_uvloop) or 'none'} "
            f"(of {len(target.uvloop)} Python processes)")


def role_of(target: Target, name: str) -> str:
    """The role of the process :func:`processes_of` named ``name`` in ``target``'s stack
    (:attr:`Target.roles`); a process without one keeps its own name."""
    for program, roles in target.roles.items():
        if name == program:
            return roles[0]
        prefix = f"{program}'s child "
        if name.startswith(prefix):
            depth = name[len(prefix):].count(".") + 1
            return roles[min(depth, len(roles) - 1)]
    return name


def cpu_by_role(target: Target) -> list[dict[str, float]]:
    """Per measured run: CPU microseconds per request summed over the processes of each role
    (two nginx workers make one ``nginx worker`` figure), roles in the order first seen."""
    runs = []
    for per_process in target.cpu:
        summed: dict[str, float] = {}
        for name, value in per_process.items():
            role = role_of(target, name)
            summed[role] = summed.get(role, 0.0) + value
        runs.append(summed)
    return runs


def median_cpu_by_role(target: Target) -> dict[str, float]:
    """Each role's median CPU microseconds per request over the measured runs (0.0 for a
    role missing from a run: its processes had ended), and ``stack``: the median of the
    runs' totals (all the target's processes), which the ratios between stacks use."""
    runs = cpu_by_role(target)
    roles = list(dict.fromkeys(role for run in runs for role in run))
    medians = {role: statistics.median(run.get(role, 0.0) for run in runs) for role in roles}
    medians["stack"] = statistics.median(sum(run.values()) for run in runs) if runs else 0.0
    return medians


def role_note(target: Target) -> str:
    """``STACK (role N, role N)``: :func:`median_cpu_by_role` on one line."""
    medians = median_cpu_by_role(target)
    stack = medians.pop("stack")
    return f"{stack:.0f} ({', '.join(f'{role} {value:.0f}' for role, value in medians.items())})"


def machine_cpu_seconds() -> dict[str, float]:
    """The whole machine's CPU seconds since boot, all cores (Linux ``/proc/stat``): ``busy``
    (user, nice, system, irq and softirq time), ``irq`` (irq and softirq: e.g. loopback TCP
    work done in interrupt context, which no process is charged for) and ``steal`` (time the
    hypervisor gave another guest while this one wanted to run)."""
    fields = [int(value) for value in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    user, nice, system, _idle, _iowait, irq, softirq, steal = fields[:8]
    ticks = os.sysconf("SC_CLK_TCK")
    return {"busy": (user + nice + system + irq + softirq) / ticks,
            "irq": (irq + softirq) / ticks, "steal": steal / ticks}


def measure(wrk: str, targets: list[Target], options: argparse.Namespace, *,
            name_width: int, count_cpu: bool, cpu_detail: bool = True,
            order: Callable[[list[Target], int], Iterator[list[Target]]] = rotations,
            during: Callable[[Target], dict[str, Any]] | None = None) -> None:
    """Every round: warmup + measured run per target, in the ``order`` of that round
    (:func:`rotations`, or :func:`alternations`), each run printed.

    With ``count_cpu``, each run also notes every serving process's CPU microseconds per
    request: what each part costs, whatever else the machine is doing (req/s also depends on
    how much CPU the processes got); and what wrk and the whole machine used (its
    ``wrk_cpu_s``, :attr:`Target.machine`). Each run's line shows every process's share (each
    role's, when the target has :attr:`Target.roles`), or with ``cpu_detail=False`` the total
    and the number of processes.

    With ``during``, it is called (on another thread) halfway through each measured run;
    what it returns is kept in :attr:`Target.during` (``{}`` when it raised) and shown on the
    run's line. Raises :class:`BenchmarkError` when a server exits.
    """
    for round_index, round_order in enumerate(order(targets, options.rounds)):
        for target in round_order:
            _load(wrk, target, options, options.warmup)
            named = processes_of(target) if count_cpu else {}
            before = {name: cpu_seconds(pid) for name, pid in named.items()}
            machine_before, started = machine_cpu_seconds(), time.monotonic()
            with _halfway(target, options.duration, during):
                result = _load(wrk, target, options, options.duration)
            target.runs.append(result)
            cpu = ""
            if count_cpu:
                wall = time.monotonic() - started
                machine_after = machine_cpu_seconds()
                target.machine.append({f"{kind}_cores": (machine_after[kind] - used) / wall
                                       for kind, used in machine_before.items()})
                busy = target.machine[-1]["busy_cores"]
                requests = max(result.requests, 1)
                target.cpu.append({name: (cpu_seconds(pid) - before[name]) * 1e6 / requests
                                   for name, pid in named.items()})
                shares = (cpu_by_role(target)[-1] if target.roles else target.cpu[-1])
                detail = (cpu_note(shares) if cpu_detail else
                          f"{sum(target.cpu[-1].values()):.0f} ({len(named)} processes)")
                cpu = (f"  CPU us/request {detail}; wrk {result.wrk_cpu_s * 1e6 / requests:.0f}"
                       f"; machine {busy:.2f} cores busy")
            halfway = ""
            if during is not None:
                halfway = "; halfway: " + ", ".join(
                    f"{name} {value}" for name, value in target.during[-1].items())
            print(f"round {round_index + 1}/{options.rounds}  {target.name:<{name_width}} "
                  f"{result.requests_per_sec:>9.0f} req/s  p50 {result.p50_ms:6.2f} ms  "
                  f"p99 {result.p99_ms:6.2f} ms" + cpu + halfway + _errors_note(result),
                  flush=True)
            for process in target.processes:
                if not process.running:
                    raise BenchmarkError(f"{process.name} exited during the load "
                                         f"({process.process.returncode}):\n{process.tail()}")


@contextlib.contextmanager
def _halfway(target: Target, duration_s: int,
             during: Callable[[Target], dict[str, Any]] | None) -> Iterator[None]:
    """Around a measured run: call ``during(target)`` halfway through it, and keep the result."""
    if during is None:
        yield
        return
    seen: list[dict[str, Any]] = []

    def look() -> None:
        try:
            seen.append(during(target))
        except Exception as error:  # a process that ended as it was looked at, say
            print(f"{target.name}: nothing seen halfway through the run ({error!r})",
                  file=sys.stderr)

    timer = threading.Timer(duration_s / 2, look)
    timer.start()
    try:
        yield
    finally:
        timer.cancel()
        timer.join()
        target.during.append(seen[0] if seen else {})


def _load(wrk: str, target: Target, options: argparse.Namespace, duration_s: int) -> WrkResult:
    return run_wrk(wrk, target.url, threads=options.threads,
                   connections=options.connections, duration_s=duration_s)


def cpu_totals(target: Target) -> list[float]:
    """Per measured run: CPU microseconds per request, summed over the target's processes."""
    return [sum(per_process.values()) for per_process in target.cpu]


def median_cpu_total(target: Target) -> float:
    """The median over the measured runs of :func:`cpu_totals`; 0 when no CPU was counted."""
    totals = cpu_totals(target)
    return statistics.median(totals) if totals else 0.0


def median_cpu(target: Target) -> dict[str, float]:
    """Each process's median CPU microseconds per request over the measured runs."""
    names = {name for run in target.cpu for name in run}
    return {name: statistics.median(run[name] for run in target.cpu if name in run)
            for name in sorted(names)}


def cpu_note(per_process: dict[str, float]) -> str:
    """``TOTAL (name N, name N)``: CPU microseconds per request, all and by process."""
    parts = [f"{name} {value:.0f}" for name, value in per_process.items()]
    return f"{sum(per_process.values()):.0f} ({', '.join(parts)})"


def _errors_note(result: WrkResult) -> str:
    if not result.errors:
        return ""
    return (f"  ({result.socket_errors} socket errors, "
            f"{result.non_2xx_3xx} non-2xx/3xx: results not comparable)")


# --- the report ----------------------------------------------------------------------------

def load_line(options: argparse.Namespace, *, rotated: bool = False,
              order: str | None = None) -> str:
    """``load: wrk ...; N s warmup before each run; median of N rounds[, order rotated]``
    (or ``, ORDER``: how else the order changed between rounds)."""
    command = " ".join(wrk_command("wrk", "http://127.0.0.1:PORT/", threads=options.threads,
                                   connections=options.connections,
                                   duration_s=options.duration))
    if order is None and rotated:
        order = "order rotated"
    return (f"load: {command}; {options.warmup} s warmup before each run; "
            f"median of {options.rounds} rounds" + (f", {order}" if order else ""))


def medians_table(targets: list[Target], name_width: int) -> list[str]:
    """A header and one line per target: its median req/s, p50 and p99."""
    lines = [f"{'server':<{name_width}} {'req/s':>10} {'p50 ms':>8} {'p99 ms':>8}"]
    for target in targets:
        lines.append(f"{target.name:<{name_width}} {target.median('requests_per_sec'):>10.0f} "
                     f"{target.median('p50_ms'):>8.2f} {target.median('p99_ms'):>8.2f}")
    return lines


def loop_warnings(targets: list[Target], event_loop: str) -> list[str]:
    """A warning per target some of whose Python processes (:attr:`Target.uvloop`) did not
    run the ``event_loop`` every one of them was told to."""
    lines = []
    for target in targets:
        wrong = [name for name, uses in target.uvloop if uses != (event_loop == "uvloop")]
        if wrong:
            lines.append(f"WARNING: {target.name}: not on {event_loop}: {', '.join(wrong)}")
    return lines


def warnings(targets: list[Target]) -> list[str]:
    """The warning line when some run had socket errors or non-2xx/3xx answers."""
    if any(run.errors for target in targets for run in target.runs):
        return ["WARNING: some runs had socket errors or non-2xx/3xx responses"]
    return []


# --- the JSON results ----------------------------------------------------------------------

def document_header(benchmark: str) -> dict[str, Any]:
    """The first fields of every results document: which benchmark, finished when."""
    return {"benchmark": benchmark, "finished_at": datetime.datetime.now(
        datetime.timezone.utc).isoformat(timespec="seconds")}


def load_settings(options: argparse.Namespace, *extra: str) -> dict[str, Any]:
    """The load options of the run, then the ``extra`` options named."""
    return {"rounds": options.rounds, "duration_s": options.duration,
            "warmup_s": options.warmup, "connections": options.connections,
            "threads": options.threads, **{name: getattr(options, name) for name in extra}}


def environment(wrk: str, distributions: Sequence[str], **tools: str) -> dict[str, Any]:
    """The machine, wrk's version, other ``tools``' versions, and the installed versions of
    ``distributions``."""
    return {"python": platform.python_version(), "platform": platform.platform(),
            "cpus": os.cpu_count(), "wrk": wrk_version(wrk), **tools,
            **{name: distribution_version(name) for name in distributions}}


def medians(target: Target) -> dict[str, float]:
    return {field: target.median(field) for field in FIELDS}


def runs(target: Target) -> list[dict[str, Any]]:
    return [dataclasses.asdict(run) for run in target.runs]


def write_results(document: dict[str, Any], path: Path) -> None:
    """Write ``document`` as JSON to ``path`` and say where."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(document, indent=2) + "\n")
    print(f"\nresults: {path}")
