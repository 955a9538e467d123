"""HTTP/2 floods against the OutOfProcess front: each must end in GOAWAY (or the connection
closed) within a bounded number of frames, and other clients' p99 must stay within 2x.

``python -m tests.hardening.h2_floods [--full]`` prints the figures; the quick version runs
from ``tests/security/test_h2_floods_front.py``.

A flood is sent as raw frames (``hyperframe``, ``hpack``), what a hostile client writes: it
never waits for the server, and it writes in batches until the server has closed the
connection. Its figure is the frames the front read before it gave up (the front logs them:
``... after N frames``) and the GOAWAY error code the client got. While floods run back to
back (a new connection after each close, from a process of its own), HTTP/1.1 keep-alive
clients measure their latencies, and their p99 is compared with the p99 of the same clients
while the same attacker floods a decoy (a sink in its own process): the attacker runs on
the front's machine, and its own CPU would otherwise be counted against the front. The p99
with no attacker at all is reported too. Then 200 clients that open streams of a 100 MB
response and never read (no WINDOW_UPDATE): the front's resident memory before and after.
"""

from __future__ import annotations

import argparse
import dataclasses
import re
import socket
import statistics
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import hpack
from hyperframe.frame import (
    ContinuationFrame,
    Frame,
    GoAwayFrame,
    HeadersFrame,
    PingFrame,
    RstStreamFrame,
    SettingsFrame,
)

from tests.hardening.fronts import Front
from tests.hardening.report import timing
from tests.support.paths import PROGRAMS
from tests.support.processes import LOOPBACK

PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"
ENHANCE_YOUR_CALM = 0xB
PROTOCOL_ERROR = 0x1
APP = PROGRAMS / "h2_app.py"
#: ``[server] http2_max_concurrent_streams`` of the front under flood.
STREAM_LIMIT = 20
_BATCH = 200
_FRAMES_LINE = re.compile(r"after (\d+) frames")


def _block(path: bytes = b"/", extra: list[tuple[bytes, bytes]] | None = None) -> bytes:
    return hpack.Encoder().encode([(b":method", b"GET"), (b":scheme", b"http"),
                                   (b":authority", b"a"), (b":path", path), *(extra or [])])


def _start() -> bytes:
    """The preface, the client's SETTINGS, and an ACK of the server's (sent blind)."""
    return PREFACE + SettingsFrame(0).serialize() + SettingsFrame(0, flags=["ACK"]).serialize()


def _headers(stream_id: int, *, end: bool = True) -> bytes:
    flags = ["END_HEADERS"] + (["END_STREAM"] if end else [])
    return HeadersFrame(stream_id, data=_block(), flags=flags).serialize()


def streams_over_the_limit() -> Iterator[bytes]:
    """New streams that stay open (no END_STREAM), far more than the limit."""
    stream_id = 1
    while True:
        yield _headers(stream_id, end=False)
        stream_id += 2


def rapid_reset() -> Iterator[bytes]:
    """HEADERS then RST_STREAM, over and over (CVE-2023-44487)."""
    stream_id = 1
    while True:
        reset = RstStreamFrame(stream_id)
        reset.error_code = 0x8  # CANCEL
        yield _headers(stream_id, end=True) + reset.serialize()
        stream_id += 2


def continuation_flood() -> Iterator[bytes]:
    """One header block that never ends: HEADERS without END_HEADERS, then CONTINUATIONs of
    small header fields (CVE-2024-27316)."""
    yield HeadersFrame(1, data=_block(), flags=["END_STREAM"]).serialize()
    field = hpack.Encoder().encode([(b"x-a", b"b" * 20)])
    while True:
        yield ContinuationFrame(1, data=field).serialize()


def settings_flood() -> Iterator[bytes]:
    while True:
        yield SettingsFrame(0).serialize()


def ping_flood() -> Iterator[bytes]:
    counter = 0
    while True:
        counter += 1
        yield PingFrame(0, opaque_data=counter.to_bytes(8, "big")).serialize()


def oversized_header_list() -> Iterator[bytes]:
    """A header block of 32 fields of 4 KiB each (128 KiB, twice the list limit), in
    CONTINUATION frames of 16 KiB."""
    block = _block(b"/", [(b"x-big-%d" % n, b"v" * 4096) for n in range(32)])
    pieces = [block[i:i + 16384] for i in range(0, len(block), 16384)]
    yield HeadersFrame(1, data=pieces[0], flags=["END_STREAM"]).serialize()
    for index, piece in enumerate(pieces[1:], 1):
        flags = ["END_HEADERS"] if index == len(pieces) - 1 else []
        yield ContinuationFrame(1, data=piece, flags=flags).serialize()
    while True:  # then keep sending what the server would have to read
        yield PingFrame(0, flags=["ACK"]).serialize()


FLOODS: dict[str, Callable[[], Iterator[bytes]]] = {
    "streams over the limit": streams_over_the_limit,
    "rapid reset": rapid_reset,
    "CONTINUATION flood": continuation_flood,
    "SETTINGS flood": settings_flood,
    "PING flood": ping_flood,
    "oversized header list": oversized_header_list,
}

#: The most frames the front may read of each flood before it ends the connection (its
#: budgets, :class:`hostkit.plugin.FloodLimits`, and a little more for the frames of the
#: connection's start and those h2 counts differently).
FRAME_BOUNDS = {
    "streams over the limit": 2 * STREAM_LIMIT + 10,
    "rapid reset": 2 * (2 * STREAM_LIMIT if 2 * STREAM_LIMIT > 100 else 100) + 10,
    "CONTINUATION flood": 20,
    "SETTINGS flood": 40,
    "PING flood": 72,
    "oversized header list": 20,
}


@dataclasses.dataclass
class FloodRun:
    """One flood on one connection."""

    name: str
    sent_frames: int          # frames the client got out before the connection closed
    read_frames: int | None   # frames the front read before it closed (its log line)
    goaway: int | None        # the GOAWAY error code the client got
    closed: bool              # the front closed the connection
    seconds: float

    def problems(self) -> list[str]:
        found = []
        if not self.closed:
            found.append(f"{self.name}: the connection stayed open")
        if self.goaway not in (ENHANCE_YOUR_CALM, PROTOCOL_ERROR):
            found.append(f"{self.name}: GOAWAY {self.goaway}, not ENHANCE_YOUR_CALM")
        bound = FRAME_BOUNDS[self.name]
        if self.read_frames is not None and self.read_frames > bound:
            found.append(f"{self.name}: {self.read_frames} frames read, more than {bound}")
        return found


def _goaway_code(data: bytes) -> int | None:
    """The error code of the first GOAWAY in the server's bytes (frames from the start)."""
    offset = 0
    while offset + 9 <= len(data):
        frame, length = Frame.parse_frame_header(memoryview(data[offset:offset + 9]))
        if offset + 9 + length > len(data):
            break
        if isinstance(frame, GoAwayFrame):
            frame.parse_body(memoryview(data[offset + 9:offset + 9 + length]))
            return frame.error_code
        offset += 9 + length
    return None


def flood_once(port: int, name: str, *, max_frames: int = 20_000,
               timeout: float = 10.0) -> tuple[int, int | None, bool, float]:
    """Send flood ``name`` on a new connection until the front closes it (or ``max_frames``
    were sent): (frames sent, GOAWAY code, closed, seconds)."""
    batches = _batches(name, max_frames)
    received = bytearray()
    started = time.monotonic()
    sent = 0
    closed = False
    with socket.create_connection((LOOPBACK, port), timeout=timeout) as sock:
        sock.sendall(_start())
        sock.setblocking(False)
        for batch in batches:
            if closed:
                break
            view = memoryview(batch)
            while view and not closed:
                try:
                    view = view[sock.send(view):]
                except BlockingIOError:
                    closed = _drain(sock, received, 0.01)
                except OSError:
                    closed = True
            if not closed:
                sent += _BATCH
                closed = _drain(sock, received, 0)
        deadline = time.monotonic() + timeout
        while not closed and time.monotonic() < deadline:
            closed = _drain(sock, received, 0.05)
    code = _goaway_code(bytes(received[9 + int.from_bytes(received[:3], "big"):])) \
        if received else None
    return sent, code, closed, time.monotonic() - started


def _decoy_sink() -> int:
    """A listener in this process that answers a flood as the front does (it reads the
    start, ends its side, drops up to 64 KiB more, closes); returns its port."""
    listener = socket.create_server((LOOPBACK, 0))

    def serve(connection: socket.socket) -> None:
        with connection:
            connection.recv(4096)
            connection.shutdown(socket.SHUT_WR)
            dropped = 0
            while dropped < 65536:
                data = connection.recv(65536)
                if not data:
                    break
                dropped += len(data)

    def accept() -> None:
        while True:
            connection, _ = listener.accept()
            threading.Thread(target=serve, args=(connection,), daemon=True).start()

    threading.Thread(target=accept, daemon=True).start()
    return int(listener.getsockname()[1])


_BATCHES: dict[tuple[str, int], list[bytes]] = {}


def _batches(name: str, frames: int) -> list[bytes]:
    """The flood's frames in batches of :data:`_BATCH`, made once (so a flood loop spends
    its time sending, not serialising)."""
    key = (name, frames)
    if key not in _BATCHES:
        source = FLOODS[name]()
        _BATCHES[key] = [b"".join(next(source) for _ in range(_BATCH))
                         for _ in range(frames // _BATCH)]
    return _BATCHES[key]


def _drain(sock: socket.socket, into: bytearray, wait: float) -> bool:
    """Read what the server sent; True once it closed the connection."""
    sock.settimeout(wait) if wait else sock.setblocking(False)
    try:
        while True:
            data = sock.recv(65536)
            if not data:
                return True
            into += data
    except (BlockingIOError, TimeoutError, socket.timeout):
        return False
    except OSError:
        return True
    finally:
        sock.setblocking(False)


_last_flood = 0.0


def measure_flood(front: Front, name: str) -> FloodRun:
    """One flood, with the front's own count of the frames it read (the front logs one line
    per reason a second: floods measured one after another are a second apart)."""
    global _last_flood
    time.sleep(max(0.0, _last_flood + 1.05 - time.monotonic()))
    before = len(front.lines)
    sent, code, closed, seconds = flood_once(front.port, name)
    # From the end of this flood: the front logged its line before its GOAWAY went out, so
    # the next flood's line comes more than a second after this one's.
    _last_flood = time.monotonic()
    read: int | None = None
    deadline = time.monotonic() + 2
    while time.monotonic() < deadline:
        lines = front.lines[before:]
        match = next((m for line in lines if (m := _FRAMES_LINE.search(line))), None)
        if match:
            read = int(match.group(1))
            break
        if code == PROTOCOL_ERROR:
            break  # h2's own refusal: no flood line
        time.sleep(0.02)
    return FloodRun(name, sent, read, code, closed, seconds)


# -- other clients' latency ------------------------------------------------------------------


def _client_latencies(port: int, stop: threading.Event, out: list[float]) -> None:
    """An HTTP/1.1 keep-alive client asking for ``/`` until ``stop``."""
    request = b"GET / HTTP/1.1\r\nHost: a\r\n\r\n"
    with socket.create_connection((LOOPBACK, port), timeout=10) as sock:
        while not stop.is_set():
            began = time.perf_counter()
            sock.sendall(request)
            data = b""
            while not data.endswith(b"ok"):
                chunk = sock.recv(65536)
                if not chunk:
                    return
                data += chunk
            out.append(time.perf_counter() - began)


def compare(port: int, name: str, seconds: float, rounds: int = 3
            ) -> tuple[float, float, float]:
    """Others' p99 without and with flood ``name``, in ``rounds`` alternating windows of
    ``seconds`` each (the median round of each), so that a machine's own noise falls on
    both: (baseline, during). The attacker runs on this machine, so the baseline has the
    same attacker flooding a decoy (its CPU and system calls taken from the machine, not
    from the front): the ratio is what the flood costs the front's other clients. Returns
    (quiet, baseline, during): quiet is the p99 with no attacker at all."""
    quiet, baseline, during = [], [], []
    for _ in range(rounds):
        quiet.append(p99(latencies(port, seconds)))
        baseline.append(p99(latencies(port, seconds,
                                      during=flood_loop(port, name, decoy=True))))
        during.append(p99(latencies(port, seconds, during=flood_loop(port, name))))
    return statistics.median(quiet), statistics.median(baseline), statistics.median(during)


def p99(values: list[float]) -> float:
    return statistics.quantiles(values, n=100)[98] if len(values) >= 100 else max(values)


def latencies(port: int, seconds: float, clients: int = 4,
              during: Callable[[threading.Event], None] | None = None) -> list[float]:
    """Latencies of ``clients`` keep-alive clients over ``seconds``, with ``during(stop)``
    running in a thread meanwhile (a flood loop)."""
    stop = threading.Event()
    out: list[float] = []
    threads = [threading.Thread(target=_client_latencies, args=(port, stop, out))
               for _ in range(clients)]
    if during is not None:
        threads.append(threading.Thread(target=during, args=(stop,)))
    for thread in threads:
        thread.start()
    time.sleep(seconds)
    stop.set()
    for thread in threads:
        thread.join(15)
    return out


def flood_loop(port: int, name: str, *, decoy: bool = False
               ) -> Callable[[threading.Event], None]:
    """Floods ``name`` on one connection after another until ``stop``, from a process of
    its own (so the attacker does not take the measuring clients' interpreter). With
    ``decoy`` the process floods a sink of its own instead of the front: the same work on
    the same machine, which the front does not see (the baseline's control)."""
    def run(stop: threading.Event) -> None:
        attacker = subprocess.Popen([sys.executable, "-m", "tests.hardening.h2_floods",
                                     "--attack", name, "--port", str(port),
                                     *(["--decoy"] if decoy else [])],
                                    cwd=Path(__file__).parents[2])
        try:
            stop.wait()
        finally:
            attacker.terminate()
            attacker.wait(10)
    return run


@dataclasses.dataclass
class Figures:
    backend: str
    runs: list[FloodRun]
    #: per flood: others' p99 (s) with no attacker, with the attacker on a decoy, during it.
    p99s: dict[str, tuple[float, float, float]]
    non_readers: NonReaders | None = None

    def ratios(self) -> dict[str, float]:
        return {name: during / baseline for name, (_, baseline, during) in self.p99s.items()}

    def lines(self) -> list[str]:
        ratios = self.ratios()
        lines = [f"h2 floods ({self.backend}): frames the front read before GOAWAY, and other "
                 "clients' p99 (no attacker / attacker on a decoy / flood)"]
        for run in self.runs:
            quiet, baseline, during = self.p99s.get(run.name, (0.0, 0.0, 0.0))
            lines.append(
                f"  {run.name}: GOAWAY {run.goaway}, closed {run.closed}, {run.read_frames} "
                f"frames read ({run.sent_frames} sent), {run.seconds * 1000:.0f} ms; p99 "
                f"{quiet * 1000:.1f} / {baseline * 1000:.1f} / {during * 1000:.1f} ms "
                f"({ratios.get(run.name, 0):.2f}x)")
        if self.non_readers is not None:
            lines += self.non_readers.lines()
        return lines

    def problems(self) -> list[str]:
        found = [problem for run in self.runs for problem in run.problems()]
        found += [timing(f"{name}: others' p99 {ratio:.2f}x the baseline")
                  for name, ratio in self.ratios().items() if ratio > 2]
        return found


def flood_front(backend: str) -> Front:
    from tests.support.fronts import child_program
    front = Front(backend, program=APP, module={**child_program(APP), "eager_start": True},
                  server={"http2_max_concurrent_streams": STREAM_LIMIT})
    front.wait_children(1)
    return front


def run(backend: str, seconds: float) -> Figures:
    """Every flood once (its figures), then the latency comparison, ``seconds`` each."""
    front = flood_front(backend)
    with front:
        runs = [measure_flood(front, name) for name in FLOODS]
        p99s = {name: compare(front.port, name, seconds) for name in FLOODS}
        return Figures(backend, runs, p99s, measure_non_readers(front))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--full", action="store_true", help="10 s per measurement, not 2 s")
    parser.add_argument("--attack", help="flood this way, one connection after another, "
                        "until killed (what the latency measurement runs meanwhile)")
    parser.add_argument("--port", type=int)
    parser.add_argument("--decoy", action="store_true",
                        help="with --attack: flood a sink in this process, not the port")
    arguments = parser.parse_args()
    if arguments.attack:
        port = _decoy_sink() if arguments.decoy else arguments.port
        while True:
            flood_once(port, arguments.attack, timeout=2)
    problems = []
    for backend in ("asyncio", "trio"):
        figures = run(backend, 10.0 if arguments.full else 2.0)
        print("\n".join(figures.lines()), flush=True)
        problems += figures.problems()
    for problem in problems:
        print("PROBLEM", problem)
    return 1 if problems else 0



# -- clients that never read -----------------------------------------------------------------


def rss_kib(pid: int) -> int:
    """The resident memory of process ``pid`` (KiB, /proc/PID/status)."""
    with open(f"/proc/{pid}/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    raise AssertionError(f"no VmRSS for {pid}")


def non_reader(port: int, streams: int, size: int) -> socket.socket:
    """A client that opens ``streams`` streams for a ``size``-byte response each and never
    reads (so it never sends WINDOW_UPDATE either): its socket, to keep open."""
    sock = socket.create_connection((LOOPBACK, port), timeout=10)
    frames = [PREFACE, SettingsFrame(0).serialize(), SettingsFrame(0, flags=["ACK"]).serialize()]
    encoder = hpack.Encoder()
    for index in range(streams):
        block = encoder.encode([(b":method", b"GET"), (b":scheme", b"http"),
                                (b":authority", b"a"), (b":path", b"/stream?%d" % size)])
        frames.append(HeadersFrame(1 + 2 * index, data=block,
                                   flags=["END_HEADERS", "END_STREAM"]).serialize())
    sock.sendall(b"".join(frames))
    return sock


@dataclasses.dataclass
class NonReaders:
    backend: str
    clients: int
    streams: int
    before_kib: int
    after_kib: int
    child_before_kib: int
    child_after_kib: int

    def lines(self) -> list[str]:
        return [f"h2 non-readers ({self.backend}): {self.clients} clients x {self.streams} "
                f"streams of a 100 MB response, never reading: front RSS "
                f"{self.before_kib / 1024:.1f} -> {self.after_kib / 1024:.1f} MiB "
                f"(+{(self.after_kib - self.before_kib) / 1024:.1f}), child "
                f"{self.child_before_kib / 1024:.1f} -> {self.child_after_kib / 1024:.1f} MiB"]


def measure_non_readers(front: Front, clients: int = 200, streams: int = 2,
                        settle: float = 3.0) -> NonReaders:
    """RSS of the front (and its child) before and after ``clients`` non-reading clients
    opened their streams and the front has sent all their windows allow."""
    child = front.children[-1][0]
    # Warm up the paths first (one reading client), so the figure is what the clients hold.
    from tests.support.h2client import H2Client
    with H2Client(LOOPBACK, front.port) as warm:
        assert warm.get(b"/stream?1000000").status == 200
    before, child_before = rss_kib(front.process.pid), rss_kib(child)
    sockets = [non_reader(front.port, streams, 100_000_000) for _ in range(clients)]
    try:
        time.sleep(settle)
        after, child_after = rss_kib(front.process.pid), rss_kib(child)
    finally:
        for sock in sockets:
            sock.close()
    return NonReaders(front.backend, clients, streams, before, after, child_before, child_after)


if __name__ == "__main__":
    raise SystemExit(main())
