"""Tools nobody on this project wrote, against both hosting models: slowhttptest, sslscan,
h2load (Debian packages ``slowhttptest``, ``sslscan``, ``nghttp2-client``; ``make tools``
installs them).

Each run starts ``tests/programs/stream_10mb.py`` (:class:`Served`) InProcess, or
OutOfProcess as the front and its child, on http and https (a trustme certificate), without
the access log, and points one tool at it:

- :func:`run_slow`: ``slowhttptest`` in one of its four modes (``-H`` slowloris, ``-B`` slow
  body, ``-X`` slow read of a 10 MB response, ``-R`` range header) while a probe client sends
  a normal request on a new connection every 0.1 s. Figures: the probes answered (within
  5 s: a probe unanswered that long is a timing problem, :mod:`tests.hardening.report`) and
  their p99, and the resident memory (VmRSS) of every process before, at the end of the run,
  after it (:attr:`SlowRun.after`) and its peak over that time. Targets: every probe
  answered, growth within :meth:`SlowRun.growth_limit_mb` (about 150 KB per slow
  connection), and given back to within :data:`RELEASED_MB` of the start 30 s after the run
  (full runs); a process over :attr:`SlowRun.cap_mb` is killed and the run fails;
- :func:`run_sslscan`: every protocol and cipher suite the TLS listener accepts; target:
  nothing outside Mozilla's "intermediate" profile (:data:`TLS12_SUITES`,
  :data:`TLS13_SUITES`), no compression, no insecure renegotiation;
- :func:`run_h2load`: a short bounded h2load run over TLS (ALPN ``h2``) or in cleartext
  (prior knowledge, ``h2c``); figures: req/s and failures; target: HTTP/2 spoken and no
  request failed.

A tool that is not installed raises :class:`ToolMissing`, whose message says how to install
it: the suites fail rather than skip, since CI installs the tools.
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import os
import re
import shutil
import signal
import socket
import ssl
import subprocess
import tempfile
import urllib.request
import xml.etree.ElementTree as ElementTree
from collections.abc import Iterator
from pathlib import Path
from types import TracebackType

import anyio
import trustme

from hostkit.testing import Program, python, write_settings
from tests.hardening.report import timing
from tests.support.fronts import child_program, front_settings
from tests.support.http import RequestFailed, build, request_once
from tests.support.load import Sample, failed, latency_ms, now
from tests.support.paths import PROGRAMS
from tests.support.processes import LOOPBACK, free_port

MODELS = ("InProcess", "OutOfProcess")
STREAM_APP = PROGRAMS / "stream_10mb.py"  # /stream: 10 MB; anything else: ok
BODY_APP = PROGRAMS / "hardening_app.py"  # /whoami reads the whole request body
#: The Debian package of each tool.
PACKAGES = {"slowhttptest": "slowhttptest", "sslscan": "sslscan", "h2load": "nghttp2-client"}
START_TIMEOUT = 60.0
#: Resident memory a process may keep above its start :data:`RELEASE_WITHIN` seconds after
#: the slow clients have gone (checked by the runs that wait that long: the full ones).
RELEASED_MB = 50.0
RELEASE_WITHIN = 30.0
#: Memory a slow connection may cost, and what any run may add on top (the process's own
#: warm-up: imports, the first TLS context, the buffers of the probe's connections).
PER_CONNECTION_KB = 150.0
SLACK_MB = 30.0
#: A served process using more than this is killed and the run ends (the machine is shared);
#: the full runs allow more (:attr:`SlowRun.cap_mb`), to show how far a server goes.
MEMORY_CAP_MB = 1500.0


class ToolMissing(Exception):
    """An external tool the suite needs is not installed; the message says how to get it."""


def tool(name: str) -> str:
    """The path of the external tool ``name``; :class:`ToolMissing` when it is not on PATH."""
    found = shutil.which(name)
    if found is None:
        raise ToolMissing(f"{name} is not installed: run `make tools` as root (it runs "
                          f"`apt-get install {' '.join(PACKAGES.values())}`), or install the "
                          f"Debian package {PACKAGES[name]} yourself")
    return found


def rss_mb(pid: int) -> float | None:
    """The resident memory of process ``pid`` in MB (VmRSS); None when it is gone."""
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return None
    match = re.search(r"^VmRSS:\s+(\d+) kB", status, re.MULTILINE)
    return int(match.group(1)) / 1024 if match else None


@functools.cache
def hostkit_file(folder: Path) -> str:
    """The ``hostkit/__init__.py`` a program in ``folder`` imports (with this interpreter and
    environment); asked of a new interpreter once per folder, since it does not change."""
    return subprocess.run(
        python("-c", "import hostkit; print(hostkit.__file__)"), cwd=folder,
        capture_output=True, text=True, timeout=START_TIMEOUT, check=True).stdout.strip()


class Served:
    """``program`` (default :data:`STREAM_APP`) served in ``model`` on ``backend``, on http
    (:attr:`port`) and https (:attr:`secure_port`, with a certificate of an ``ECDSA`` or
    ``RSA`` ``key``: each allows only the TLS 1.2 suites of its kind), listening (and
    OutOfProcess with its child started) once constructed; stopped at the end of its
    ``with`` block.

    The programs import hostkit as this interpreter does from ``program``'s folder: with
    ``PYTHONPATH`` set, from there (:attr:`hostkit_file` says which copy that is).
    """

    def __init__(self, model: str, backend: str, *, program: Path = STREAM_APP,
                 key: str = "ECDSA"):
        self.model, self.backend, self.key = model, backend, key
        self._folder = tempfile.TemporaryDirectory(prefix=f"hostkit-tools-{model}-")
        self.root = Path(self._folder.name)
        self.port, self.secure_port = free_port(), free_port()
        self.url = f"http://{LOOPBACK}:{self.port}"
        self.secure_url = f"https://{LOOPBACK}:{self.secure_port}"
        pem = self.root / "server.pem"
        trustme.CA().issue_cert(LOOPBACK, key_type=trustme.KeyType[key]) \
            .private_key_and_cert_chain_pem.write_to_path(str(pem))
        tls = {"certificate": str(pem), "private_key": str(pem)}
        logging = {"access_log": False}
        write_settings(self.root, {"hosting_model": "InProcess", "shutdown_timeout": 5,
                                   "tls": tls, "logging": logging}
                       if model == "InProcess"
                       else front_settings(module=child_program(program), tls=tls,
                                           logging=logging))
        self.program = Program(python(str(program), f"--urls={self.url};{self.secure_url}",
                                      f"--async_backend={backend}"), self.root,
                               name=f"{model} ({backend})")
        try:
            self.program.wait_started(START_TIMEOUT)
            with urllib.request.urlopen(f"{self.url}/", timeout=START_TIMEOUT) as answer:
                answer.read()
            self.hostkit_file = hostkit_file(program.parent)
            if model == "OutOfProcess":
                self.program.wait_until(self.program.started_children, START_TIMEOUT,
                                        "the child started")
        except BaseException:
            self.stop()
            raise

    def pids(self) -> dict[str, int]:
        """The processes that serve: ``{"InProcess": pid}``, or ``{"front": pid, "child":
        pid}`` (the newest child)."""
        if self.model == "InProcess":
            return {"InProcess": self.program.pid}
        return {"front": self.program.pid, "child": self.program.started_children()[-1][0]}

    def speaks_h2(self) -> bool:
        """Whether the TLS listener negotiates HTTP/2 (ALPN ``h2``)."""
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        context.check_hostname, context.verify_mode = False, ssl.CERT_NONE
        context.set_alpn_protocols(["h2", "http/1.1"])
        with socket.create_connection((LOOPBACK, self.secure_port), timeout=10) as raw, \
                context.wrap_socket(raw) as tls:
            return tls.selected_alpn_protocol() == "h2"

    def stop(self) -> None:
        self.program.stop(15)
        self._folder.cleanup()

    def __enter__(self) -> Served:
        return self

    def __exit__(self, kind: type[BaseException] | None, error: BaseException | None,
                 traceback: TracebackType | None) -> None:
        self.stop()


# --- slowhttptest --------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class SlowRun:
    """One slowhttptest run: its mode flag, the path it attacks, its other arguments (``-c``
    connections, ``-l`` seconds ...), when to read memory after it (seconds), and the
    program served."""

    mode: str
    path: str
    arguments: tuple[str, ...]
    after: tuple[float, ...]
    program: Path = STREAM_APP
    cap_mb: float = MEMORY_CAP_MB

    def argument(self, flag: str, default: int) -> int:
        """The value given to ``flag`` (e.g. ``-c``), or slowhttptest's default."""
        values = list(self.arguments)
        return int(values[values.index(flag) + 1]) if flag in values else default

    @property
    def connections(self) -> int:
        return self.argument("-c", 50)

    @property
    def length(self) -> int:
        return self.argument("-l", 240)

    def growth_limit_mb(self) -> float:
        """How much a process may grow during this run: about 150 KB per slow connection
        plus :data:`SLACK_MB`, and never more than issue 17's 150 MB."""
        return min(150.0, self.connections * PER_CONNECTION_KB / 1024 + SLACK_MB)


MODES = {"-H": "slowloris", "-B": "slow body", "-X": "slow read", "-R": "range"}
_STREAM = "/stream"  # 10 MB
#: CI's runs: 100 connections for 5 s (300 for 6 s for ``-X``, enough to show a buffer that
#: grows with the response), memory read once 1 s after: CI checks the peak, not the release
#: (which only the full runs wait for), and the peak is reached while the slow clients hold
#: their connections.
QUICK_SLOW = (
    SlowRun("-H", "/", ("-c", "100", "-r", "100", "-i", "1", "-l", "5"), (1,)),
    SlowRun("-B", "/whoami", ("-c", "100", "-r", "100", "-i", "1", "-s", "8192", "-l", "5"),
            (1,), BODY_APP),
    SlowRun("-X", _STREAM, ("-c", "300", "-r", "150", "-w", "512", "-y", "1024", "-n", "2",
                            "-z", "32", "-k", "3", "-l", "6"), (1,)),
    SlowRun("-R", "/", ("-c", "100", "-r", "100", "-a", "5", "-b", "2000", "-l", "5"), (1,)),
)
#: The full runs: ``-X`` as issue 17 ran it; the others at the same size.
FULL_SLOW = (
    SlowRun("-H", "/", ("-c", "1000", "-r", "200", "-i", "1", "-l", "20"), (10, 30)),
    SlowRun("-B", "/whoami", ("-c", "1000", "-r", "200", "-i", "1", "-s", "65536", "-l",
                              "20"), (10, 30), BODY_APP),
    SlowRun("-X", _STREAM, ("-c", "1000", "-r", "200", "-w", "512", "-y", "1024", "-n", "5",
                            "-z", "32", "-k", "3", "-l", "20"), (10, 30), cap_mb=3000),
    SlowRun("-R", "/", ("-c", "1000", "-r", "200", "-a", "5", "-b", "2000", "-l", "20"),
            (10, 30)),
)


@dataclasses.dataclass
class SlowFigures:
    model: str
    backend: str
    run: SlowRun
    hostkit_file: str
    #: process name -> MB "before", at the "end" of the tool's run, "+10 s" ... after it,
    #: and the "peak" over the whole time (read every 0.2 s).
    rss: dict[str, dict[str, float]]
    probes: list[Sample]
    tool_status: dict[str, str]     # slowhttptest's own statistics (:func:`_statistics`)
    tool_exit: str                  # its "Exit status:" line
    replaced: bool = False          # the child changed during the run
    capped: str = ""                # a process went over the run's cap_mb (and was killed)

    @property
    def answered(self) -> int:
        return len(self.probes) - len(failed(self.probes))

    def growth(self, process: str, reading: str) -> float:
        return self.rss[process][reading] - self.rss[process]["before"]

    def lines(self) -> list[str]:
        name = MODES[self.run.mode]
        found = [f"slowhttptest {self.run.mode} ({name}) {self.model} ({self.backend}) "
                 f"{' '.join(self.run.arguments)} on {self.run.path}: probes "
                 f"{self.answered}/{len(self.probes)} answered, p99 "
                 f"{latency_ms(self.probes, 0.99):.0f} ms; slowhttptest: "
                 + ", ".join(f"{key} {value}" for key, value in self.tool_status.items())
                 + f"; {self.tool_exit or 'no exit status'}"]
        for process, readings in self.rss.items():
            found.append(f"  RSS {process}: " + ", ".join(f"{reading} {value:.0f} MB"
                                                         for reading, value in readings.items()))
        return found

    def problems(self) -> list[str]:
        what = f"{self.run.mode} {self.model} ({self.backend})"
        found = []
        unanswered = failed(self.probes)
        late = [probe for probe in unanswered if probe.failure == "timeout"]
        if not self.probes or len(late) < len(unanswered):
            kinds = sorted({probe.failure or str(probe.status) for probe in unanswered})
            found.append(f"{what}: {len(unanswered)} of {len(self.probes)} probes not "
                         f"answered ({', '.join(kinds)})")
        elif late:  # no answer within 5 s: on a loaded machine, that can be the machine
            found.append(timing(f"{what}: {len(late)} of {len(self.probes)} probes not "
                                "answered within 5 s"))
        if self.capped:
            found.append(f"{what}: {self.capped}")
        if self.replaced:
            found.append(f"{what}: the child was replaced during the run")
        limit = self.run.growth_limit_mb()
        for process, readings in self.rss.items():
            if self.capped:
                break
            if "gone" in readings:
                found.append(f"{what}: {process} ended during the run")
                continue
            peak = self.growth(process, "peak")
            if peak > limit:
                found.append(f"{what}: {process} grew {peak:.0f} MB (limit {limit:.0f} MB)")
            last = f"+{self.run.after[-1]:g} s"
            if self.run.after[-1] >= RELEASE_WITHIN and \
                    self.growth(process, last) > RELEASED_MB:
                found.append(f"{what}: {process} still {self.growth(process, last):.0f} MB "
                             f"above its start at {last} (limit {RELEASED_MB:.0f} MB)")
        return found


async def _probe(port: int, stop: anyio.Event, samples: list[Sample]) -> None:
    """A normal ``GET /`` on a new connection every 0.1 s until ``stop``; one sample each."""
    request = build("GET", "/", [("Connection", "close")])
    while not stop.is_set():
        sent = now()
        try:
            response = await request_once(port, request, 5)
        except RequestFailed as failure:
            samples.append(Sample("GET", sent, now(), failure=failure.kind))
        else:
            samples.append(Sample("GET", sent, now(), status=response.status))
        with anyio.move_on_after(0.1):
            await stop.wait()


async def _watch_memory(pids: dict[str, int], peak: dict[str, float], cap_mb: float,
                        capped: list[str], scope: anyio.CancelScope) -> None:
    """Keep the highest RSS of each process in ``peak``, read every 0.2 s, until cancelled.
    A process over ``cap_mb`` ends the run: every served process is killed (a server that
    buffers without bound would take the machine's memory), ``capped`` says which one, and
    ``scope`` is cancelled."""
    while True:
        for name, pid in pids.items():
            peak[name] = max(peak[name], rss_mb(pid) or 0.0)
            if peak[name] > cap_mb:
                capped.append(f"{name} over {cap_mb:.0f} MB: killed")
                for victim in pids.values():
                    with contextlib.suppress(OSError):
                        os.kill(victim, signal.SIGKILL)
                scope.cancel()
                return
        await anyio.sleep(0.2)


def _read(pids: dict[str, int]) -> dict[str, float | None]:
    return {name: rss_mb(pid) for name, pid in pids.items()}


async def _attack(command: list[str], limit: float, port: int,
                  probes: list[Sample]) -> subprocess.CompletedProcess[bytes]:
    """Run the tool's ``command`` (killed after ``limit`` seconds) with the probe client on
    ``port`` until it ends; what it did."""
    stop = anyio.Event()
    async with anyio.create_task_group() as task_group:
        task_group.start_soon(_probe, port, stop, probes)
        try:
            with anyio.fail_after(limit):
                result = await anyio.run_process(command, check=False,
                                                 stderr=subprocess.STDOUT)
        finally:
            stop.set()
    return result


async def run_slow(served: Served, run: SlowRun) -> SlowFigures:
    """slowhttptest ``run`` against ``served`` with the probe client; bounded by the run's
    ``-l`` plus a minute, and its readings after."""
    pids = served.pids()
    readings: dict[str, dict[str, float | None]] = {name: {"before": value} for name, value
                                                     in _read(pids).items()}
    peak = {name: values["before"] or 0.0 for name, values in readings.items()}
    probes: list[Sample] = []
    capped: list[str] = []
    output = ""
    with tempfile.TemporaryDirectory(prefix="hostkit-slowhttptest-") as folder:
        command = [tool("slowhttptest"), run.mode, *run.arguments, "-p", "5", "-g",
                   "-o", f"{folder}/run", "-u", served.url + run.path]
        async with anyio.create_task_group() as task_group:
            task_group.start_soon(_watch_memory, pids, peak, run.cap_mb, capped,
                                  task_group.cancel_scope)
            result = await _attack(command, run.length + 60, served.port, probes)
            output = result.stdout.decode(errors="replace")
            for name, value in _read(pids).items():
                readings[name]["end"] = value
            waited = 0.0
            for after in run.after:
                await anyio.sleep(after - waited)
                waited = after
                for name, value in _read(pids).items():
                    readings[name][f"+{after:g} s"] = value
            task_group.cancel_scope.cancel()
        statistics = _statistics(Path(folder) / "run.csv")
    for name in pids:
        readings[name]["peak"] = peak[name]
    exit_line = next((line.strip() for line in reversed(_ESCAPES.sub("", output).splitlines())
                      if "Exit status" in line), "")
    rss = {name: {reading: value for reading, value in values.items() if value is not None}
           | ({"gone": 0.0} if None in values.values() else {})
           for name, values in readings.items()}
    return SlowFigures(served.model, served.backend, run, served.hostkit_file, rss, probes,
                       statistics, exit_line, replaced=served.pids() != pids,
                       capped=", ".join(capped))


_ESCAPES = re.compile(r"\x1b\[[0-9;]*[A-Za-z]")


def _statistics(csv: Path) -> dict[str, str]:
    """What slowhttptest's ``-g`` statistics say: the most connections it held at once, how
    many it saw closed, and the seconds its own probe found the service unavailable."""
    try:
        rows = [line.split(",") for line in csv.read_text().splitlines()[1:] if line]
    except OSError:
        return {"statistics": "none written"}
    return {"connected at most": str(max((int(row[3]) for row in rows), default=0)),
            "closed": rows[-1][1] if rows else "0",
            "seconds unavailable": str(sum(row[4] == "0" for row in rows))}


# --- sslscan -------------------------------------------------------------------------------

#: Mozilla's "intermediate" profile (server side TLS 5.x): these TLS 1.2 suites, and TLS 1.3.
TLS12_SUITES = frozenset({
    "ECDHE-ECDSA-AES128-GCM-SHA256", "ECDHE-RSA-AES128-GCM-SHA256",
    "ECDHE-ECDSA-AES256-GCM-SHA384", "ECDHE-RSA-AES256-GCM-SHA384",
    "ECDHE-ECDSA-CHACHA20-POLY1305", "ECDHE-RSA-CHACHA20-POLY1305",
    "DHE-RSA-AES128-GCM-SHA256", "DHE-RSA-AES256-GCM-SHA384", "DHE-RSA-CHACHA20-POLY1305"})
TLS13_SUITES = frozenset({"TLS_AES_128_GCM_SHA256", "TLS_AES_256_GCM_SHA384",
                          "TLS_CHACHA20_POLY1305_SHA256"})
ALLOWED_PROTOCOLS = frozenset({"TLSv1.2", "TLSv1.3"})
#: The certificate kinds a scan runs with: a server offers only the TLS 1.2 suites of its own.
KEYS = ("ECDSA", "RSA")


@dataclasses.dataclass
class TlsFigures:
    model: str
    backend: str
    protocols: list[str]                 # enabled, e.g. "TLSv1.2"
    suites: list[tuple[str, str]]        # accepted (protocol, suite)
    compression: bool
    renegotiation: str                   # "no", "secure", "insecure"
    failure: str = ""                    # sslscan gave no result
    key: str = "ECDSA"                   # the certificate's key

    def lines(self) -> list[str]:
        if self.failure:
            return [f"sslscan {self.model} ({self.backend}, {self.key}): no result: "
                    f"{self.failure}"]
        return [f"sslscan {self.model} ({self.backend}, {self.key}): protocols "
                f"{', '.join(self.protocols)};"
                f" compression {'yes' if self.compression else 'no'}; renegotiation "
                f"{self.renegotiation}; {len(self.suites)} suites: "
                + ", ".join(f"{protocol} {suite}" for protocol, suite in self.suites)]

    def problems(self) -> list[str]:
        what = f"sslscan {self.model} ({self.backend}, {self.key})"
        if self.failure:
            return [f"{what}: {self.failure}"]
        found = [f"{what}: {protocol} offered" for protocol in self.protocols
                 if protocol not in ALLOWED_PROTOCOLS]
        found += [f"{what}: {protocol} {suite} is outside the intermediate profile"
                  for protocol, suite in self.suites
                  if protocol not in ALLOWED_PROTOCOLS
                  or suite not in (TLS13_SUITES if protocol == "TLSv1.3" else TLS12_SUITES)]
        if not any(protocol == "TLSv1.2" for protocol, _ in self.suites):
            found.append(f"{what}: no TLS 1.2 suite accepted")
        if self.compression:
            found.append(f"{what}: TLS compression is supported")
        if self.renegotiation == "insecure":
            found.append(f"{what}: insecure renegotiation is supported")
        return found


def parse_sslscan(model: str, backend: str, xml: str) -> TlsFigures:
    """The figures of sslscan's ``--xml=-`` output."""
    try:
        test = ElementTree.fromstring(xml[xml.index("<?xml"):]).find("ssltest")
    except (ValueError, ElementTree.ParseError) as error:
        return TlsFigures(model, backend, [], [], False, "", f"unreadable output: {error}")
    if test is None or test.find("cipher") is None:
        return TlsFigures(model, backend, [], [], False, "", "no cipher suite found: "
                          + xml[-300:].strip())
    protocols = [f"{node.get('type', '').upper()}v{node.get('version')}"
                 .replace("TLSv", "TLSv").replace("SSLv", "SSLv")
                 for node in test.iter("protocol") if node.get("enabled") == "1"]
    suites = [(node.get("sslversion", ""), node.get("cipher", ""))
              for node in test.iter("cipher")
              if node.get("status") in ("accepted", "preferred")]
    compression = any(node.get("supported") == "1" for node in test.iter("compression"))
    renegotiation = "no"
    for node in test.iter("renegotiation"):
        if node.get("supported") == "1":
            renegotiation = "secure" if node.get("secure") == "1" else "insecure"
    return TlsFigures(model, backend, protocols, suites, compression, renegotiation)


def run_sslscan(served: Served) -> TlsFigures:
    """sslscan against the TLS listener of ``served`` (bounded: 120 s)."""
    command = [tool("sslscan"), "--no-colour", "--xml=-", "--no-heartbleed",
               f"{LOOPBACK}:{served.secure_port}"]
    result = subprocess.run(command, capture_output=True, text=True, timeout=120, check=False)
    figures = parse_sslscan(served.model, served.backend, result.stdout + result.stderr)
    figures.key = served.key
    return figures


# --- h2load --------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class H2Run:
    requests: int
    clients: int
    streams: int        # concurrent streams per client (-m)


QUICK_H2 = H2Run(requests=2000, clients=4, streams=10)
#: At most 1000 requests per connection: hypercorn ends an HTTP/2 connection (GOAWAY) after
#: its ``keep_alive_max_requests`` (1000), and h2load counts the streams refused as failed.
FULL_H2 = H2Run(requests=20000, clients=32, streams=10)
_H2_REQUESTS = re.compile(r"requests: (\d+) total, (\d+) started, (\d+) done, (\d+) succeeded, "
                          r"(\d+) failed, (\d+) errored, (\d+) timeout")
_H2_RATE = re.compile(r"finished in ([\d.]+)(m?s), ([\d.]+) req/s")


@dataclasses.dataclass
class H2Figures:
    model: str
    backend: str
    run: H2Run
    protocol: str        # h2load's "Application protocol", "" when none was negotiated
    succeeded: int
    failed: int          # h2load's "failed" (HTTP errors, errored and timed-out requests)
    per_second: float
    output_tail: str
    expected: str = "h2"  # h2 (TLS, ALPN) or h2c (cleartext, prior knowledge)

    def lines(self) -> list[str]:
        return [f"h2load {self.expected} {self.model} ({self.backend}) -n {self.run.requests} "
                f"-c {self.run.clients} -m {self.run.streams}: protocol "
                f"{self.protocol or 'none'}, {self.succeeded} succeeded, {self.failed} failed, "
                f"{self.per_second:.0f} req/s"]

    def problems(self) -> list[str]:
        what = f"h2load {self.expected} {self.model} ({self.backend})"
        if self.protocol != self.expected:
            return [f"{what}: HTTP/2 not negotiated: {self.output_tail}"]
        if self.failed or self.succeeded != self.run.requests:
            return [f"{what}: {self.failed} failed, {self.succeeded} of {self.run.requests} "
                    "succeeded"]
        return []


def run_h2load(served: Served, run: H2Run, *, secure: bool = True) -> H2Figures:
    """h2load against ``served``'s ``/`` (bounded: 300 s): over TLS (ALPN h2), or with
    ``secure=False`` in cleartext with prior knowledge (h2c)."""
    command = [tool("h2load"), "-n", str(run.requests), "-c", str(run.clients),
               "-m", str(run.streams), "-t", "1",
               f"{served.secure_url if secure else served.url}/"]
    result = subprocess.run(command, capture_output=True, text=True, timeout=300, check=False)
    output = result.stdout + result.stderr
    protocol = (re.search(r"Application protocol: (\S+)", output) or ["", ""])[1]
    counts = _H2_REQUESTS.search(output)
    rate = _H2_RATE.search(output)
    # "failed" counts every request that did not succeed ("errored" and "timeout" among them)
    succeeded, failures = (int(counts.group(4)), int(counts.group(5))) if counts else (0, 0)
    return H2Figures(served.model, served.backend, run, protocol, succeeded, failures,
                     float(rate.group(3)) if rate else 0.0, output.strip()[-300:],
                     "h2" if secure else "h2c")


# --- the suites ----------------------------------------------------------------------------


def slow_suite(full: bool, backends: tuple[str, ...]) -> Iterator[SlowFigures]:
    """Every slowhttptest mode against each model on each backend, one server per mode."""
    for backend in backends:
        for model in MODELS:
            for run in FULL_SLOW if full else QUICK_SLOW:
                with Served(model, backend, program=run.program) as served:
                    yield anyio.run(run_slow, served, run)


def tls_suite(full: bool, backends: tuple[str, ...]) -> Iterator[TlsFigures | H2Figures]:
    """sslscan against each model with an ECDSA and an RSA certificate, then h2load where
    HTTP/2 is served (the front in the full run always, so that it reports whether it is)."""
    for backend in backends:
        for model in MODELS:
            for key in KEYS:
                with Served(model, backend, key=key) as served:
                    yield run_sslscan(served)
                    if key == KEYS[0] and (model == "InProcess" or full or served.speaks_h2()):
                        for secure in (True, False):
                            yield run_h2load(served, FULL_H2 if full else QUICK_H2,
                                             secure=secure)
