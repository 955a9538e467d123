"""HTTP/2 over TLS, side by side: hostkit InProcess against bare hypercorn, and the hostkit
OutOfProcess front against nginx (``http2``) in front of a hostkit child over HTTP/1.1.

Run from the repository root::

    python -m bench.http2                      # both pairs, 5 rounds, h2load -c10 -m10
    python -m bench.http2 --pairs inprocess    # only InProcess against bare hypercorn
    python -m bench.http2 --floods             # other clients' p99 during each flood instead

Every server serves :data:`bench.trivial_app.app` on a free 127.0.0.1 port with one
certificate (a throwaway CA's, made by ``trustme``), for the whole run. Each round loads the
two servers of a pair one after the other with ``h2load`` (a warm-up run, then the measured
run), the order alternating between rounds; the CPU time every serving process used during
the measured run gives the CPU per request. Each run is a number of requests per connection
(``-n``), below the 1000 that nginx (``keepalive_requests``) and hypercorn
(``keep_alive_max_requests``) let one connection make by default: both then end it with a
GOAWAY, and h2load does not reconnect, so a timed run (``-D``) would measure connections that
had stopped. Prints the medians and the ratios and writes everything to
``bench/results/http2.json`` (``http2_floods.json`` for ``--floods``).

``--floods`` starts hostkit InProcess (and the front, with ``--pairs outofprocess`` or
``all``), measures one client's p99 over HTTP/2 alone and then while another process floods
the server with new connections of one kind of flood after another, and reads from the
server's log after how many frames each flood connection got its GOAWAY.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import multiprocessing
import os
import re
import secrets
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import trustme

from bench import cli
from bench._harness import BenchmarkError, ensure_program, server_environment, wait_accepting
from bench.outofprocess import (
    Bench,
    hostkit_environment,
    start_hand_child,
)
from tests.support.processes import cpu_seconds, free_port
from tests.support.source import source_state

INPROCESS_TARGET = 0.95   # hostkit InProcess req/s >= 0.95x bare hypercorn's
OUTOFPROCESS_TARGET = 0.8  # the front's req/s >= 0.8x nginx's
HYPERCORN = "bare hypercorn"
INPROCESS = "hostkit InProcess"
NGINX = "nginx http2 + hostkit child"
FRONT = "hostkit OutOfProcess"
PAIRS = {"inprocess": (HYPERCORN, INPROCESS, INPROCESS_TARGET),
         "outofprocess": (NGINX, FRONT, OUTOFPROCESS_TARGET)}
RESULTS = Path(__file__).resolve().parent / "results"
APP = "bench.trivial_app:app"
NAME_WIDTH = 28
#: ``control`` is no flood: the same process opening connections that each make 20
#: legitimate requests, so a p99 during a flood can be told from a p99 on a busy machine.
FLOODS = ("control", "settings", "ping", "rapid-reset", "continuation")
#: the code under test, hashed at the start and the end of a run
SOURCES = ("hostkit", "plugins", "bench")
_FRAMES = re.compile(r"after (\d+) frames")


# --- command line --------------------------------------------------------------------------

def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m bench.http2",
        description="HTTP/2 (TLS, h2load) side by side. Targets: hostkit InProcess >= "
                    f"{INPROCESS_TARGET:.2f}x bare hypercorn; the OutOfProcess front >= "
                    f"{OUTOFPROCESS_TARGET:.2f}x nginx http2 in front of a hostkit child.")
    parser.add_argument("--pairs", choices=("inprocess", "outofprocess", "all"), default="all")
    parser.add_argument("--rounds", type=cli.positive_int, default=5)
    parser.add_argument("--requests-per-connection", type=cli.positive_int, default=900,
                        help="requests each connection makes in a measured run (h2load -n is "
                             "this times -c); keep it below 1000, where nginx and hypercorn "
                             "end a connection")
    parser.add_argument("--warmup", type=cli.count, default=100,
                        help="requests per connection of the warm-up run before each measured "
                             "run (0: none)")
    parser.add_argument("--connections", type=cli.positive_int, default=10, help="h2load -c")
    parser.add_argument("--streams", type=cli.positive_int, default=10,
                        help="h2load -m: concurrent streams per connection")
    parser.add_argument("--floods", action="store_true",
                        help="measure other clients' p99 during floods instead of req/s")
    parser.add_argument("--requests", type=cli.positive_int, default=400,
                        help="--floods: requests per p99 measurement")
    parser.add_argument("--output", type=Path, default=None)
    options = parser.parse_args(argv)
    if options.output is None:
        options.output = RESULTS / ("http2_floods.json" if options.floods else "http2.json")
    return options


# --- certificates and servers --------------------------------------------------------------

@dataclasses.dataclass(frozen=True)
class Certificates:
    pem: Path  # the server's key and certificate chain
    ca: Path   # the CA's certificate, for clients that verify

    @classmethod
    def make(cls, directory: Path) -> Certificates:
        authority = trustme.CA()
        pem, ca = directory / "server.pem", directory / "ca.pem"
        authority.issue_cert("127.0.0.1", "localhost").private_key_and_cert_chain_pem \
            .write_to_path(str(pem))
        authority.cert_pem.write_to_path(str(ca))
        return cls(pem, ca)


def https_url(port: int) -> str:
    return f"https://127.0.0.1:{port}/"


def tls_arguments(certificates: Certificates) -> list[str]:
    return [f"--tls:certificate={certificates.pem}", f"--tls:private_key={certificates.pem}"]


def start_hypercorn(bench: Bench, certificates: Certificates) -> tuple[str, list[Any]]:
    port = free_port()
    argv = [sys.executable, "-m", "hypercorn", "--bind", f"127.0.0.1:{port}", "--certfile",
            str(certificates.pem), "--keyfile", str(certificates.pem), "--worker-class",
            "asyncio", "--workers", "0", APP]
    server = bench.start(HYPERCORN, argv, f"Running on https://127.0.0.1:{port}",
                         server_environment(), bench.cwd)
    return https_url(port), [server]


def hostkit_argv(port: int, certificates: Certificates, *, out_of_process: bool) -> list[str]:
    model = ["--hosting_model=OutOfProcess"] if out_of_process else []
    return [sys.executable, "-m", "bench.hostkit_server", *model,
            f"--urls=https://127.0.0.1:{port}", *tls_arguments(certificates)]


def start_hostkit(bench: Bench, certificates: Certificates, *,
                  out_of_process: bool) -> tuple[str, list[Any]]:
    port = free_port()
    name = FRONT if out_of_process else INPROCESS
    server = bench.start(name, hostkit_argv(port, certificates, out_of_process=out_of_process),
                         f"Now listening on: https://127.0.0.1:{port}", hostkit_environment(),
                         bench.cwd)
    return https_url(port), [server]


NGINX_CONF = """\
worker_processes 1;
daemon off;
error_log {tmp}/error.log;
pid {tmp}/nginx.pid;
events {{ worker_connections 1024; }}
http {{
    access_log off;
    client_body_temp_path {tmp}/client_body;
    proxy_temp_path {tmp}/proxy;
    fastcgi_temp_path {tmp}/fastcgi;
    uwsgi_temp_path {tmp}/uwsgi;
    scgi_temp_path {tmp}/scgi;
    upstream child {{
        server 127.0.0.1:{child_port};
        keepalive 32;
    }}
    server {{
        listen 127.0.0.1:{port} ssl http2;
        ssl_certificate {pem};
        ssl_certificate_key {pem};
        ssl_protocols TLSv1.2 TLSv1.3;
        location / {{
            proxy_pass http://child;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
            proxy_set_header Host $host;
            proxy_set_header X-Forwarded-For $remote_addr;
            proxy_set_header X-Forwarded-Proto $scheme;
            proxy_set_header Hostkit-Token "{token}";
        }}
    }}
}}
"""


def start_nginx_child(bench: Bench, certificates: Certificates, nginx: str,
                      directory: Path) -> tuple[str, list[Any]]:
    """nginx with ``http2`` on TLS, in front of a hostkit child started by hand (the module's
    contract in its environment), over HTTP/1.1 keep-alive."""
    token = secrets.token_urlsafe(32)
    child, child_port = start_hand_child(bench, "hostkit child behind nginx", token)
    port = free_port()
    config = directory / "nginx.conf"
    config.write_text(NGINX_CONF.format(tmp=directory, port=port, child_port=child_port,
                                        pem=certificates.pem, token=token))
    proxy = bench.start("nginx", [nginx, "-p", f"{directory}/", "-e", f"{directory}/error.log",
                                  "-c", str(config)], "\0never\0", server_environment(),
                        str(directory), wait=False)
    wait_accepting(port, 5.0, alive=lambda: proxy.running)
    return https_url(port), [proxy, child]


def speaks_http2(url: str, ca: Path) -> bool:
    """Whether ``url`` answers 200 over HTTP/2 (ALPN h2), as curl sees it."""
    done = subprocess.run(["curl", "-sS", "--http2", "--cacert", str(ca), "-o", "/dev/null",
                           "-w", "%{http_code} %{http_version}", url], capture_output=True,
                          text=True, timeout=30)
    return done.stdout.strip() == "200 2"


# --- h2load --------------------------------------------------------------------------------

@dataclasses.dataclass(frozen=True)
class H2loadRun:
    requests_per_sec: float
    succeeded: int
    failed: int
    mean_ms: float
    max_ms: float
    #: CPU microseconds per succeeded request of every serving process, summed
    cpu_us_per_request: float


_UNITS = {"us": 0.001, "ms": 1.0, "s": 1000.0}


def _ms(text: str) -> float:
    number = re.fullmatch(r"([\d.]+)(us|ms|s)", text)
    if number is None:
        raise BenchmarkError(f"h2load: cannot read the time {text!r}")
    return float(number.group(1)) * _UNITS[number.group(2)]


def run_h2load(h2load: str, url: str, processes: list[Any], options: argparse.Namespace
               ) -> H2loadRun:
    """One warm-up h2load run (``--warmup`` requests per connection), then the measured one
    (``--requests-per-connection``), with the CPU time of every serving process counted
    around it."""
    def command(per_connection: int) -> list[str]:
        return [h2load, f"-c{options.connections}", f"-m{options.streams}", "-t1",
                f"-n{options.connections * per_connection}", url]

    if options.warmup:
        subprocess.run(command(options.warmup), capture_output=True, timeout=120)
    pids = {process.pid for process in processes}
    for process in processes:
        pids.update(cli._descendants(process.pid, "").values())
    before = {pid: cpu_seconds(pid) for pid in pids}
    measured = command(options.requests_per_connection)
    done = subprocess.run(measured, capture_output=True, text=True, timeout=300)
    after = {pid: cpu_seconds(pid) for pid in pids}
    output = done.stdout
    rate = re.search(r"finished in [\d.]+\w+, ([\d.]+) req/s", output)
    counts = re.search(r"requests: \d+ total, \d+ started, \d+ done, (\d+) succeeded, "
                       r"(\d+) failed", output)
    timing = re.search(r"time for request:\s+(\S+)\s+(\S+)\s+(\S+)", output)
    if done.returncode != 0 or rate is None or counts is None or timing is None:
        raise BenchmarkError(f"h2load failed ({done.returncode}): {' '.join(measured)}\n"
                             f"{output}{done.stderr}")
    succeeded = int(counts.group(1))
    cpu = sum(after[pid] - before.get(pid, after[pid]) for pid in pids)
    return H2loadRun(float(rate.group(1)), succeeded, int(counts.group(2)),
                     _ms(timing.group(3)), _ms(timing.group(2)),
                     cpu * 1e6 / max(succeeded, 1))


@dataclasses.dataclass
class Server:
    name: str
    url: str
    processes: list[Any]
    runs: list[H2loadRun] = dataclasses.field(default_factory=list)

    def median(self, field: str) -> float:
        values: list[float] = [getattr(run, field) for run in self.runs]
        return statistics.median(values)


def measure_pair(h2load: str, pair: list[Server], options: argparse.Namespace) -> None:
    """``--rounds`` rounds of one h2load run per server, the order alternating."""
    for index in range(options.rounds):
        for server in pair if index % 2 == 0 else list(reversed(pair)):
            run = run_h2load(h2load, server.url, server.processes, options)
            server.runs.append(run)
            print(f"round {index + 1}/{options.rounds}  {server.name:<{NAME_WIDTH}} "
                  f"{run.requests_per_sec:>9.0f} req/s  mean {run.mean_ms:6.2f} ms  "
                  f"CPU {run.cpu_us_per_request:5.0f} us/request"
                  + (f"  ({run.failed} failed)" if run.failed else ""), flush=True)


def pair_report(baseline: Server, candidate: Server, target: float) -> tuple[list[str],
                                                                              dict[str, Any]]:
    ratio = candidate.median("requests_per_sec") / baseline.median("requests_per_sec")
    cpu_ratio = candidate.median("cpu_us_per_request") / baseline.median("cpu_us_per_request")
    met = ratio >= target
    lines = [f"{server.name:<{NAME_WIDTH}} {server.median('requests_per_sec'):>9.0f} req/s  "
             f"mean {server.median('mean_ms'):6.2f} ms  "
             f"CPU {server.median('cpu_us_per_request'):5.0f} us/request"
             for server in (baseline, candidate)]
    lines.append(f"{candidate.name}/{baseline.name} req/s: {ratio:.3f}x "
                 f"({'MET' if met else 'NOT MET'}: target >= {target:.2f}x); "
                 f"CPU per request {cpu_ratio:.3f}x")
    document = {"ratio": ratio, "cpu_ratio": cpu_ratio, "target": target, "target_met": met,
                "servers": {server.name: {"median": {
                    field: server.median(field) for field in
                    ("requests_per_sec", "mean_ms", "cpu_us_per_request")},
                    "runs": [dataclasses.asdict(run) for run in server.runs],
                    "command": server.processes[0].args} for server in (baseline, candidate)}}
    return lines, document


# --- floods --------------------------------------------------------------------------------

def _flooder(kind: str, host: str, port: int, stop: Any, connections: Any) -> None:
    """In a process of its own: flood ``host:port`` with new connections of ``kind`` until
    ``stop`` is set, counting them in ``connections``."""
    import ssl as ssl_module

    from tests.support.h2_wire import RawH2

    settings = b"\x00\x00\x06\x04\x00\x00\x00\x00\x00\x00\x03\x00\x00\x00\x64"
    ping = b"\x00\x00\x08\x06\x00\x00\x00\x00\x00" + b"12345678"
    while not stop.is_set():
        context = ssl_module.create_default_context()
        context.check_hostname = False
        context.verify_mode = ssl_module.CERT_NONE
        try:
            client = RawH2(host, port, tls=context, timeout=5)
            if kind == "settings":
                client.flood(settings * 100, 100, 20)
            elif kind == "ping":
                client.flood(ping * 100, 100, 20)
            elif kind == "control":
                client.send(b"".join(client.headers(1 + 2 * i) for i in range(20)), 20)
                client.read_responses(20, wait=5)
            elif kind == "rapid-reset":
                client.flood(b"".join(client.rapid_reset(1 + 2 * i) for i in range(600)),
                             1200, 1)
            else:
                client.send(client.continuation_flood_start(1), 1)
                client.flood(client.continuation(1, b"a") * 100, 100, 20)
            if kind != "control":
                client.answer(wait=2)
            client.close()
        except OSError:
            pass
        with connections.get_lock():
            connections.value += 1


def _p99_ms(url: str, ca: Path, count: int) -> float:
    import httpx

    times = []
    with httpx.Client(http2=True, verify=str(ca), timeout=30) as client:
        client.get(url)
        for _ in range(count):
            start = time.perf_counter()
            response = client.get(url)
            times.append(time.perf_counter() - start)
            if response.status_code != 200 or response.http_version != "HTTP/2":
                raise BenchmarkError(f"{url}: {response.status_code} {response.http_version}")
    return statistics.quantiles(times, n=100)[98] * 1000


def measure_floods(server: Server, ca: Path, options: argparse.Namespace) -> dict[str, Any]:
    """For each kind of :data:`FLOODS`, ``--rounds`` times: one client's p99 alone, then
    while another process floods; the medians, and the frames before each GOAWAY."""
    host, _, port = server.url.removeprefix("https://").rstrip("/").rpartition(":")
    figures: dict[str, Any] = {}
    for kind in FLOODS:
        alone, during, frames, connections_made = [], [], [], 0
        cpu_alone = cpu_during = 0.0
        pid = server.processes[0].pid
        for _ in range(options.rounds):
            started = cpu_seconds(pid)
            alone.append(_p99_ms(server.url, ca, options.requests))
            cpu_alone += cpu_seconds(pid) - started
            logged_before = len(server.processes[0].lines)
            started = cpu_seconds(pid)
            stop = multiprocessing.Event()
            connections = multiprocessing.Value("i", 0)
            flooder = multiprocessing.Process(target=_flooder,
                                              args=(kind, host, int(port), stop, connections))
            flooder.start()
            try:
                time.sleep(0.5)
                during.append(_p99_ms(server.url, ca, options.requests))
            finally:
                stop.set()
                flooder.join(30)
                if flooder.is_alive():
                    flooder.kill()
            cpu_during += cpu_seconds(pid) - started
            connections_made += connections.value
            frames += [int(match.group(1)) for line in server.processes[0].lines[logged_before:]
                       if (match := _FRAMES.search(line))]
        p99_alone, p99_during = statistics.median(alone), statistics.median(during)
        # What the server's process spent on the flood: its CPU during the flood, less what
        # the measuring client's requests cost it alone.
        flood_cpu_ms = max(cpu_during - cpu_alone, 0.0) * 1000
        figures[kind] = {"p99_ms_alone": p99_alone, "p99_ms_during": p99_during,
                         "p99_ratio": p99_during / p99_alone, "rounds_alone": alone,
                         "rounds_during": during, "flood_connections": connections_made,
                         "goaways_logged": len(frames),
                         "server_cpu_ms_per_connection": flood_cpu_ms / max(connections_made, 1),
                         "server_cpu_us_per_measured_request":
                             cpu_alone * 1e6 / (options.rounds * options.requests),
                         "frames_before_goaway_max": max(frames, default=None),
                         "frames_before_goaway_median":
                             statistics.median(frames) if frames else None}
        print(f"{server.name:<{NAME_WIDTH}} {kind:<13} p99 alone {p99_alone:6.2f} ms, during "
              f"{p99_during:6.2f} ms ({p99_during / p99_alone:.2f}x); {connections_made} "
              f"connections ({flood_cpu_ms / max(connections_made, 1):.1f} ms of server CPU "
              f"each), {len(frames)} GOAWAYs logged, after at most "
              f"{max(frames, default='-')} frames", flush=True)
    control = figures["control"]["p99_ms_during"]
    for kind in FLOODS[1:]:
        figures[kind]["p99_ratio_to_control"] = figures[kind]["p99_ms_during"] / control
    print(f"{server.name:<{NAME_WIDTH}} p99 during each flood / during the control load: "
          + ", ".join(f"{kind} {figures[kind]['p99_ratio_to_control']:.2f}x"
                      for kind in FLOODS[1:]), flush=True)
    return figures


# --- main ----------------------------------------------------------------------------------

def main(argv: Sequence[str] | None = None) -> int:
    options = parse_args(argv)
    h2load = ensure_program("h2load", "nghttp2-client", why=" (the HTTP/2 load generator)")
    names = ["inprocess", "outofprocess"] if options.pairs == "all" else [options.pairs]
    nginx = ensure_program("nginx", "nginx") if "outofprocess" in names else ""
    document: dict[str, Any] = {**cli.document_header("http2_floods" if options.floods
                                                      else "http2"),
                                "settings": vars(options) | {"output": str(options.output)},
                                "environment": cli.environment(
                                    shutil.which("wrk") or "wrk",
                                    ("hostkit", "hypercorn", "h2", "anyio"),
                                    h2load=subprocess.run([h2load, "--version"],
                                                          capture_output=True, text=True
                                                          ).stdout.strip())}
    report: list[str] = []
    document["source"] = {"at_start": source_state(*SOURCES)}
    with tempfile.TemporaryDirectory(prefix="hostkit-bench-h2-") as cwd:
        os.chmod(cwd, 0o755)  # nginx's worker runs as nobody when started by root
        stack = contextlib.ExitStack()
        bench = Bench(stack, cwd)
        stack.callback(bench.check_leftovers)  # the last thing done: after every stop
        try:
            with stack:
                certificates = Certificates.make(Path(cwd))
                for name in names:
                    report += run_pair(name, bench, certificates, h2load, nginx, options,
                                       document)
        except BenchmarkError as error:
            print(f"benchmark failed: {error}", file=sys.stderr)
            return 1
    document["source"]["at_end"] = source_state(*SOURCES)
    document["stop_hangs"], document["leftovers"] = bench.hangs, bench.leftovers
    if not options.floods:
        print(f"\nload: h2load -c{options.connections} -m{options.streams} "
              f"-n{options.connections * options.requests_per_connection} (after "
              f"{options.warmup} requests per connection to warm up), TLS; median of "
              f"{options.rounds} rounds, order alternating")
    print("\n".join(report))
    if document["source"]["at_start"]["sha256"] != document["source"]["at_end"]["sha256"]:
        print(f"WARNING: files under {', '.join(SOURCES)}/ changed during the run")
    for hang in bench.hangs:
        print(f"BUG? {hang['name']} (pid {hang['pid']}) did not exit within 10 s of SIGTERM; "
              f"where it was stuck:\n{str(hang['stacks']).strip()}\n{hang['log_tail']}")
    cli.write_results(document, options.output)
    return 0


def run_pair(name: str, bench: Bench, certificates: Certificates, h2load: str, nginx: str,
             options: argparse.Namespace, document: dict[str, Any]) -> list[str]:
    """Start one pair, measure it (req/s, or p99 under floods); the report's lines."""
    baseline_name, candidate_name, target = PAIRS[name]
    if name == "inprocess":
        baseline = Server(baseline_name, *start_hypercorn(bench, certificates))
        candidate = Server(candidate_name, *start_hostkit(bench, certificates,
                                                          out_of_process=False))
    else:
        nginx_dir = Path(bench.cwd) / "nginx"
        nginx_dir.mkdir()
        baseline = Server(baseline_name, *start_nginx_child(bench, certificates, nginx,
                                                            nginx_dir))
        candidate = Server(candidate_name, *start_hostkit(bench, certificates,
                                                          out_of_process=True))
    servers = (candidate,) if options.floods else (baseline, candidate)
    unready = [server.name for server in servers
               if not speaks_http2(server.url, certificates.ca)]
    if unready:
        message = f"{', '.join(unready)}: no HTTP/2 (ALPN h2) answer; {name} skipped"
        print(message, flush=True)
        document[name] = {"skipped": message}
        return [message]
    if options.floods:
        document[name] = {candidate.name: measure_floods(candidate, certificates.ca, options)}
        return []
    measure_pair(h2load, [baseline, candidate], options)
    lines, document[name] = pair_report(baseline, candidate, target)
    return ["", *lines]


if __name__ == "__main__":
    sys.exit(main())
