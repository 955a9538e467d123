"""The supervisor killed with SIGKILL while its workers run: no worker, nor a child of one,
may survive it.

Each round starts the probe under a supervisor with two workers on the same port
(:class:`Supervised`): InProcess, or OutOfProcess with one child per worker started eagerly;
waits until every worker is ready (and every child listens), has a few requests answered,
SIGKILLs the supervisor, and then checks for two seconds, as the front-kill suite does
(:func:`~tests.hardening.front_kill.watch_after_kill`): every worker and child gone (neither
alive nor a zombie), and the port bindable again (the next round binds it). Rounds alternate
asyncio and trio.
"""

from __future__ import annotations

import dataclasses
import tempfile
import time
from collections.abc import Mapping
from pathlib import Path

from hostkit.testing import Program, python, status_now, write_settings
from hostkit.testing.program import child_listening
from tests.hardening.front_kill import Aftermath, bindable, watch_after_kill
from tests.support.fronts import child_program, front_settings
from tests.support.paths import PROGRAMS
from tests.support.processes import LOOPBACK, Subreaper, free_port, process_alive

PROBE = PROGRAMS / "probe.py"
START_TIMEOUT = 40.0
STOP_TIMEOUT = 15.0


class Supervised(Program):
    """The probe under a supervisor with ``workers`` workers in ``model``, on
    127.0.0.1:``port`` (default: a free one), serving once constructed: every worker ready
    and, OutOfProcess, every worker's child (one each, started eagerly) listening.

    Its content root is a temporary folder, removed at stop. Worker failures do not count
    against the rapid-fail budget unless ``rapid_fails_per_minute`` says so: the suites kill
    workers on purpose. ``recycling`` adds ``[workers]`` keys (``{"max_requests": 1000}``).
    """

    def __init__(self, backend: str, *, model: str = "InProcess", workers: int = 2,
                 port: int | None = None, rapid_fails_per_minute: int = 100000,
                 recycling: Mapping[str, object] | None = None):
        self.backend = backend
        self.model = model
        self.port = port if port is not None else free_port()
        self.url = f"http://{LOOPBACK}:{self.port}"
        self._temporary: tempfile.TemporaryDirectory[str] | None = \
            tempfile.TemporaryDirectory(prefix="hostkit-supervised-")
        root = Path(self._temporary.name)
        if model == "InProcess":
            settings: dict[str, object] = {"hosting_model": "InProcess", "shutdown_timeout": 5}
        else:
            settings = front_settings(module={**child_program(PROBE), "eager_start": True,
                                              "processes_per_application": 1})
        # This process reads every line the program writes, in the process that runs the
        # load: an access line per request would load the measuring side, not the program.
        settings["logging"] = {"access_log": False}
        settings["workers"] = {"processes": workers,
                               "rapid_fails_per_minute": rapid_fails_per_minute,
                               **(recycling or {})}
        write_settings(root, settings)
        super().__init__(python(str(PROBE), f"--urls={self.url}", f"--async_backend={backend}"),
                         root, name=f"supervisor ({model}, {backend})")
        try:
            self.wait_started(START_TIMEOUT)
            self.wait_workers_ready(workers, START_TIMEOUT)
            if model != "InProcess":
                self.wait_until(lambda: len(self.listening_children()) >= workers,
                                START_TIMEOUT, f"{workers} children listening")
        except AssertionError:
            self.stop()
            raise

    def serving_workers(self) -> list[int]:
        """The workers logged ready that are still alive, oldest first."""
        return [pid for pid in self.ready_workers() if process_alive(pid)]

    def ready_at(self, pid: int) -> float | None:
        """``time.monotonic()`` of the supervisor's "worker pid ``pid`` ready" line; None while
        there is none."""
        return self.line_time(f"worker pid {pid} ready after")

    def listening_children(self) -> list[int]:
        """OutOfProcess: the pid of every child a worker logged listening, oldest first."""
        return [listened[0] for _, line in self.timed_lines()
                if (listened := child_listening(line))]

    def __enter__(self) -> Supervised:
        return self

    def stop(self, timeout: float = STOP_TIMEOUT) -> int:
        """:meth:`Program.stop`, with a longer default bound; then removes the content root."""
        code = super().stop(timeout)
        if self._temporary is not None:
            self._temporary.cleanup()
            self._temporary = None
        return code


@dataclasses.dataclass(frozen=True)
class Settings:
    in_process: int         # rounds with two InProcess workers
    out_of_process: int     # rounds with two OutOfProcess workers, one child each


#: CI's run and the full run (python -m tests.hardening --full): 20 SIGKILLs.
QUICK = Settings(in_process=2, out_of_process=1)
FULL = Settings(in_process=15, out_of_process=5)


@dataclasses.dataclass
class Round:
    model: str
    backend: str
    workers: list[int]
    children: list[int]        # OutOfProcess: the workers' children
    after: Aftermath
    port_bindable: bool


def one_round(backend: str, model: str, port: int) -> Round:
    """Start a supervisor on ``port`` with two workers in ``model``, SIGKILL it, watch what it
    ran."""
    with Supervised(backend, model=model, port=port) as supervisor:
        workers = supervisor.serving_workers()
        children = supervisor.listening_children()
        # Connections on the port when the supervisor dies, so the port is not idle.
        for _ in range(4):
            if status_now(supervisor.url, "/features", timeout=10) != 200:
                raise RuntimeError(f"no answer from the workers before the kill:\n"
                                   f"{supervisor.tail()}")
        supervisor.process.kill()
        killed = time.monotonic()
        supervisor.process.wait(5)
        after = watch_after_kill(workers + children, killed)
    return Round(model, backend, workers, children, after, bindable(port))


@dataclasses.dataclass
class Figures:
    rounds: list[Round]

    def lines(self) -> list[str]:
        workers = sum(len(r.workers) for r in self.rounds)
        children = sum(len(r.children) for r in self.rounds)
        models = ", ".join(f"{sum(r.model == model for r in self.rounds)} {model}"
                           for model in ("InProcess", "OutOfProcess"))
        slowest = max((r.after.gone_after for r in self.rounds), default=0.0)
        return [f"supervisor SIGKILLed: {len(self.rounds)} times ({models}) with {workers} "
                f"workers and {children} children of theirs running: "
                f"{sum(len(r.after.survivors) for r in self.rounds)} survived 2 s, "
                f"{sum(len(r.after.zombies) for r in self.rounds)} zombies, all gone after "
                f"{1000 * slowest:.0f} ms at most; port bindable again after "
                f"{sum(r.port_bindable for r in self.rounds)} of {len(self.rounds)}"]

    def problems(self) -> list[str]:
        found = []
        for number, round_ in enumerate(self.rounds, 1):
            if round_.after.survivors or round_.after.zombies or not round_.port_bindable:
                found.append(f"round {number} ({round_.model}, {round_.backend}): survivors "
                             f"{round_.after.survivors}, zombies {round_.after.zombies}, "
                             f"port bindable {round_.port_bindable}")
        return found


def run(backends: list[str], settings: Settings) -> Figures:
    """The rounds of ``settings`` on one port, alternating ``backends``; the OutOfProcess
    rounds are spread among the InProcess ones."""
    total = settings.in_process + settings.out_of_process
    every = total // settings.out_of_process if settings.out_of_process else total + 1
    models = ["OutOfProcess" if (i + 1) % every == 0 and i // every < settings.out_of_process
              else "InProcess" for i in range(total)]
    port = free_port()
    with Subreaper():
        return Figures([one_round(backends[i % len(backends)], model, port)
                        for i, model in enumerate(models)])
