"""Rolling replacement of a supervisor's workers (issue 14, SPEC §8): SIGHUP under load, a
replacement that fails to start, a configuration that no longer loads, a configuration
change, each recycle reason, failed health checks, a stuck event loop, a host without a
supervisor, and ``--reload``.

Real supervisors and workers in subprocesses (``tests/programs/replaceable_app.py``, whose
workers fail, hang, grow or block on demand), HTTP over real sockets on the test's backend,
which is also the program's (``--async_backend``). What the replacement of an OutOfProcess
module's children does by itself is ``test_child_replacement.py``'s; here OutOfProcess only
appears where the supervisor drives it (``--reload``).

The load clients behave as a pooled HTTP client does: a kept-alive connection the server has
closed while it was idle is noticed before the next request is sent and replaced by a new
one (urllib3's and httpcore's check before reuse); a request that was sent and got no whole
answer is a failure, never retried.
"""

from __future__ import annotations

import contextlib
import functools
import os
import re
import signal
import socket
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import anyio
import anyio.to_thread
import pytest
from anyio.abc import SocketAttribute

from hostkit.processes.recycling import MEMORY_CHECK_INTERVAL
from hostkit.testing import Program, python, worker_of_line, write_settings
from tests.support.http import HttpConnection, RequestFailed, Response, build, request_once
from tests.support.load import Sample, failed, latency_ms, now
from tests.support.paths import PROGRAMS
from tests.support.processes import LOOPBACK, process_alive
from tests.support.supervisors import port_of, supervised_settings

pytestmark = [pytest.mark.anyio, pytest.mark.integration]

PROGRAM = PROGRAMS / "replaceable_app.py"
#: Seconds any one request, and any wait for a log line, may take.
TIMEOUT = 10.0
#: The body of the load clients' POSTs.
BODY = b"b" * 1024
_REPLACING = re.compile(r"replacing worker pid (\d+) \(slot (\d+)\): (.*)")


# -- programs -------------------------------------------------------------------------------


def replace_settings(root: Path, settings: Mapping[str, object]) -> None:
    """Write ``root/hostkit.toml`` anew in one rename, as an editor saves it: a watcher or a
    worker starting meanwhile reads the old file or the new one, never half of one."""
    staging = root / "staging"
    staging.mkdir(exist_ok=True)
    os.replace(write_settings(staging, settings), root / "hostkit.toml")


def start(root: Path, backend: str, *args: str) -> Program:
    """The program started in ``root`` (its content root) on a free port, once its host (the
    supervisor, when there is one) logged "Application started."."""
    program = Program(python(str(PROGRAM), f"--urls=http://{LOOPBACK}:0",
                             f"--async_backend={backend}", *args), cwd=root)
    try:
        program.wait_started(TIMEOUT + 10)
    except AssertionError:
        program.stop()
        raise
    return program


async def in_thread(wait: Callable[..., Any], *args: Any) -> Any:
    """A blocking :class:`Program` wait (each bounded by its timeout), run so that the load
    clients keep running meanwhile."""
    return await anyio.to_thread.run_sync(functools.partial(wait, *args))


def replacements(program: Program) -> list[tuple[int, str]]:
    """``(old pid, reason)`` of every "replacing worker pid" line so far."""
    return [(int(match.group(1)), match.group(3)) for line in list(program.lines)
            if (match := _REPLACING.search(line))]


def line_time(program: Program, text: str) -> float:
    """When the first line containing ``text`` was read; it must exist."""
    at = program.line_time(text)
    assert at is not None, f"no line containing {text!r}:\n{program.output}"
    return at


# -- requests -------------------------------------------------------------------------------


async def get(port: int, path: str = "/pid") -> Response:
    """``GET path`` on a connection of its own (``Connection: close``), bounded."""
    return await request_once(port, build("GET", path, [("Connection", "close")]), TIMEOUT)


async def served_by(port: int, path: str = "/pid") -> int:
    """The pid that answered ``GET /pid`` on a fresh connection (which must be 200)."""
    response = await get(port, path)
    assert response.status == 200, response
    return int(bytes(response.body).split()[0])


def dropped(connection: HttpConnection) -> bool:
    """Whether the server closed ``connection`` while it was idle: its socket reads as ended
    (or reset) without waiting. What a pooled client checks before it reuses a connection."""
    assert connection.stream is not None
    try:
        descriptor = connection.stream.extra(SocketAttribute.raw_socket).fileno()
        with socket.fromfd(descriptor, socket.AF_INET, socket.SOCK_STREAM) as peek:
            return peek.recv(1, socket.MSG_PEEK | socket.MSG_DONTWAIT) == b""
    except BlockingIOError:
        return False
    except OSError:
        return True  # reset, or the event loop closed it on the end of stream already


class Load:
    """``clients`` keep-alive clients requesting continuously until :meth:`stop`: the even
    ones ``POST /work`` with :data:`BODY`, the odd ones ``GET /pid``. Each answer must be 200
    with the answering pid (and, for a POST, the body's length); :attr:`samples` records
    every request, its ``tag`` the answering pid."""

    def __init__(self, port: int, clients: int):
        self.port = port
        self.clients = clients
        self.samples: list[Sample] = []
        #: connections the server closed while idle, replaced before a request was sent.
        self.reconnects = 0
        self._stop = anyio.Event()

    async def run(self) -> None:
        async with anyio.create_task_group() as clients:
            for number in range(self.clients):
                clients.start_soon(self._client, number)

    def stop(self) -> None:
        self._stop.set()

    async def _client(self, number: int) -> None:
        post = number % 2 == 0
        request = build("POST", "/work", body=BODY) if post else build("GET", "/pid")
        async with HttpConnection(self.port) as connection:
            while not self._stop.is_set():
                if connection.connected and dropped(connection):
                    self.reconnects += 1
                    await connection.aclose()
                sent = now()
                try:
                    response = await connection.request(request, TIMEOUT)
                except RequestFailed as failure:
                    self.samples.append(Sample("POST" if post else "GET", sent, now(),
                                               failure=failure.kind))
                    await anyio.sleep(0.01)
                    continue
                words = bytes(response.body).split()
                whole = (response.status == 200 and len(words) == (2 if post else 1)
                         and words[0].isdigit()
                         and (not post or words[1] == str(len(BODY)).encode()))
                self.samples.append(Sample(
                    "POST" if post else "GET", sent, now(),
                    status=response.status if whole else 0,
                    failure="" if whole else f"unexpected answer {response}",
                    tag=words[0].decode() if whole else ""))

    def pids(self, since: float = 0.0, until: float = float("inf")) -> set[int]:
        """The pids that answered requests sent between ``since`` and ``until``."""
        return {int(s.tag) for s in self.samples if s.tag and since <= s.sent <= until}

    def failures(self) -> list[Sample]:
        return failed(self.samples)


async def under_load(port: int, clients: int, during: Callable[[Load], Any]) -> Load:
    """Run ``await during(load)`` while ``clients`` load clients request; returns the load
    once they have stopped."""
    load = Load(port, clients)
    async with anyio.create_task_group() as task_group:
        task_group.start_soon(load.run)
        try:
            await during(load)
        finally:
            load.stop()
    return load


# -- 1. SIGHUP under steady load ------------------------------------------------------------


async def test_sighup_under_load_replaces_every_worker_and_fails_no_request(
        anyio_backend: str, tmp_path: Path) -> None:
    supervised_settings(tmp_path, {"processes": 2})
    with start(tmp_path, anyio_backend) as program:
        old = program.wait_workers_ready(2)
        times: dict[str, float] = {}

        async def reload(load: Load) -> None:
            await anyio.sleep(1.0)
            times["hup"] = now()
            program.signal(signal.SIGHUP)
            await in_thread(program.wait_workers_ready, 4, 2 * TIMEOUT)
            for pid in old:
                await in_thread(program.wait_for_line, f"worker pid {pid} stopped", TIMEOUT)
            times["done"] = max(line_time(program, f"worker pid {pid} stopped") for pid in old)
            await anyio.sleep(0.5)

        load = await under_load(port_of(program), 8, reload)
        new = program.ready_workers()[2:]
        assert len(set(new)) == 2 and not set(new) & set(old), (old, new)
        assert "SIGHUP received: configuration read again" in program.output
        assert sorted(replacements(program)) == sorted(
            (pid, "the configuration was reloaded") for pid in old)
        assert not any(process_alive(pid) for pid in old)

        hup, done = times["hup"], times["done"]
        steady = [s for s in load.samples if s.sent < hup]
        during = [s for s in load.samples if hup <= s.sent <= done]
        steady_p99, reload_p99 = latency_ms(steady, 0.99), latency_ms(during, 0.99)
        print(f"\nSIGHUP, {anyio_backend}: {len(load.samples)} requests, "
              f"{len(load.failures())} failed, {load.reconnects} kept-alive connections found "
              f"closed before a request; p99 {steady_p99:.1f} ms steady, {reload_p99:.1f} ms "
              f"during the reload ({len(during)} requests in {1000 * (done - hup):.0f} ms)")
        assert load.failures() == [], (load.failures()[:5], program.tail(40))
        assert len(steady) >= 100 and len(during) >= 20, (len(steady), len(during))
        # (The kernel may hand all 8 connections to one worker: they connect at once.)
        assert load.pids(until=hup) <= set(old), (load.pids(until=hup), old)
        assert load.pids(since=done) and load.pids(since=done) <= set(new), load.pids(since=done)
        assert reload_p99 < 2000, reload_p99


# -- 2. a replacement that fails to start ---------------------------------------------------


@pytest.mark.parametrize("anyio_backend", ["asyncio"])
async def test_a_replacement_that_fails_to_start_leaves_the_old_worker_serving(
        anyio_backend: str, tmp_path: Path) -> None:
    """Each failed start counts against the rapid-fail budget (1 a minute here): the second
    one exhausts it, and a later SIGHUP replaces nothing while the budget says so."""
    supervised_settings(tmp_path, {"processes": 2, "rapid_fails_per_minute": 1})
    with start(tmp_path, anyio_backend) as program:
        old = program.wait_workers_ready(2)
        (tmp_path / "fail_start").touch()
        program.signal(signal.SIGHUP)
        for pid in old:
            program.wait_for_line(f"the replacement of worker pid {pid} failed to start; it "
                                  "keeps serving", TIMEOUT)
        assert program.output.count("replaceable: fail_start exists, this worker exits") == 2
        assert program.output.count("exited with code 3 before it was ready") == 2
        program.wait_for_line("2 worker failures in the last minute (more than "
                              "workers.rapid_fails_per_minute = 1)", TIMEOUT)
        assert program.ready_workers() == old
        answering = [await served_by(port_of(program)) for _ in range(12)]
        assert set(answering) <= set(old), (answering, old)
        assert all(process_alive(pid) for pid in old)

        (tmp_path / "fail_start").unlink()
        program.signal(signal.SIGHUP)
        for pid in old:
            program.wait_for_line(f"cannot replace worker pid {pid} now: 2 worker failures",
                                  TIMEOUT)
        assert program.ready_workers() == old
        assert await served_by(port_of(program)) in old


# -- 3. a configuration that no longer loads, and a configuration change --------------------


@pytest.mark.parametrize("anyio_backend", ["trio"])
async def test_a_configuration_that_no_longer_loads_is_refused_at_sighup(
        anyio_backend: str, tmp_path: Path) -> None:
    supervised_settings(tmp_path, {"processes": 2})
    with start(tmp_path, anyio_backend) as program:
        old = program.wait_workers_ready(2)
        supervised_settings(tmp_path, {"processes": 2, "max_requests": "often"})
        program.signal(signal.SIGHUP)
        refused = program.wait_for_line("reload refused, the running processes keep serving",
                                        TIMEOUT)
        assert "max_requests" in refused and "often" in refused, refused
        assert "hostkit.toml" in refused, refused
        # The workers still serve, and were not replaced: nothing was started.
        answering = [await served_by(port_of(program)) for _ in range(8)]
        assert set(answering) <= set(old), (answering, old)
        assert program.ready_workers() == old and replacements(program) == []
        assert program.running and all(process_alive(pid) for pid in old)


@pytest.mark.parametrize("anyio_backend", ["asyncio"])
async def test_restart_on_config_change_replaces_the_workers_without_a_failed_request(
        anyio_backend: str, tmp_path: Path) -> None:
    settings: dict[str, Any] = {"shutdown_timeout": 1, "module": {"restart_on_config_change": True},
                                "workers": {"processes": 2}}
    write_settings(tmp_path, settings)
    with start(tmp_path, anyio_backend) as program:
        old = program.wait_workers_ready(2)

        async def change(load: Load) -> None:
            await anyio.sleep(0.5)
            replace_settings(tmp_path, {**settings, "shutdown_timeout": 2})
            await in_thread(program.wait_workers_ready, 4, 2 * TIMEOUT)
            for pid in old:
                await in_thread(program.wait_for_line, f"worker pid {pid} stopped", TIMEOUT)
            await anyio.sleep(0.5)

        load = await under_load(port_of(program), 4, change)
        assert "configuration changed: replacing the app's processes" in program.output
        new = program.ready_workers()[2:]
        assert sorted(replacements(program)) == sorted(
            (pid, "the configuration was reloaded") for pid in old)
        assert load.failures() == [], (load.failures()[:5], program.tail(40))
        done = max(line_time(program, f"worker pid {pid} stopped") for pid in old)
        assert load.pids(since=done) and load.pids(since=done) <= set(new)


# -- 4. recycling ---------------------------------------------------------------------------


@pytest.mark.parametrize("anyio_backend", ["trio"])
async def test_max_requests_recycles_a_worker_without_a_failed_request(
        anyio_backend: str, tmp_path: Path) -> None:
    supervised_settings(tmp_path, {"supervise": True, "max_requests": 10})
    with start(tmp_path, anyio_backend) as program:
        (first,) = program.wait_workers_ready(1)
        port = port_of(program)
        assert [await served_by(port) for _ in range(9)] == [first] * 9
        await anyio.sleep(0.3)
        assert "asking to be recycled" not in program.output
        assert await served_by(port) == first
        program.wait_for_line(f"replacing worker pid {first} (slot 0): it served 10 requests "
                              "(workers.max_requests = 10)", TIMEOUT)

        async def recycles(load: Load) -> None:
            # The first recycle and one more, each worker serving well past 10 requests
            # while its replacement starts.
            await in_thread(program.wait_workers_ready, 3, 2 * TIMEOUT)
            await anyio.sleep(0.3)

        load = await under_load(port, 4, recycles)
        workers = program.ready_workers()
        assert load.failures() == [], (load.failures()[:5], program.tail(40))
        assert {first, workers[1]} <= load.pids(), (load.pids(), workers)
        reasons = {reason for _, reason in replacements(program)}
        assert reasons == {"it served 10 requests (workers.max_requests = 10)"}, reasons
        assert not process_alive(first)


@pytest.mark.parametrize("anyio_backend", ["trio"])
async def test_max_lifetime_recycles_a_worker(anyio_backend: str, tmp_path: Path) -> None:
    supervised_settings(tmp_path, {"supervise": True, "max_lifetime": 1})
    with start(tmp_path, anyio_backend) as program:
        (first,) = program.wait_workers_ready(1)

        async def lifetime(load: Load) -> None:
            await in_thread(program.wait_workers_ready, 2, 1 + TIMEOUT)
            await anyio.sleep(0.3)

        load = await under_load(port_of(program), 2, lifetime)
        assert replacements(program)[0][0] == first
        assert {reason for _, reason in replacements(program)} == {
            "it ran for workers.max_lifetime = 1 s"}
        lived = (line_time(program, f"replacing worker pid {first}")
                 - line_time(program, f"worker pid {first} ready"))
        assert 0.9 <= lived < 3, lived
        assert load.failures() == [], (load.failures()[:5], program.tail(40))
        program.wait_for_line(f"worker pid {first} stopped", TIMEOUT)
        # The second worker's lifetime is 1 s too: it, or one after it, answers.
        assert await served_by(port_of(program)) in program.ready_workers()[1:]


@pytest.mark.parametrize("anyio_backend", ["asyncio"])
async def test_max_memory_recycles_a_worker(anyio_backend: str, tmp_path: Path) -> None:
    supervised_settings(tmp_path, {"supervise": True, "max_memory": 60})
    with start(tmp_path, anyio_backend) as program:
        (first,) = program.wait_workers_ready(1)
        port = port_of(program)
        assert await served_by(port) == first  # under the limit: kept
        allocated = await get(port, "/allocate?80")
        assert bytes(allocated.body) == f"{first} holds 80 MiB".encode(), allocated
        at = now()
        program.wait_workers_ready(2, 3 * MEMORY_CHECK_INTERVAL + TIMEOUT)
        replaced_at = line_time(program, f"replacing worker pid {first}")
        assert replaced_at - at < 3 * MEMORY_CHECK_INTERVAL, replaced_at - at
        ((pid, reason),) = replacements(program)
        assert pid == first and re.fullmatch(
            r"its resident memory \d+ MiB is above workers.max_memory = 60 MiB", reason), reason
        second = program.ready_workers()[1]
        program.wait_for_line(f"worker pid {first} stopped", TIMEOUT)
        assert await served_by(port) == second


# -- 5. hung-app detection ------------------------------------------------------------------


@pytest.mark.parametrize("anyio_backend", ["trio"])
async def test_failed_health_checks_replace_a_worker_whose_replacement_waits_for_its_probe(
        anyio_backend: str, tmp_path: Path) -> None:
    supervised_settings(tmp_path, {"supervise": True},
                        health={"app_path": "/health", "app_interval": 0.3, "app_failures": 2})
    with start(tmp_path, anyio_backend) as program:
        (first,) = program.wait_workers_ready(1)
        port = port_of(program)
        (tmp_path / "hang_health").touch()
        program.wait_for_line(f"replacing worker pid {first} (slot 0): 2 failed health checks "
                              "of health.app_path = /health", TIMEOUT)
        assert f"worker pid {first} failed health check 2 of 2: GET /health got no answer " \
               "within 0.3 s" in program.output
        # The replacement probes the app before it takes a request, and the app still hangs.
        program.wait_for_line("not ready yet: GET /health got no answer within 0.3 s", TIMEOUT)
        assert await served_by(port) == first  # the old worker serves meanwhile
        assert program.ready_workers() == [first]
        (tmp_path / "hang_health").unlink()
        removed = now()
        (_, second) = program.wait_workers_ready(2, TIMEOUT)
        assert line_time(program, f"worker pid {second} ready") > removed
        assert f"[{second}] hostkit.worker: not ready yet" in program.output
        program.wait_for_line(f"worker pid {first} stopped", TIMEOUT)
        assert await served_by(port) == second


@pytest.mark.parametrize("anyio_backend", ["asyncio"])
async def test_a_worker_whose_event_loop_is_blocked_is_replaced(
        anyio_backend: str, tmp_path: Path) -> None:
    supervised_settings(tmp_path, {"supervise": True}, shutdown_timeout=0.5,
                        health={"app_path": "/health", "app_interval": 0.3, "app_failures": 2})
    with start(tmp_path, anyio_backend) as program:
        (first,) = program.wait_workers_ready(1)
        port = port_of(program)
        async def blocking_request() -> None:
            # Never answered: the worker is killed in its time.sleep(30).
            with contextlib.suppress(RequestFailed):
                await request_once(port, build("GET", "/block?30"), 2 * TIMEOUT)

        async with anyio.create_task_group() as task_group:
            task_group.start_soon(blocking_request)
            await in_thread(program.wait_for_line, "replaceable: blocking the event loop",
                            TIMEOUT)
            line = await in_thread(program.wait_for_line, f"replacing worker pid {first} "
                                   "(slot 0): 2 failed health checks", TIMEOUT)
            assert f"worker pid {first} failed health check 2 of 2: no health report for " \
                   "1.6 s" in program.output, line
            (_, second) = await in_thread(program.wait_workers_ready, 2, TIMEOUT)
            await in_thread(program.wait_for_line, f"worker pid {first} did not stop within "
                            "3 s; killing it", TIMEOUT)
            await in_thread(program.wait_for_line, f"worker pid {first} stopped (killed by "
                            "SIGKILL", TIMEOUT)
            task_group.cancel_scope.cancel()
        assert not process_alive(first)
        assert await served_by(port) == second


# -- 6. a host without a supervisor ---------------------------------------------------------


async def test_a_single_inprocess_host_keeps_serving_on_sighup_and_warns_of_recycle_keys(
        anyio_backend: str, tmp_path: Path) -> None:
    write_settings(tmp_path, {"shutdown_timeout": 1, "workers": {"max_requests": 3}})
    with start(tmp_path, anyio_backend) as program:
        assert "Supervising" not in program.output
        assert "sets workers.max_requests, which a single InProcess host cannot apply to " \
               "itself: set [workers] supervise = true" in program.output
        port = port_of(program)
        assert await served_by(port) == program.pid
        program.signal(signal.SIGHUP)
        program.wait_for_line("SIGHUP received: a single InProcess host cannot replace itself; "
                              "set [workers] supervise = true", TIMEOUT)
        # Not replaced, not stopped, and not recycled after max_requests either.
        assert [await served_by(port) for _ in range(5)] == [program.pid] * 5
        assert program.running and "Application is shutting down" not in program.output


# -- 7. --reload ----------------------------------------------------------------------------


@pytest.mark.parametrize(("anyio_backend", "model"), [("trio", "InProcess"),
                                                      ("asyncio", "OutOfProcess")])
async def test_reload_picks_up_an_edited_handler(anyio_backend: str, model: str,
                                                 tmp_path: Path) -> None:
    handler = tmp_path / "handler.py"
    handler.write_text('TEXT = "first edition"\n')
    write_settings(tmp_path, {"shutdown_timeout": 1})
    with start(tmp_path, anyio_backend, "--reload", f"--hosting_model={model}") as program:
        (worker,) = program.wait_workers_ready(1)
        port = port_of(program)
        first = bytes((await get(port, "/text")).body).split(maxsplit=1)
        assert first[1] == b"first edition", first
        handler.write_text('TEXT = "second edition"\n')
        program.wait_for_line(f"reload: {handler} changed: replacing the app's processes",
                              TIMEOUT)
        if model == "InProcess":
            assert program.wait_workers_ready(2, TIMEOUT)[0] == worker
        second: list[bytes] = []
        with anyio.fail_after(TIMEOUT):
            while second[1:] != [b"second edition"]:
                second = bytes((await get(port, "/text")).body).split(maxsplit=1)
                await anyio.sleep(0.1)
        assert int(second[0]) != int(first[0])
        if model == "OutOfProcess":  # children of the module answered, before and after
            children = [pid for pid, _ in program.started_children()]
            assert {int(first[0]), int(second[0])} <= set(children), (first, second, children)


# -- stopping in the middle of a replacement --------------------------------------------------


@pytest.mark.parametrize("backend", ["asyncio", "trio"])
def test_sigterm_while_a_replacement_starts_stops_it_too(backend: str, tmp_path: Path) -> None:
    # The replacement cannot get ready: its probe of /health hangs while hang_health exists
    # (the old worker's own failed probes are far from app_failures).
    supervised_settings(tmp_path, {"supervise": True},
                        health={"app_path": "/health", "app_interval": 0.5,
                                "app_failures": 1000})
    with start(tmp_path, backend) as program:
        [old] = program.wait_workers_ready(1)
        (tmp_path / "hang_health").touch()
        program.signal(signal.SIGHUP)
        program.wait_for_line(f"replacing worker pid {old}", TIMEOUT)
        line = program.wait_for_line("not ready yet", TIMEOUT)
        new = worker_of_line(line)
        assert new is not None and new != old
        program.signal(signal.SIGTERM)
        # shutdown_timeout is 1 s: a worker is killed 4 s after SIGTERM at the latest.
        assert program.wait_exit(timeout=4 + TIMEOUT) == 0, program.output
        assert not process_alive(old) and not process_alive(new), program.output
