"""Rolling replacement of an OutOfProcess front's children: SIGHUP, a configuration change,
``[workers]`` recycling (max_requests, max_lifetime, max_memory) and hung-app detection
(``[health]``).

Real fronts and children (tests/programs/replace_app.py, steered by files in the content
root), real signals, HTTP over real sockets; the front and the client run on asyncio and on
trio. Whatever replaces a child, the new one is ready before it gets a request and the old
one finishes what it was sent: no request fails, and none waits for a cold start.
"""

from __future__ import annotations

import dataclasses
import functools
import os
import signal
import sys
import time
from collections.abc import Mapping
from pathlib import Path

import anyio
import anyio.abc
import pytest

from hostkit.testing import Program, python, write_settings
from hostkit_outofprocess.children import ChildManager, ChildSettings
from hostkit_outofprocess.children.health import probe_child
from hostkit_outofprocess.front.upstream import ConnectionPool
from tests.support.fronts import child_log, child_program, front_settings
from tests.support.http import HttpConnection, RequestFailed, build, request_once
from tests.support.load import percentile
from tests.support.paths import PROGRAMS
from tests.support.processes import free_port, process_alive

pytestmark = [pytest.mark.anyio, pytest.mark.integration]

APP = PROGRAMS / "replace_app.py"
TIMEOUT = 15
PID = build("GET", "/pid")


def write_config(root: Path, backend: str, *, module: Mapping[str, object] | None = None,
                 **tables: object) -> None:
    """``root/hostkit.toml``: replace_app as the child (on ``backend`` too), ``module`` on top
    of the test defaults, and other tables (``workers``, ``health``, ``app``)."""
    write_settings(root, front_settings(
        module={**child_program(APP, f"--async_backend={backend}"), **(module or {})},
        **tables))


def start_front(root: Path, backend: str) -> Program:
    front = Program(python(str(APP), "--urls=http://127.0.0.1:0", f"--async_backend={backend}"),
                    cwd=root)
    front.wait_started()
    return front


def port_of(front: Program) -> int:
    return int(front.urls[0].rsplit(":", 1)[1])


async def get_pid(port: int) -> tuple[int, str]:
    """The pid of the child that answered ``/pid``, and its greeting."""
    response = await request_once(port, PID, TIMEOUT)
    assert response.status == 200, response
    pid, _, greeting = bytes(response.body).decode().partition(" ")
    return int(pid), greeting


async def wait_for_line(front: Program, pattern: str, timeout: float = TIMEOUT) -> str:
    """The front's first line containing ``pattern`` (waited for in a thread)."""
    return await anyio.to_thread.run_sync(front.wait_for_line, pattern, timeout)


async def wait_for_child_line(root: Path, text: str) -> None:
    """Until the children's log files in ``root`` contain ``text`` (re-read every 50 ms:
    files have no event to wait on)."""
    with anyio.fail_after(TIMEOUT):
        while text not in child_log(root):
            await anyio.sleep(0.05)


@dataclasses.dataclass
class Answer:
    sent: float
    done: float
    status: int = 0       # 0: failed
    pid: int = 0
    failure: str = ""


async def load(port: int, clients: int, stop: anyio.Event, answers: list[Answer],
               pause: float = 0.005) -> None:
    """``clients`` keep-alive clients sending ``GET /pid`` until ``stop`` is set."""
    async def client() -> None:
        async with HttpConnection(port) as connection:
            while not stop.is_set():
                sent = time.monotonic()
                try:
                    response = await connection.request(PID, TIMEOUT)
                except RequestFailed as failure:
                    answers.append(Answer(sent, time.monotonic(), failure=failure.kind))
                    await anyio.sleep(0.01)
                    continue
                pid = int(bytes(response.body).split()[0]) if response.status == 200 else 0
                answers.append(Answer(sent, time.monotonic(), response.status, pid))
                await anyio.sleep(pause)

    async with anyio.create_task_group() as task_group:
        for _ in range(clients):
            task_group.start_soon(client)


def failures(answers: list[Answer]) -> list[Answer]:
    return [a for a in answers if a.status != 200]


# -- reloads --------------------------------------------------------------------------------


async def test_sighup_under_load_gives_a_new_child_and_no_failure(anyio_backend: str,
                                                                  tmp_path: Path) -> None:
    """The old child also finishes a request it got while the new one started, after the
    new one took over."""
    write_config(tmp_path, anyio_backend)
    with start_front(tmp_path, anyio_backend) as front:
        port = port_of(front)
        old, _ = await get_pid(port)
        answers: list[Answer] = []
        waiting: list[bytes] = []
        stop = anyio.Event()

        async def waiting_request() -> None:
            response = await request_once(port, build("GET", "/wait?release"), TIMEOUT)
            waiting.append(bytes(response.body))

        with anyio.fail_after(45):
            async with anyio.create_task_group() as task_group:
                task_group.start_soon(load, port, 4, stop, answers)
                await anyio.sleep(0.3)
                front.signal(signal.SIGHUP)
                await wait_for_line(front, f"recycling child pid {old} (slot 0)")
                task_group.start_soon(waiting_request)  # the new child is not ready yet
                line = await wait_for_line(front, f"replaces child pid {old} (slot 0)")
                new = int(line.split("child pid ")[1].split()[0])
                await anyio.sleep(0.3)
                assert waiting == [] and process_alive(old)  # it drains
                (tmp_path / "release").touch()
                await wait_for_line(front, f"child pid {old} stopped")
                await anyio.sleep(0.3)
                stop.set()
        assert failures(answers) == []
        assert waiting == [b"waited"]
        assert f"replace_app: pid {old} waits for release" in child_log(tmp_path)
        pids = [a.pid for a in answers]
        assert pids[0] == old and pids[-1] == new != old
        assert (await get_pid(port))[0] == new
        assert not process_alive(old)


async def test_a_config_change_under_load_never_waits_for_a_cold_start(
        anyio_backend: str, tmp_path: Path) -> None:
    """restart_on_config_change: the files are read again and the child replaced as on
    SIGHUP; with a slow app start (1 s), a request that waited for it would show."""
    app = {"greeting": "one", "startup_delay": 1.0}
    write_config(tmp_path, anyio_backend, app=app)
    with start_front(tmp_path, anyio_backend) as front:
        port = port_of(front)
        started = time.monotonic()
        old, greeting = await get_pid(port)
        cold_start = time.monotonic() - started
        assert greeting == "one" and cold_start > 1.0
        answers: list[Answer] = []
        stop = anyio.Event()
        with anyio.fail_after(45):
            async with anyio.create_task_group() as task_group:
                task_group.start_soon(load, port, 4, stop, answers)
                await anyio.sleep(0.5)
                changed = time.monotonic()
                write_config(tmp_path, anyio_backend, app={**app, "greeting": "two"})
                await wait_for_line(front, f"replaces child pid {old} (slot 0)")
                await wait_for_line(front, f"child pid {old} stopped")
                stopped = front.line_time(f"child pid {old} stopped")
                await anyio.sleep(0.3)
                stop.set()
        assert failures(answers) == []
        assert stopped is not None
        steady = [a.done - a.sent for a in answers if a.sent < changed]
        switch = [a.done - a.sent for a in answers if changed <= a.sent <= stopped]
        assert steady and switch
        print(f"cold start {cold_start * 1000:.0f} ms; steady p99 "
              f"{percentile(steady, 0.99) * 1000:.1f} ms; max during the switch "
              f"{max(switch) * 1000:.1f} ms over {len(switch)} requests")
        assert max(switch) < cold_start / 2
        assert (await get_pid(port))[1] == "two"
        assert "configuration changed" in front.output


async def test_a_new_child_that_fails_to_start_leaves_the_old_one_serving(
        anyio_backend: str, tmp_path: Path) -> None:
    write_config(tmp_path, anyio_backend)
    with start_front(tmp_path, anyio_backend) as front:
        port = port_of(front)
        old, _ = await get_pid(port)
        (tmp_path / "fail_start").touch()
        front.signal(signal.SIGHUP)
        await wait_for_line(front, f"did not start, so child pid {old} keeps serving")
        assert (await get_pid(port))[0] == old
        (tmp_path / "fail_start").unlink()
        front.signal(signal.SIGHUP)  # and the next reload replaces it
        await wait_for_line(front, f"replaces child pid {old} (slot 0)")
        assert (await get_pid(port))[0] != old


async def test_a_configuration_that_no_longer_loads_refuses_the_reload(
        anyio_backend: str, tmp_path: Path) -> None:
    write_config(tmp_path, anyio_backend, module={"restart_on_config_change": False})
    with start_front(tmp_path, anyio_backend) as front:
        port = port_of(front)
        old, _ = await get_pid(port)
        config = tmp_path / "hostkit.toml"
        config.write_text(config.read_text() + "\nthis is = = not toml\n")
        front.signal(signal.SIGHUP)
        await wait_for_line(front, "reload refused")
        assert (await get_pid(port))[0] == old and front.running
        assert "recycling child pid" not in front.output


async def test_children_are_replaced_one_slot_at_a_time(anyio_backend: str,
                                                        tmp_path: Path) -> None:
    write_config(tmp_path, anyio_backend,
                 module={"processes_per_application": 2, "eager_start": True})
    with start_front(tmp_path, anyio_backend) as front:
        await wait_for_line(front, "started child pid")
        front.wait_for_count("listening after", 2)
        first, second = [pid for pid, _ in front.started_children()]
        front.signal(signal.SIGHUP)
        await wait_for_line(front, f"replaces child pid {second} (slot 1)")
        times = [front.line_time(text) for text in (
            f"recycling child pid {first} (slot 0)", f"child pid {first} stopped",
            f"recycling child pid {second} (slot 1)")]
        assert None not in times and times == sorted(times)  # type: ignore[type-var]


async def test_stopping_the_front_during_a_replacement_stops_old_and_new(
        anyio_backend: str, tmp_path: Path) -> None:
    """The old child still has a request (that never ends) when the front is asked to stop:
    both children are stopped within the limits, and the front exits 0."""
    write_config(tmp_path, anyio_backend, module={"shutdown_time_limit": 1},
                 shutdown_timeout=1)
    with start_front(tmp_path, anyio_backend) as front:
        port = port_of(front)
        old, _ = await get_pid(port)
        with anyio.fail_after(45):
            async with anyio.create_task_group() as task_group:
                async def never_released() -> None:
                    with pytest.raises(RequestFailed):  # closed by the front's stop
                        await request_once(port, build("GET", "/wait?never"), 45)

                task_group.start_soon(never_released)
                await wait_for_child_line(tmp_path, f"replace_app: pid {old} waits for never")
                front.signal(signal.SIGHUP)
                line = await wait_for_line(front, f"replaces child pid {old} (slot 0)")
                new = int(line.split("child pid ")[1].split()[0])
                asked = time.monotonic()
                front.signal(signal.SIGTERM)
                assert await anyio.to_thread.run_sync(front.wait_exit) == 0
                took = time.monotonic() - asked
        # shutdown_timeout for the request, then shutdown_time_limit before the SIGKILL
        assert took < 1 + 1 + 3
        assert not process_alive(old) and not process_alive(new)
        assert f"child pid {new} stopped" in front.output
        assert f"child pid {old} stopped" in front.output


# -- recycling ------------------------------------------------------------------------------


async def test_max_requests_recycles_the_child_without_a_failure(anyio_backend: str,
                                                                 tmp_path: Path) -> None:
    write_config(tmp_path, anyio_backend, workers={"max_requests": 20})
    with start_front(tmp_path, anyio_backend) as front:
        port = port_of(front)
        pids = []
        with anyio.fail_after(45):
            async with HttpConnection(port) as connection:
                while len(set(pids)) < 2:
                    response = await connection.request(PID, TIMEOUT)
                    assert response.status == 200, response
                    pids.append(int(bytes(response.body).split()[0]))
        old, new = pids[0], pids[-1]
        assert pids.index(new) >= 20 and set(pids) == {old, new}
        await wait_for_line(front, f"recycling child pid {old} (slot 0): it served 20 "
                                   "requests (workers.max_requests = 20)")


async def test_max_lifetime_recycles_the_child(anyio_backend: str, tmp_path: Path) -> None:
    write_config(tmp_path, anyio_backend, workers={"max_lifetime": 1.5})
    with start_front(tmp_path, anyio_backend) as front:
        port = port_of(front)
        old, _ = await get_pid(port)
        await wait_for_line(front, f"recycling child pid {old} (slot 0): it ran for "
                                   "workers.max_lifetime = 1.5 s")
        await wait_for_line(front, f"replaces child pid {old} (slot 0)")
        assert (await get_pid(port))[0] != old


async def test_max_memory_recycles_the_child(anyio_backend: str, tmp_path: Path) -> None:
    write_config(tmp_path, anyio_backend, workers={"max_memory": 100})
    with start_front(tmp_path, anyio_backend) as front:
        port = port_of(front)
        old, _ = await get_pid(port)
        response = await request_once(port, build("GET", "/grow?120"), TIMEOUT)
        assert response.status == 200
        line = await wait_for_line(front, f"recycling child pid {old} (slot 0): its resident "
                                          "memory")
        assert "is above workers.max_memory = 100 MiB" in line
        await wait_for_line(front, f"replaces child pid {old} (slot 0)")
        assert (await get_pid(port))[0] != old


# -- hung apps ------------------------------------------------------------------------------


async def test_a_hung_child_is_replaced_after_app_failures_probes(anyio_backend: str,
                                                                  tmp_path: Path) -> None:
    write_config(tmp_path, anyio_backend,
                 health={"app_path": "/health", "app_interval": 0.3, "app_failures": 2})
    with start_front(tmp_path, anyio_backend) as front:
        port = port_of(front)
        old, _ = await get_pid(port)
        assert f"child pid {old} answered /health after" in front.output  # probed at start
        (tmp_path / "hang").touch()  # the next probe takes it, and the child hangs
        line = await wait_for_line(front, f"recycling child pid {old} (slot 0): it failed 2 "
                                          "health probes in a row (health.app_failures = 2)")
        assert "got no answer within 0.3 s" in line
        assert f"child pid {old} failed health probe 1 of health.app_failures = 2" \
            in front.output
        await wait_for_line(front, f"replaces child pid {old} (slot 0)")
        assert f"replace_app: pid {old} hangs now" in child_log(tmp_path)
        assert (await get_pid(port))[0] != old
        assert os.path.exists(tmp_path / f"hang.{old}")


# -- the manager, the probe and the pool, in this process -----------------------------------


def child_settings(program: str, root: Path, rapid_fails: int = 10) -> ChildSettings:
    return ChildSettings([sys.executable, str(PROGRAMS / program)], root, dict(os.environ),
                         "/", 15, 3, rapid_fails, None)


async def test_a_failed_replacement_counts_against_the_rapid_fail_budget(
        anyio_backend: str, tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    manager = ChildManager(child_settings("plain_child.py", tmp_path, rapid_fails=0), 1)
    with anyio.fail_after(TIMEOUT):
        async with anyio.create_task_group() as task_group:
            await task_group.start(manager.run)
            old = await manager.acquire()
            manager.reconfigure(child_settings("crash_on_start.py", tmp_path, rapid_fails=0))
            assert not await manager.replace(0, "a test")
            assert await manager.acquire() is old
            manager.reconfigure(child_settings("plain_child.py", tmp_path, rapid_fails=0))
            assert not await manager.replace(0, "a test")  # 1 failure > 0 allowed: no start
            assert await manager.acquire() is old
            task_group.cancel_scope.cancel()
    assert not old.running
    assert f"did not start, so child pid {old.pid} keeps serving" in caplog.text
    assert f"cannot replace child pid {old.pid} (slot 0) now (a test): 1 child failures" \
        in caplog.text


async def test_the_probe_tells_what_went_wrong(anyio_backend: str, tmp_path: Path) -> None:
    answers = {"silent": b"", "unavailable": b"HTTP/1.1 503 Service Unavailable\r\n\r\n",
               "ok": b"HTTP/1.1 204 No Content\r\n\r\n"}

    async def serve(answer: bytes, stream: anyio.abc.SocketStream) -> None:
        async with stream:
            await stream.receive()
            if not answer:
                await anyio.sleep_forever()
            await stream.send(answer)

    with anyio.fail_after(TIMEOUT):
        async with anyio.create_task_group() as task_group:
            ports = {}
            for name, answer in answers.items():
                listener = await anyio.create_tcp_listener(local_host="127.0.0.1")
                ports[name] = listener.extra(anyio.abc.SocketAttribute.local_port)
                task_group.start_soon(listener.serve, functools.partial(serve, answer))
            assert await probe_child(ports["ok"], "t", "/health", 2) is None
            assert await probe_child(ports["unavailable"], "t", "/health", 2) == \
                "GET /health answered 503"
            assert await probe_child(ports["silent"], "t", "/health", 0.2) == \
                "GET /health got no answer within 0.2 s"
            task_group.cancel_scope.cancel()
    refused = await probe_child(free_port(), "t", "/health", 2)
    assert refused is not None and refused.startswith("GET /health could not connect")


async def test_the_pool_counts_the_connections_lent_out(anyio_backend: str) -> None:
    async with await anyio.create_tcp_listener(local_host="127.0.0.1") as listener:
        port = listener.extra(anyio.abc.SocketAttribute.local_port)
        async def hold(stream: anyio.abc.SocketStream) -> None:
            async with stream:
                await anyio.sleep_forever()

        async with anyio.create_task_group() as task_group:
            task_group.start_soon(listener.serve, hold)
            pool = ConnectionPool(port, idle_timeout=30)
            with anyio.fail_after(5):
                first, second = await pool.get(), await pool.get()
                assert pool.in_use == 2
                first.reusable = True
                await pool.put(first)
                await second.aclose()
                await second.aclose()  # closing twice returns it once
                assert pool.in_use == 0
                third = await pool.get()  # the idle one, lent again
                assert third is first and pool.in_use == 1
                unused = anyio.Event()

                async def wait() -> None:
                    await pool.wait_unused()
                    unused.set()

                task_group.start_soon(wait)
                await anyio.sleep(0.05)
                assert not unused.is_set()
                await pool.close()
                await pool.put(third)  # closed, not kept
                await unused.wait()
                assert third.closed and pool.in_use == 0
            task_group.cancel_scope.cancel()
