"""The front killed with SIGKILL while its children run: no orphan may survive it.

Each round starts a front on the same public port with two children started eagerly, waits
until both listen, SIGKILLs the front, and then checks for two seconds: every child gone
(neither alive nor a zombie), and the public port bindable again (the next round binds it).
This process makes itself a child subreaper for the duration, so orphans come to it and it
can tell a zombie nobody reaps from a process that is gone. :func:`watch_after_kill` and
:func:`bindable` are the checks; the supervisor-kill suite makes them too.
"""

from __future__ import annotations

import dataclasses
import os
import socket
import time

from hostkit.testing import status_now
from tests.hardening.fronts import Front
from tests.support.processes import Subreaper, free_port, process_state

#: Seconds after a kill by which every process it takes with it must be gone.
GRACE = 2.0
#: rounds in CI's run and in the full run.
QUICK = 2
FULL = 20


@dataclasses.dataclass
class Aftermath:
    """What became of the processes a kill should take with it, :data:`GRACE` s later."""

    survivors: list[int]       # alive 2 s after the kill
    zombies: list[int]         # exited, but nobody reaped them
    gone_after: float          # seconds from the kill until every one was gone (GRACE: never)


@dataclasses.dataclass
class Round:
    children: list[int]
    survivors: list[int]       # alive 2 s after the kill
    zombies: list[int]         # exited, but nobody reaped them
    gone_after: float          # seconds from the kill until every child was gone
    port_bindable: bool


def _reap(pid: int) -> None:
    try:
        os.waitpid(pid, os.WNOHANG)
    except ChildProcessError:
        pass  # not ours to reap: its parent (init, or the front) does


def watch_after_kill(pids: list[int], killed: float) -> Aftermath:
    """Watch ``pids`` from ``killed`` (the kill's ``time.monotonic()``) until all are gone or
    :data:`GRACE` s have passed. Called inside :class:`~tests.support.processes.Subreaper`:
    an orphan that exits is this process's zombie then, and is reaped here (that is init's
    job), so a zombie left at the end is one its own parent never reaped."""
    gone_after = GRACE
    while time.monotonic() - killed < GRACE:
        for pid in pids:
            if process_state(pid) == "Z":
                _reap(pid)
        if all(process_state(pid) is None for pid in pids):
            gone_after = time.monotonic() - killed
            break
        time.sleep(0.01)
    return Aftermath(survivors=[pid for pid in pids if process_state(pid) not in (None, "Z")],
                     zombies=[pid for pid in pids if process_state(pid) == "Z"],
                     gone_after=gone_after)


def bindable(port: int) -> bool:
    """Whether 127.0.0.1:``port`` can be listened on, as the front binds it."""
    with socket.socket() as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind(("127.0.0.1", port))
            sock.listen()
        except OSError:
            return False
    return True


def one_round(backend: str, port: int) -> Round:
    """Start a front on ``port`` with two children, SIGKILL it, watch the children."""
    with Front(backend, port=port, module={"eager_start": True,
                                           "processes_per_application": 2}) as front:
        children = [pid for pid, _ in front.wait_children(2)]
        front.wait_until(lambda: all(pid in front.listening for pid in children), 15,
                         "both children listening")
        # Connections on the public port when the front dies, so the port is not idle.
        for _ in range(2):
            if status_now(front.url, "/", timeout=10) != 200:
                raise RuntimeError("the front did not answer 200 before the kill")
        front.process.kill()
        killed = time.monotonic()
        front.process.wait(5)
        after = watch_after_kill(children, killed)
    return Round(children, after.survivors, after.zombies, after.gone_after, bindable(port))


@dataclasses.dataclass
class Figures:
    rounds: list[Round]

    def lines(self) -> list[str]:
        children = sum(len(r.children) for r in self.rounds)
        slowest = max((r.gone_after for r in self.rounds), default=0.0)
        return [f"front SIGKILLed: {len(self.rounds)} times with {children} children "
                f"running: {sum(len(r.survivors) for r in self.rounds)} survived 2 s, "
                f"{sum(len(r.zombies) for r in self.rounds)} zombies, all gone after "
                f"{1000 * slowest:.0f} ms at most; public port bindable again after "
                f"{sum(r.port_bindable for r in self.rounds)} of {len(self.rounds)}"]

    def problems(self) -> list[str]:
        found = []
        for number, round_ in enumerate(self.rounds, 1):
            if round_.survivors or round_.zombies or not round_.port_bindable:
                found.append(f"round {number}: survivors {round_.survivors}, zombies "
                             f"{round_.zombies}, port bindable {round_.port_bindable}")
        return found


def run(backends: list[str], rounds: int) -> Figures:
    """``rounds`` rounds on one port, alternating ``backends``."""
    port = free_port()
    with Subreaper():
        return Figures([one_round(backends[i % len(backends)], port) for i in range(rounds)])
