"""A worker killed under load: one of two InProcess workers SIGKILLed every ``interval`` s
while keep-alive clients run.

The probe runs under a supervisor (:class:`~tests.hardening.supervisor_kill.Supervised`);
every request is ``GET /features``, whose answer names the worker that served it. Each
client keeps one connection and, before each request, checks that the server has not closed
it (as any keep-alive client does); after a failure, a close, or
``requests_per_connection`` requests it opens a new one. A kill takes the worker ready the
longest, once both are ready: it is stopped (SIGSTOP) for the moment it takes to read from
``/proc`` which client connections it holds (by the clients' ports; it cannot accept more
while stopped), then SIGKILLed.

A request is **in flight on the killed worker** when its connection is one of those, it was
sent before the worker was dead (and its end had reached every client it held: see
:func:`wait_dead`) and not answered before the kill. Figures: every failure must
be in flight on a killed worker (so failures <= requests in flight there); none among the
requests sent after a kill on a new or a surviving connection; every answer from a worker's
pid; every killed worker replaced (kill -> the supervisor's "worker pid N ready" line).
"""

from __future__ import annotations

import bisect
import collections
import dataclasses
import itertools
import json
import os
import select
import signal
import time
from pathlib import Path

import anyio
from anyio.abc import SocketAttribute

from tests.hardening.supervisor_kill import Supervised
from tests.support.http import HttpConnection, RequestFailed, build
from tests.support.load import Sample, failed, now, percentile
from tests.support.processes import process_alive, process_state

_TIMEOUT = 20.0
_REQUEST = build("GET", "/features")
_STOPPED_WITHIN = 2.0
#: Seconds a killed worker's ends may take to reach its clients, at most.
_ENDS_SEEN_WITHIN = 0.5


@dataclasses.dataclass(frozen=True)
class Settings:
    clients: int
    kills: int
    interval: float      # seconds between kills, at least (both workers ready at each)
    #: requests a client sends on a connection before it opens another, so connections
    #: spread over both workers again after a kill (the kernel spreads them at accept).
    requests_per_connection: int = 20


#: CI's run and the full run (python -m tests.hardening --full): every 2 s for 60 s.
QUICK = Settings(clients=64, kills=4, interval=2.0)
FULL = Settings(clients=64, kills=30, interval=2.0)


@dataclasses.dataclass
class Answer(Sample):
    """A :class:`Sample` with the client connection it went on and the pid that answered."""

    connection: int = 0    # serial of the connection (one per connect)
    port: int = 0          # the connection's local port; 0: it was never connected
    pid: int = 0           # features.process_id of the answer; 0 without one


@dataclasses.dataclass
class Kill:
    """One kill of worker ``pid``: stopped ``at``, seen dead ``dead_at``."""

    pid: int
    at: float
    #: the client ports of the connections it held, as the kernel saw them (one whose client
    #: was just closing it, after its last request, is one too).
    ports: set[int]
    dead_at: float = 0.0
    replaced_after: float | None = None   # seconds from the kill to the next worker ready
    in_flight: int = 0
    failed: int = 0


class Clients:
    """``count`` keep-alive clients of 127.0.0.1:``port``; see the module docstring.

    :attr:`answers` gets a sample per request, and per failed connect (a request that could
    not be sent).
    """

    def __init__(self, port: int, count: int, requests_per_connection: int):
        self.port = port
        self.count = count
        self.requests_per_connection = requests_per_connection
        self.answers: list[Answer] = []
        #: connection serial -> ``time.monotonic()`` when its connect began.
        self.opened: dict[int, float] = {}
        self._serials = itertools.count(1)

    async def run(self, stop: anyio.Event) -> None:
        """Run every client until ``stop`` is set."""
        async with anyio.create_task_group() as task_group:
            for _ in range(self.count):
                task_group.start_soon(self._client, stop)

    def held(self, answer: Answer, kill: Kill) -> bool:
        """Whether ``answer`` went on a connection the worker of ``kill`` held (a port is
        one connection's at a time)."""
        return answer.port in kill.ports and self.opened[answer.connection] < kill.at

    async def _client(self, stop: anyio.Event) -> None:
        async with HttpConnection(self.port) as connection:
            serial = port = sent_on_it = 0
            while not stop.is_set():
                if connection.connected and sent_on_it >= self.requests_per_connection:
                    await connection.aclose()
                if not connection.connected:
                    serial, port, sent_on_it = next(self._serials), 0, 0
                    self.opened[serial] = now()
                    try:
                        await connection.connect(_TIMEOUT)
                    except RequestFailed as failure:  # a request that could not be sent
                        await self._failed(self.opened[serial], failure, serial, port)
                        continue
                    assert connection.stream is not None
                    port = connection.stream.extra(SocketAttribute.local_port)
                # The check, then the send, with no wait between: a connection the server
                # closed before this point (a new one too) is not written to.
                if _closed_by_server(connection):
                    await connection.aclose()
                    continue
                sent = now()
                sent_on_it += 1
                try:
                    response = await connection.request(_REQUEST, _TIMEOUT)
                except RequestFailed as failure:
                    await self._failed(sent, failure, serial, port)
                    continue
                pid = json.loads(response.body)["process_id"] if response.status == 200 else 0
                self.answers.append(Answer("GET", sent, now(), status=response.status,
                                           connection=serial, port=port, pid=pid))

    async def _failed(self, sent: float, failure: RequestFailed, serial: int,
                      port: int) -> None:
        self.answers.append(Answer("GET", sent, now(), failure=failure.kind,
                                   connection=serial, port=port))
        await anyio.sleep(0.01)  # no busy loop against a port nobody answers


def _closed_by_server(connection: HttpConnection) -> bool:
    """Whether an idle keep-alive ``connection`` has something to read: the server's end
    (or bytes nobody asked for); either way it cannot carry the next request."""
    assert connection.stream is not None
    sock = connection.stream.extra(SocketAttribute.raw_socket)
    poller = select.poll()
    poller.register(sock.fileno(), select.POLLIN)
    return bool(poller.poll(0))


def _socket_inodes(pid: int) -> set[int]:
    """The inodes of every socket process ``pid`` has open."""
    inodes = set()
    folder = Path(f"/proc/{pid}/fd")
    for entry in folder.iterdir():
        try:
            target = os.readlink(entry)
        except OSError:
            continue
        if target.startswith("socket:["):
            inodes.add(int(target[len("socket:["):-1]))
    return inodes


def _client_ports(server_port: int, inodes: set[int]) -> set[int]:
    """The remote (client) ports of the established connections to ``server_port`` among
    the sockets ``inodes`` (``/proc/net/tcp``: addresses as hex ``IP:PORT``, state ``01``
    established; a connection the client has closed is ``08``, close-wait)."""
    ports = set()
    for line in Path("/proc/net/tcp").read_text().splitlines()[1:]:
        fields = line.split()
        local, remote, state, inode = fields[1], fields[2], fields[3], int(fields[9])
        if inode in inodes and state == "01" and int(local.split(":")[1], 16) == server_port:
            ports.add(int(remote.split(":")[1], 16))
    return ports


def kill_worker(pid: int, port: int) -> Kill:
    """Stop worker ``pid``, note the client connections it holds on ``port``, SIGKILL it;
    returns before it is dead (see :func:`wait_dead`). Blocking: it takes milliseconds."""
    at = now()
    os.kill(pid, signal.SIGSTOP)
    deadline = at + _STOPPED_WITHIN
    while process_state(pid) not in ("T", None, "Z") and now() < deadline:
        time.sleep(0.0005)
    ports = _client_ports(port, _socket_inodes(pid))
    os.kill(pid, signal.SIGKILL)
    return Kill(pid, at, ports)


def _clients_still_established(server_port: int, ports: set[int]) -> bool:
    """Whether a client connection to ``server_port`` from one of ``ports`` is still
    established on the client's side (``/proc/net/tcp``: the client's end is the local
    address; state ``01``): the server's end has not reached it yet."""
    for line in Path("/proc/net/tcp").read_text().splitlines()[1:]:
        fields = line.split()
        local, remote, state = fields[1], fields[2], fields[3]
        if state == "01" and int(remote.split(":")[1], 16) == server_port \
                and int(local.split(":")[1], 16) in ports:
            return True
    return False


async def wait_dead(kill: Kill, port: int) -> None:
    """Wait until the killed worker is dead and every client connection it held on ``port``
    has seen its end; note when.

    A zombie's sockets are closed, but the kernel can hand their FINs to the clients' sockets
    a moment later (with the loopback's softirq work deferred): until then a client sees
    an idle connection open and may send on it, and that request is in flight on the dead
    worker. The wait for the ends does not await, so no client connects meanwhile (and so
    none takes a port of ``kill.ports``)."""
    with anyio.fail_after(_TIMEOUT):
        while process_alive(kill.pid):
            await anyio.sleep(0.001)
    deadline = now() + _ENDS_SEEN_WITHIN
    while _clients_still_established(port, kill.ports) and now() < deadline:
        time.sleep(0.0002)
    kill.dead_at = now()


async def _victim(supervisor: Supervised, workers: int) -> int:
    """Once ``workers`` workers are ready and alive: the one ready the longest."""
    with anyio.fail_after(_TIMEOUT * 2):
        while len(serving := supervisor.serving_workers()) < workers:
            await anyio.sleep(0.01)
    return serving[0]


@dataclasses.dataclass
class Figures:
    backend: str
    seconds: float
    kills: list[Kill]
    requests: int
    failures: int
    failures_in_flight: int           # in flight on a killed worker at its kill
    failures_otherwise: int           # target 0
    sent_after_kill: int              # on a new or surviving connection, after a kill
    sent_after_kill_surviving: int    # of those, on a connection opened before that kill
    failed_after_kill: int            # target 0
    new_connections: int              # opened after a kill
    answering_pids: int
    foreign_pids: list[int]           # answered, but no worker of the supervisor's
    failure_kinds: collections.Counter[str]

    @property
    def in_flight(self) -> int:
        return sum(kill.in_flight for kill in self.kills)

    def lines(self) -> list[str]:
        replaced = [k.replaced_after for k in self.kills if k.replaced_after is not None]
        return [
            f"worker killed under load ({self.backend}): {len(self.kills)} SIGKILLs in "
            f"{self.seconds:.0f} s, {self.requests} requests (answers from "
            f"{self.answering_pids} worker pids); {self.failures} failed "
            f"({dict(self.failure_kinds) or 'none'}), {self.failures_in_flight} of them in "
            f"flight on the killed worker ({self.in_flight} in flight there; per kill "
            f"failed/in flight/connections held "
            f"{' '.join(f'{k.failed}/{k.in_flight}/{len(k.ports)}' for k in self.kills)}"
            f"), {self.failures_otherwise} otherwise; {self.failed_after_kill} failed of "
            f"{self.sent_after_kill} sent after a kill on a new or surviving connection "
            f"({self.sent_after_kill - self.sent_after_kill_surviving} on "
            f"{self.new_connections} new ones, {self.sent_after_kill_surviving} on surviving "
            "ones)",
            f"worker replaced after a kill ({self.backend}): {len(replaced)} of "
            f"{len(self.kills)}, kill -> ready median {1000 * percentile(replaced, 0.5):.0f} "
            f"ms, max {1000 * max(replaced, default=0.0):.0f} ms"]

    def problems(self) -> list[str]:
        found = []
        if not self.kills:
            found.append("no kill happened")
        elif not any(kill.ports for kill in self.kills):
            found.append("no killed worker held a client connection: nothing was measured")
        if self.failures_otherwise:
            found.append(f"{self.failures_otherwise} failures not in flight on a killed "
                         "worker")
        if self.failed_after_kill:
            found.append(f"{self.failed_after_kill} requests failed that were sent after a "
                         "kill on a new or surviving connection")
        if self.foreign_pids:
            found.append(f"answers from pids that are no worker: {self.foreign_pids}")
        unreplaced = [kill.pid for kill in self.kills if kill.replaced_after is None]
        if unreplaced:
            found.append(f"killed workers not replaced: {unreplaced}")
        return found


async def run(supervisor: Supervised, settings: Settings, workers: int = 2) -> Figures:
    """Load ``supervisor`` with keep-alive clients, killing a worker every ``interval`` s."""
    clients = Clients(supervisor.port, settings.clients, settings.requests_per_connection)
    kills: list[Kill] = []
    stop = anyio.Event()
    started = now()

    async def killer() -> None:
        last = now()
        for _ in range(settings.kills):
            await anyio.sleep(max(0.0, last + settings.interval - now()))
            kill = kill_worker(await _victim(supervisor, workers), supervisor.port)
            last = kill.at
            kills.append(kill)
            await wait_dead(kill, supervisor.port)
        await anyio.sleep(settings.interval)  # requests after the last kill count too
        await _victim(supervisor, workers)    # ...and its replacement is ready
        stop.set()

    async with anyio.create_task_group() as task_group:
        task_group.start_soon(clients.run, stop)
        task_group.start_soon(killer)
    return _figures(supervisor, clients, kills, now() - started)


def _figures(supervisor: Supervised, clients: Clients, kills: list[Kill],
             seconds: float) -> Figures:
    ready = sorted(at for pid in supervisor.ready_workers()
                   if (at := supervisor.ready_at(pid)) is not None)
    for kill in kills:
        later = [at for at in ready if at > kill.at]
        kill.replaced_after = later[0] - kill.at if later else None
    answers = clients.answers

    def in_flight_at(answer: Answer, kill: Kill) -> bool:
        return clients.held(answer, kill) and answer.sent < kill.dead_at \
            and answer.done >= kill.at

    failed_ids = {id(sample) for sample in failed(list[Sample](answers))}
    failures = [a for a in answers if id(a) in failed_ids]
    for kill in kills:
        kill.in_flight = sum(in_flight_at(a, kill) for a in answers)
        kill.failed = sum(in_flight_at(a, kill) for a in failures)
    in_flight = [a for a in failures if any(in_flight_at(a, k) for k in kills)]
    in_flight_ids = {id(a) for a in in_flight}
    first_death = min((kill.dead_at for kill in kills), default=float("inf"))

    def on_killed_connection(answer: Answer) -> bool:
        return any(clients.held(answer, k) and k.at <= answer.sent for k in kills)

    # Sent after a kill, not on a connection a kill before it took: a new connection, or one
    # that survived. None may fail, unless a later kill caught it in flight.
    after_kill = [a for a in answers if a.sent >= first_death and not on_killed_connection(a)]
    deaths = sorted(kill.dead_at for kill in kills)

    def on_surviving(answer: Answer) -> bool:
        latest_death = deaths[bisect.bisect_right(deaths, answer.sent) - 1]
        return clients.opened[answer.connection] < latest_death

    workers = set(supervisor.ready_workers())
    return Figures(
        backend=supervisor.backend, seconds=seconds, kills=kills, requests=len(answers),
        failures=len(failures), failures_in_flight=len(in_flight),
        failures_otherwise=len(failures) - len(in_flight),
        sent_after_kill=len(after_kill),
        sent_after_kill_surviving=sum(map(on_surviving, after_kill)),
        failed_after_kill=sum(id(a) in failed_ids and id(a) not in in_flight_ids
                              for a in after_kill),
        new_connections=sum(at >= first_death for at in clients.opened.values()),
        answering_pids=len({a.pid for a in answers if a.pid}),
        foreign_pids=sorted({a.pid for a in answers if a.pid and a.pid not in workers}),
        failure_kinds=collections.Counter(a.failure or str(a.status) for a in failures))
