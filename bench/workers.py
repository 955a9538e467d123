"""The web garden: hostkit's supervisor with 2 worker processes against the servers' own
multi-process modes, side by side in one run, on the same trivial app.

Run from the repository root::

    python -m bench.workers                   # 3 rounds x 5 s, wrk -t2 -c32, every comparison
    python -m bench.workers --only hypercorn scaling --rounds 5 --duration 10
    python -m bench.workers --only outofprocess      # issue 18's web garden, about 1.2 min
    python -m bench.workers --only hypercorn outofprocess --no-access-log --event-loop uvloop

Four comparisons (``--only`` picks some), each target a server of its own on a free
127.0.0.1 port, all up for the whole load phase:

- ``hypercorn``: hostkit InProcess (hypercorn) with ``[workers] processes = 2`` against
  ``hypercorn --workers 2``;
- ``uvicorn``: hostkit with the uvicorn plugin and 2 workers against ``uvicorn --workers 2``
  (as released, and with TCP_NODELAY on its socket: :mod:`bench.uvicorn_nodelay_server`),
  and ``gunicorn -w 2 -k uvicorn.workers.UvicornWorker``;
- ``scaling``: hostkit InProcess with 2 workers against 1 supervised worker and against one
  plain process (no supervisor);
- ``outofprocess``: hostkit OutOfProcess, 2 workers with one child each, against nginx with 2
  worker processes in front of 2 single-process hypercorns, and in front of 2 hostkit
  children (the module's own kind of child); against nginx + hypercorn also issue 18's
  figures by role (:func:`bench.outofprocess.proxy_comparison`: the stacks' CPU per request,
  the fronts' against nginx's workers', the children's against the hypercorns').

Each hostkit target runs ``python -m bench.hostkit_server [ARGUMENTS] --urls=...`` from a
folder of its own holding its ``hostkit.toml``. What every server is told is
:class:`bench._harness.ServerModes`, as in :mod:`bench.outofprocess`: hostkit writes its
access log and nginx its own (``--no-access-log``: neither; the bare hypercorns, uvicorns and
gunicorn never do), on asyncio or ``--event-loop uvloop`` (hostkit and hypercorn; the uvicorn
comparison runs asyncio only); every server's output goes to a file. Every round loads every
target (warmup, then a measured wrk run), the order reversed every other round; around each
run the CPU time of every process of the target (supervisor, workers, their children), of
wrk and of the whole machine is read, and halfway through it the connections each process
holds are counted. At the end everything is stopped and checked for leftovers. Writes
``bench/results/workers.json``.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import os
import re
import signal
import statistics
import sys
import tempfile
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from bench import cli
from bench._harness import (
    BenchmarkError,
    ServerModes,
    access_log_warnings,
    check_answer,
    distribution_version,
    ensure_program,
    ensure_wrk,
    fetch,
    keeps_alive,
    loopback_url,
    request_lines,
    server_environment,
    wait_ready,
    wait_started_by,
)
from bench.cli import Target
from bench.inprocess import hypercorn_command
from bench.outofprocess import (
    STOP_TIMEOUT,
    Bench,
    ProxyTargets,
    hostkit_environment,
    nginx_version,
    proxy_comparison,
    proxy_lines,
    start_nginx_hypercorns,
    start_nginx_stack,
)
from bench.uvicorn import bare_command
from hostkit.testing import write_settings
from tests.support.processes import free_port, process_cmdline
from tests.support.source import source_state

APP = "bench.trivial_app:app"
PROGRAM = "bench.hostkit_server"
RESULTS_FILE = Path(__file__).resolve().parent / "results" / "workers.json"
START_TIMEOUT = 30.0
SOURCES = ("hostkit", "plugins", "samples/hostkit_uvicorn", "bench")
NAME_WIDTH = 34
WORKERS = 2

HYPERCORN = "hypercorn --workers 2"
HOSTKIT = "hostkit hypercorn, 2 workers"
HOSTKIT_ONE = "hostkit hypercorn, 1 worker"
HOSTKIT_PLAIN = "hostkit hypercorn, no supervisor"
UVICORN = "uvicorn --workers 2"
UVICORN_NODELAY = "uvicorn --workers 2, TCP_NODELAY"
GUNICORN = "gunicorn -w 2 -k UvicornWorker"
PLUGIN = "hostkit uvicorn, 2 workers"
NGINX_HYPERCORN = "nginx x2 + 2 hypercorn"
NGINX_HOSTKIT = "nginx x2 + 2 hostkit children"
OUTOFPROCESS = "hostkit OutOfProcess, 2 x 1 child"


@dataclasses.dataclass(frozen=True)
class Ratio:
    """``candidate`` against ``baseline``: req/s, p99 and CPU per request; ``target`` is the
    least req/s ratio asked for (None: reported only)."""

    candidate: str
    baseline: str
    target: float | None = None

    @property
    def label(self) -> str:
        return f"{self.candidate} / {self.baseline}"


COMPARISONS: dict[str, tuple[Ratio, ...]] = {
    "hypercorn": (Ratio(HOSTKIT, HYPERCORN, 0.95),),
    "uvicorn": (Ratio(PLUGIN, UVICORN, 0.95), Ratio(PLUGIN, UVICORN_NODELAY, 0.95),
                Ratio(PLUGIN, GUNICORN), Ratio(GUNICORN, UVICORN_NODELAY)),
    "scaling": (Ratio(HOSTKIT, HOSTKIT_ONE), Ratio(HOSTKIT, HOSTKIT_PLAIN),
                Ratio(HOSTKIT_ONE, HOSTKIT_PLAIN)),
    "outofprocess": (Ratio(OUTOFPROCESS, NGINX_HYPERCORN, 0.9),
                     Ratio(OUTOFPROCESS, NGINX_HOSTKIT)),
}

#: the order of a round: the targets compared sit next to each other.
ORDER = (HYPERCORN, HOSTKIT, HOSTKIT_ONE, HOSTKIT_PLAIN, UVICORN, UVICORN_NODELAY, PLUGIN,
         GUNICORN, NGINX_HYPERCORN, OUTOFPROCESS, NGINX_HOSTKIT)

#: each hostkit target's hostkit.toml (its ``--urls`` is on its command line), and its
#: processes when started.
HOSTKIT_SETTINGS: dict[str, dict[str, Any]] = {
    HOSTKIT: {"workers": {"processes": WORKERS}},
    HOSTKIT_ONE: {"workers": {"supervise": True, "processes": 1}},
    HOSTKIT_PLAIN: {},
    PLUGIN: {"server": "uvicorn", "plugins": ["hostkit_uvicorn"],
             "workers": {"processes": WORKERS}},
    # eager_start: both children are up before the load, not started by its first requests
    OUTOFPROCESS: {"hosting_model": "OutOfProcess", "workers": {"processes": WORKERS},
                   "module": {"processes_per_application": 1, "eager_start": True}},
}

#: the roles of the processes of a hostkit target by depth (:attr:`bench.cli.Target.roles`),
#: for the targets compared with a proxy stack by role.
HOSTKIT_ROLES: dict[str, tuple[str, ...]] = {OUTOFPROCESS: ("supervisor", "front", "child")}

#: issue 18's web garden: the req/s asked of the OutOfProcess garden against nginx + 2
#: hypercorns; the CPU ratios by role are reported only.
GARDEN = ProxyTargets(rps_min=0.9)


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    """The benchmark's options; defaults give ``wrk -t2 -c32 -d5s``, 3 rounds."""
    targets = "; ".join(f"{ratio.label} >= {ratio.target:.2f}x req/s"
                        for ratios in COMPARISONS.values() for ratio in ratios if ratio.target)
    parser = cli.benchmark_parser(
        "python -m bench.workers",
        "Benchmark hostkit's supervisor with 2 workers against the servers' own multi-process "
        f"modes. Targets: {targets}.", RESULTS_FILE, noun="target", duration=5)
    parser.add_argument("--only", nargs="+", choices=list(COMPARISONS), metavar="COMPARISON",
                        default=list(COMPARISONS),
                        help=f"run these comparisons only ({', '.join(COMPARISONS)}; "
                             "default: all)")
    cli.add_server_options(parser)
    options = cli.parse_load_options(parser, argv)
    if options.event_loop != "asyncio" and "uvicorn" in options.only:
        parser.error(f"--event-loop {options.event_loop}: the uvicorn comparison runs asyncio "
                     "only (uvicorn --loop asyncio); leave it out with --only")
    return options


def targets_of(comparisons: Sequence[str]) -> list[str]:
    """The targets the ``comparisons`` need, in :data:`ORDER`."""
    needed = {name for comparison in comparisons for ratio in COMPARISONS[comparison]
              for name in (ratio.candidate, ratio.baseline)}
    return [name for name in ORDER if name in needed]


# --- starting the targets ------------------------------------------------------------------

@dataclasses.dataclass
class Tools:
    """What the targets need from the machine, and where each one gets its folder."""

    bench: Bench
    root: Path
    nginx: str | None

    def folder(self, name: str) -> Path:
        """A new empty folder for (a process of) the target ``name``: its working directory."""
        slug = re.sub(r"[^a-z0-9]+", "-", name.lower()).strip("-")
        path = Path(tempfile.mkdtemp(prefix=f"{slug}-", dir=self.root))
        path.chmod(0o755)  # nginx's workers run as nobody when the benchmark runs as root
        return path


def start_hostkit(tools: Tools, name: str) -> Target:
    """``python -m bench.hostkit_server [ARGUMENTS] --urls=...`` (the arguments of
    ``bench.modes``) in a folder with its own hostkit.toml; ready once
    the supervisor has logged its own "Application started." and every worker ready (a plain
    host: its "Application started."), then checked to run the processes its settings say
    (supervisor, workers, their children)."""
    folder = tools.folder(name)
    port = free_port()
    settings = HOSTKIT_SETTINGS[name]
    write_settings(folder, settings)
    argv = [sys.executable, "-m", PROGRAM, *tools.bench.modes.hostkit_arguments(),
            f"--urls={loopback_url(port, '')}"]  # the URL last: the leftover check looks for it
    server = tools.bench.start(name, argv, "", hostkit_environment(), str(folder), wait=False)
    workers = settings.get("workers", {}).get("processes", 0)

    def started() -> None:
        server.wait_started(START_TIMEOUT)
        if workers:
            server.wait_workers_ready(workers, START_TIMEOUT)

    wait_started_by(server, started, f"did not start within {START_TIMEOUT:g} s")
    roles = {name: HOSTKIT_ROLES[name]} if name in HOSTKIT_ROLES else {}
    target = Target(name, loopback_url(port), [server], roles=roles)
    children = settings.get("module", {}).get("processes_per_application", 0)
    expected = 1 + workers * (1 + children)
    found = len(cli.processes_of(target))
    if found != expected:
        raise BenchmarkError(f"{name} runs {found} processes, not {expected}:\n{server.tail()}")
    return target


def start_hypercorn(tools: Tools, name: str) -> Target:
    """``hypercorn --workers 2`` (the worker class of ``bench.modes``): ready when both
    workers logged "Running on"."""
    port = free_port()
    argv = hypercorn_command(port, workers=WORKERS,
                             worker_class=tools.bench.modes.hypercorn_worker_class)
    server = tools.bench.start(name, argv, "", server_environment(), str(tools.folder(name)),
                               wait=False)
    wait_ready(server, f"Running on {loopback_url(port, '')}", START_TIMEOUT, count=WORKERS)
    return Target(name, loopback_url(port), [server])


def start_uvicorn(tools: Tools, name: str) -> Target:
    """``uvicorn --workers 2`` with the plugin's settings (:func:`bench.uvicorn.bare_command`),
    as released or with TCP_NODELAY (:mod:`bench.uvicorn_nodelay_server`); ready when both
    workers logged "Application startup complete."."""
    port = free_port()
    module = "bench.uvicorn_nodelay_server" if name == UVICORN_NODELAY else "uvicorn"
    server = tools.bench.start(name, bare_command(port, workers=WORKERS, module=module), "",
                               server_environment(), str(tools.folder(name)), wait=False)
    wait_ready(server, "Application startup complete.", START_TIMEOUT, count=WORKERS)
    return Target(name, loopback_url(port), [server])


def gunicorn_command(port: int) -> list[str]:
    """gunicorn with 2 uvicorn workers, as its documentation runs them (its defaults: no
    access log; uvicorn's ``server`` header and proxy-headers middleware on)."""
    return [sys.executable, "-m", "gunicorn", "--workers", str(WORKERS),
            "--worker-class", "uvicorn.workers.UvicornWorker",
            "--bind", f"127.0.0.1:{port}", APP]


def start_gunicorn(tools: Tools, name: str) -> Target:
    """:func:`gunicorn_command`: ready when both workers logged "Application startup
    complete."."""
    port = free_port()
    server = tools.bench.start(name, gunicorn_command(port), "", server_environment(),
                               str(tools.folder(name)), wait=False)
    wait_ready(server, "Application startup complete.", START_TIMEOUT, count=WORKERS)
    return Target(name, loopback_url(port), [server])


def start_nginx_hypercorns_garden(tools: Tools, name: str) -> Target:
    """nginx (2 workers, keep-alive upstream) round robin over 2 single-process hypercorns
    (:func:`bench.outofprocess.start_nginx_hypercorns`), each in a folder of its own."""
    assert tools.nginx is not None
    return start_nginx_hypercorns(tools.bench, tools.nginx, str(tools.folder(name)), name=name,
                                  children=WORKERS, worker_processes=WORKERS,
                                  cwd=lambda: str(tools.folder(name)))


def start_nginx_hostkit_children(tools: Tools, name: str) -> Target:
    """nginx (2 workers) round robin over 2 hostkit children started by hand."""
    assert tools.nginx is not None
    return start_nginx_stack(tools.bench, tools.nginx, str(tools.folder(name)), name=name,
                             children=WORKERS, worker_processes=WORKERS)


STARTERS: dict[str, Callable[[Tools, str], Target]] = {
    HYPERCORN: start_hypercorn, HOSTKIT: start_hostkit, HOSTKIT_ONE: start_hostkit,
    HOSTKIT_PLAIN: start_hostkit, UVICORN: start_uvicorn, UVICORN_NODELAY: start_uvicorn,
    GUNICORN: start_gunicorn,
    PLUGIN: start_hostkit, NGINX_HYPERCORN: start_nginx_hypercorns_garden,
    OUTOFPROCESS: start_hostkit, NGINX_HOSTKIT: start_nginx_hostkit_children,
}


def remember_processes(bench: Bench, target: Target) -> int:
    """Note every process of ``target`` (with its command line, so a reused pid is not taken
    for it) for the leftover check; returns how many there are."""
    named = cli.processes_of(target)
    for pid in named.values():
        argv = process_cmdline(pid)
        if argv is not None:
            bench.known.setdefault(pid, " ".join(argv))
    return len(named)


def processes_in(folder: Path) -> dict[int, list[str]]:
    """Live processes whose working directory is ``folder`` or inside it (Linux ``/proc``)."""
    inside = str(folder.resolve())
    found = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        try:
            cwd = os.readlink(entry / "cwd")
        except OSError:
            continue
        if cwd == inside or cwd.startswith(inside + os.sep):
            argv = process_cmdline(int(entry.name))
            if argv is not None:
                found[int(entry.name)] = argv
    return found


def check_folders(bench: Bench, root: Path) -> None:
    """After everything was stopped: no process may still run in a target's folder (a
    worker or child started after the targets were noted). Kill and report."""
    for pid, argv in sorted(processes_in(root).items()):
        if any(leftover["pid"] == pid for leftover in bench.leftovers):
            continue
        print(f"BUG: pid {pid} still running in a target's folder after the benchmark "
              f"stopped everything: {' '.join(argv)[:200]} -- SIGKILL", file=sys.stderr)
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
        bench.leftovers.append({"pid": pid, "command": argv})


# --- how the connections were spread -------------------------------------------------------

_ESTABLISHED = "01"  # the state column of /proc/net/tcp


def connections_by_process(target: Target) -> dict[str, int]:
    """How many established connections to the target's port each of its processes holds
    (Linux ``/proc``), by :func:`short_name`; called halfway through each measured run, it
    shows how the kernel spread wrk's connections over the workers (a process that accepts
    first takes every connection already waiting)."""
    port = int(target.url.rstrip("/").rsplit(":", 1)[1])
    inodes = set()
    for line in Path("/proc/net/tcp").read_text().splitlines()[1:]:
        fields = line.split()
        if fields[3] == _ESTABLISHED and int(fields[1].rsplit(":", 1)[1], 16) == port:
            inodes.add(f"socket:[{fields[9]}]")
    counts = {}
    for name, pid in cli.processes_of(target).items():
        held = 0
        with contextlib.suppress(OSError):
            for fd in os.listdir(f"/proc/{pid}/fd"):
                with contextlib.suppress(OSError):
                    held += os.readlink(f"/proc/{pid}/fd/{fd}") in inodes
        if held:
            counts[short_name(target, name)] = held
    return counts


# --- figures -------------------------------------------------------------------------------


def wrk_cpu(target: Target) -> list[float]:
    """Per measured run: wrk's own CPU microseconds per request."""
    return [run.wrk_cpu_s * 1e6 / max(run.requests, 1) for run in target.runs]


def figures(target: Target, duration_s: int) -> dict[str, float]:
    """The target's medians: req/s, p50, p99, CPU per request (server, wrk), the cores the
    server and wrk kept busy, and the machine's busy, interrupt and stolen cores."""
    cores = [total * run.requests_per_sec / 1e6
             for total, run in zip(cli.cpu_totals(target), target.runs)]
    return {
        **cli.medians(target),
        "cpu_us_per_request": cli.median_cpu_total(target),
        "wrk_cpu_us_per_request": statistics.median(wrk_cpu(target)),
        "server_cores": statistics.median(cores),
        "wrk_cores": statistics.median(run.wrk_cpu_s / duration_s for run in target.runs),
        "machine_busy_cores": statistics.median(m["busy_cores"] for m in target.machine),
        "machine_irq_cores": statistics.median(m["irq_cores"] for m in target.machine),
        "machine_steal_cores": statistics.median(m["steal_cores"] for m in target.machine),
    }


def compare(ratio: Ratio, by_name: dict[str, Target],
            medians: dict[str, dict[str, float]]) -> dict[str, Any]:
    """``ratio``'s figures: candidate/baseline of the medians (the verdict), per round and
    the median of the rounds' ratios (req/s), and of p99 and CPU per request."""
    candidate, baseline = by_name[ratio.candidate], by_name[ratio.baseline]
    per_round = [mine.requests_per_sec / theirs.requests_per_sec
                 for mine, theirs in zip(candidate.runs, baseline.runs)]
    rps = (medians[ratio.candidate]["requests_per_sec"]
           / medians[ratio.baseline]["requests_per_sec"])
    return {
        "candidate": ratio.candidate, "baseline": ratio.baseline, "target": ratio.target,
        "rps": rps, "rps_per_round": per_round,
        "rps_median_of_rounds": statistics.median(per_round),
        "p99": medians[ratio.candidate]["p99_ms"] / medians[ratio.baseline]["p99_ms"],
        "cpu_per_request": (medians[ratio.candidate]["cpu_us_per_request"]
                            / medians[ratio.baseline]["cpu_us_per_request"]),
        "met": None if ratio.target is None else rps >= ratio.target,
    }


def scaling_bound(many: dict[str, float], one: dict[str, float], cores: int) -> dict[str, float]:
    """What ``many`` worker processes could serve at most against ``one`` process on an
    otherwise idle machine of ``cores`` cores, from what each request cost in this run: the
    workers, wrk and interrupts filling every core, against the one process filling one
    (wrk and interrupts fit beside it). Returns the per-request costs used and the ratio."""
    irq = many["machine_irq_cores"] * 1e6 / many["requests_per_sec"]
    shared = many["cpu_us_per_request"] + many["wrk_cpu_us_per_request"] + irq
    return {"cores": cores, "one_us": one["cpu_us_per_request"],
            "workers_us": many["cpu_us_per_request"], "wrk_us": many["wrk_cpu_us_per_request"],
            "irq_us": irq, "ratio": cores * one["cpu_us_per_request"] / shared}


# --- reporting -----------------------------------------------------------------------------

def format_report(targets: list[Target], medians: dict[str, dict[str, float]],
                  comparisons: dict[str, list[dict[str, Any]]],
                  options: argparse.Namespace, modes: ServerModes,
                  logged: dict[str, int]) -> str:
    lines = ["", cli.load_line(options, order="order reversed every other round"),
             f"servers: {modes.describe()}",
             f"machine: {os.cpu_count()} CPUs, shared with wrk (and whatever else runs)", "",
             f"{'server':<{NAME_WIDTH}} {'req/s':>7} {'p50 ms':>7} {'p99 ms':>7} "
             f"{'CPU us/req':>10} {'cores':>5} {'wrk us/req':>10} {'wrk cores':>9} "
             f"{'busy':>5} {'rest':>5} {'irq':>5} {'steal':>5}"]
    for target in targets:
        m = medians[target.name]
        rest = m["machine_busy_cores"] - m["server_cores"] - m["wrk_cores"]
        lines.append(f"{target.name:<{NAME_WIDTH}} {m['requests_per_sec']:>7.0f} "
                     f"{m['p50_ms']:>7.2f} {m['p99_ms']:>7.2f} "
                     f"{m['cpu_us_per_request']:>10.0f} {m['server_cores']:>5.2f} "
                     f"{m['wrk_cpu_us_per_request']:>10.0f} {m['wrk_cores']:>9.2f} "
                     f"{m['machine_busy_cores']:>5.2f} {rest:>5.2f} "
                     f"{m['machine_irq_cores']:>5.2f} {m['machine_steal_cores']:>5.2f}")
    lines += ["", "(CPU us/req: all the target's processes; cores: the CPU they used per second "
              "of load; busy: the whole machine's busy cores; rest: busy less the target and "
              "wrk (other processes, interrupts); irq: interrupt time, part of rest; steal: "
              "cores taken by the hypervisor)"]
    for comparison, results in comparisons.items():
        lines += ["", f"{comparison}:"]
        for result in results:
            verdict = ("" if result["target"] is None else
                       f"  ({'MET' if result['met'] else 'NOT MET'}: target >= "
                       f"{result['target']:.2f}x)")
            rounds = ", ".join(f"{value:.3f}" for value in result["rps_per_round"])
            lines += [f"  {result['candidate']} / {result['baseline']}:",
                      f"    req/s {result['rps']:.3f}x{verdict}",
                      f"    rounds {rounds} (median {result['rps_median_of_rounds']:.3f}x); "
                      f"p99 {result['p99']:.3f}x; CPU per request "
                      f"{result['cpu_per_request']:.3f}x"]
            if "bound" in result:
                bound = result["bound"]
                lines.append(
                    f"    at most {bound['ratio']:.2f}x on an idle {bound['cores']}-core machine: "
                    f"{bound['cores']} x {bound['one_us']:.0f} us (one process, one core) / "
                    f"({bound['workers_us']:.0f} us workers + {bound['wrk_us']:.0f} us wrk + "
                    f"{bound['irq_us']:.0f} us interrupts, sharing every core)")
            if "by_role" in result:
                lines += ["    by role (issue 18; all the fronts, nginx workers, children and "
                          "hypercorns summed):",
                          *proxy_lines(result["by_role"], indent="      ", rps=False)]
    lines += ["", "CPU us per request by process (median; main: the process started, child "
              "N.M: child M of its child N):"]
    lines += [f"  {target.name:<{NAME_WIDTH}} {process_shares(target)}" for target in targets]
    lines += ["", "request lines logged (every server's output file; nginx's access.log): "
              + ", ".join(f"{name} {count}" for name, count in logged.items())]
    lines += cli.warnings(targets)
    lines += access_log_warnings(modes, logged)
    lines += [f"WARNING: {target.name} closes the client connection after every response"
              for target in targets if target.keep_alive is False]
    return "\n".join(lines)


def short_name(target: Target, name: str) -> str:
    """A process of ``target`` named relative to it: ``main`` for the process the benchmark
    started (the supervisor, the server's parent), ``child N`` and ``child N.M`` for its
    descendants; the processes of a stack of programs keep their own names."""
    if name == target.name:
        return "main"
    return name.removeprefix(f"{target.name}'s ")


def process_shares(target: Target) -> str:
    """``TOTAL (main N, child 1 N, child 1.1 N, ...)``: the target's median CPU microseconds
    per request, all and by process (:func:`short_name`)."""
    return cli.cpu_note({short_name(target, name): value
                         for name, value in cli.median_cpu(target).items()})


def results_document(targets: list[Target], medians: dict[str, dict[str, float]],
                     comparisons: dict[str, list[dict[str, Any]]], bench: Bench,
                     source: dict[str, Any], options: argparse.Namespace, wrk: str,
                     nginx: str | None, logged: dict[str, int]) -> dict[str, Any]:
    tools = {"nginx": nginx_version(nginx)} if nginx else {}
    return {
        **cli.document_header("workers"),
        "modes": bench.modes.settings(),
        "request_lines_logged": logged,
        "comparisons": comparisons,
        "targets_met": {f"{result['candidate']} / {result['baseline']}": result["met"]
                        for results in comparisons.values() for result in results
                        if result["target"] is not None},
        "settings": cli.load_settings(options, "only", "access_log", "event_loop"),
        "environment": cli.environment(wrk, ("hostkit", "hostkit-uvicorn", "hypercorn",
                                             "uvicorn", "gunicorn", "httptools", "anyio",
                                             "h11"), **tools),
        "servers": {
            target.name: {
                "commands": {process.name: process.args for process in target.processes},
                "hostkit_toml": HOSTKIT_SETTINGS.get(target.name),
                "client_keep_alive": target.keep_alive,
                "uvloop_by_process": target.uvloop,
                "median": medians[target.name],
                "cpu_us_per_request": {"median": cli.median_cpu(target), "runs": target.cpu},
                "machine": target.machine,
                "connections_halfway": target.during,
                "runs": cli.runs(target),
            }
            for target in targets
        },
        "leftover_processes": bench.leftovers,
        "stop_hangs": bench.hangs,
        "source": source,
    }


# --- main ----------------------------------------------------------------------------------

def check_installed(comparisons: Sequence[str]) -> None:
    """Exit saying what to install when a comparison's Python packages are missing."""
    if "uvicorn" not in comparisons:
        return
    for distribution in ("uvicorn", "hostkit-uvicorn", "gunicorn"):
        if distribution_version(distribution) == "not installed":
            raise SystemExit(f"{distribution} is not installed: run `make setup` and "
                             "`.venv/bin/pip install -e '.[bench]'` (gunicorn), or leave the "
                             "uvicorn comparison out with --only")


def start_all(tools: Tools, names: Sequence[str]) -> list[Target]:
    targets = []
    for name in names:
        target = STARTERS[name](tools, name)
        check_answer(name, fetch(target.url))
        target.keep_alive = keeps_alive(target.url)
        target.uvloop = cli.uvloop_processes(target)
        count = remember_processes(tools.bench, target)
        print(f"{name}: {target.url} ({count} processes, first pid {target.processes[0].pid}); "
              f"client keep-alive: {'yes' if target.keep_alive else 'NO'}; "
              f"{cli.loop_note(target)}", flush=True)
        targets.append(target)
    return targets


def main(argv: Sequence[str] | None = None) -> int:
    """Run the benchmark; 0 when it ran (whether or not the targets are met), 1 on failure."""
    options = parse_args(argv)
    wrk = ensure_wrk()
    check_installed(options.only)
    nginx = (ensure_program("nginx", "nginx-light", why=" (the reverse proxy compared with)")
             if "outofprocess" in options.only else None)
    modes = cli.modes_of(options, hostkit_environment())
    print(f"servers: {modes.describe()}", flush=True)
    source = {"at_start": source_state(*SOURCES)}
    targets: list[Target] = []
    logged: dict[str, int] = {}
    failed = False
    with tempfile.TemporaryDirectory(prefix="hostkit-bench-workers-") as root_name:
        root = Path(root_name)
        root.chmod(0o755)
        logs = root / "logs"
        logs.mkdir()
        stack = contextlib.ExitStack()
        bench = Bench(stack, root_name, modes=modes, logs=logs)
        stack.callback(check_folders, bench, root)  # the last things done: after every stop
        stack.callback(bench.check_leftovers)
        try:
            with stack:
                targets = start_all(Tools(bench, root, nginx), targets_of(options.only))
                cli.measure(wrk, targets, options, name_width=NAME_WIDTH, count_cpu=True,
                            cpu_detail=False, order=cli.alternations,
                            during=connections_by_process)
                for target in targets:
                    remember_processes(bench, target)
        except BenchmarkError as error:
            print(f"benchmark failed: {error}", file=sys.stderr)
            failed = True
        logged = {**request_lines(root, logs.iterdir()),
                  **request_lines(root, root.glob("*/access.log"))}
    if failed:
        return 1
    source["at_end"] = source_state(*SOURCES)
    by_name = {target.name: target for target in targets}
    medians = {target.name: figures(target, options.duration) for target in targets}
    comparisons = {name: [compare(ratio, by_name, medians) for ratio in COMPARISONS[name]]
                   for name in COMPARISONS if name in options.only}
    for result in comparisons.get("scaling", []):
        if result["candidate"] == HOSTKIT:
            result["bound"] = scaling_bound(medians[HOSTKIT], medians[result["baseline"]],
                                            os.cpu_count() or 1)
    for result in comparisons.get("outofprocess", []):
        if (result["candidate"], result["baseline"]) == (OUTOFPROCESS, NGINX_HYPERCORN):
            result["by_role"] = proxy_comparison(by_name[OUTOFPROCESS],
                                                 by_name[NGINX_HYPERCORN], GARDEN)
    print(format_report(targets, medians, comparisons, options, modes, logged))
    if bench.leftovers:
        print(f"BUG: {len(bench.leftovers)} process(es) outlived the benchmark's stop; "
              "killed (see above)")
    else:
        print("no leftover processes after stopping everything")
    for hang in bench.hangs:
        print(f"BUG? {hang['name']} (pid {hang['pid']}) did not exit within {STOP_TIMEOUT:g} s "
              "of SIGTERM and was killed (its stacks are in the JSON results)")
    if source["at_start"]["sha256"] != source["at_end"]["sha256"]:
        print(f"WARNING: files under {', '.join(SOURCES)}/ changed during the run: the "
              "targets may have run different code (see 'source' in the JSON)")
    cli.write_results(results_document(targets, medians, comparisons, bench, source, options,
                                       wrk, nginx, logged), options.output)
    return 0


if __name__ == "__main__":
    sys.exit(main())
