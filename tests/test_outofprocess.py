"""OutOfProcess hosting end to end: the module, its children, and the integration.

Real fronts and children in subprocesses, HTTP over real sockets, real signals; every test
runs with the front (and the client) on asyncio and on trio. The children's output goes to a
stdout log file (``module.stdout_log_enabled``) that tests read for the child's own lines.
"""

from __future__ import annotations

import contextlib
import os
import re
import signal
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import anyio
import httpx
import pytest

from hostkit.testing import Program, connect, python, raw_exchange, receive_until, write_settings
from tests.support.fronts import child_log, child_program, front_settings
from tests.support.paths import PROGRAMS, SAMPLES
from tests.support.probe import probe_on_unix_socket
from tests.support.processes import Subreaper, free_port, process_alive
from tests.support.websocket import WebSocket

pytestmark = [pytest.mark.anyio, pytest.mark.integration]

TIMEOUT = 15


def write_config(root: Path, program: Path = PROGRAMS / "probe.py",
                 server: dict[str, object] | None = None, **module: object) -> None:
    """The front's ``hostkit.toml``: ``program`` as its child, ``module`` settings on top of
    the defaults (:func:`tests.support.fronts.front_settings`)."""
    write_settings(root, front_settings(module={**child_program(program), **module},
                                        server=server))


def start_front(root: Path, backend: str, *args: str,
                program: Path = PROGRAMS / "probe.py") -> Program:
    """``program`` as the front in ``root``, listening on a free port (its ``urls``)."""
    front = Program(python(str(program), "--urls=http://127.0.0.1:0",
                           f"--async_backend={backend}", *args), cwd=root)
    front.wait_started()
    return front


def child_pids(front: Program) -> list[int]:
    return [pid for pid, _ in front.started_children()]


async def wait_until(condition, timeout: float = TIMEOUT, what: str = "") -> None:  # type: ignore[no-untyped-def]
    """Re-check ``condition`` every 50 ms (files and /proc have no events to wait on)."""
    with anyio.fail_after(timeout):
        while not condition():
            await anyio.sleep(0.05)


async def answer_to_slow_request(send, root: Path, then) -> httpx.Response:  # type: ignore[no-untyped-def]
    """Send a slow request, wait until the child logs it started, call ``then()`` while it
    is in flight, and return the answer the client got."""
    answers: list[httpx.Response] = []

    async def request() -> None:
        answers.append(await send())

    async with anyio.create_task_group() as task_group:
        task_group.start_soon(request)
        await wait_until(lambda: "probe: slow request started" in child_log(root))
        then()
    return answers[0]


@pytest.fixture(scope="module")
def shared_front(anyio_backend: str, tmp_path_factory: pytest.TempPathFactory
                 ) -> Iterator[tuple[Program, str, Path]]:
    """One front with the probe app, for the tests that do not stop or break it."""
    root = tmp_path_factory.mktemp("front")
    write_config(root, path_base="/", server={"max_request_body_size": 0})
    with start_front(root, anyio_backend) as front:
        yield front, front.urls[0], root


# -- 1. same program, other model -----------------------------------------------------------


async def test_hello_sample_runs_out_of_process_unchanged(anyio_backend: str) -> None:
    with Program(python("app.py", "--urls=http://127.0.0.1:0", "--hosting_model=OutOfProcess",
                        f"--async_backend={anyio_backend}"), cwd=SAMPLES / "hello") as front:
        (url,) = front.wait_started()
        assert child_pids(front) == []  # lazy: no child before the first request
        async with httpx.AsyncClient(timeout=TIMEOUT) as client:
            response = await client.get(url + "/")
        assert response.text == "Hello from OutOfProcess\n"
        assert len(child_pids(front)) == 1


async def test_response_comes_from_the_child(shared_front: tuple[Program, str, Path]) -> None:
    front, url, _ = shared_front
    async with httpx.AsyncClient(timeout=TIMEOUT) as client:
        features = (await client.get(url + "/features")).json()
    assert features["hosting_model"] == "OutOfProcess"
    assert features["process_id"] != front.process.pid
    assert features["process_id"] in child_pids(front)


async def test_eager_start_starts_the_child_with_the_front(anyio_backend: str,
                                                           tmp_path: Path) -> None:
    write_config(tmp_path, eager_start=True)
    with start_front(tmp_path, anyio_backend) as front:
        front.wait_for_line("started child pid")
        assert len(child_pids(front)) == 1


# -- 2. the environment contract ------------------------------------------------------------


async def test_a_program_that_is_not_hostkit_can_be_the_child(anyio_backend: str,
                                                             tmp_path: Path) -> None:
    write_config(tmp_path, program=PROGRAMS / "plain_child.py")
    with start_front(tmp_path, anyio_backend) as front:
        (url,) = front.urls
        async with httpx.AsyncClient(timeout=TIMEOUT) as client:
            answer = (await client.get(url + "/")).json()
        assert answer["server"] == "plain"
        assert answer["token_ok"] is True
        assert answer["forwarded_for"] == "127.0.0.1"
        assert answer["forwarded_proto"] == "http"
        assert answer["pid"] in child_pids(front)


async def test_a_response_no_request_asked_for_never_answers_another(anyio_backend: str,
                                                                     tmp_path: Path) -> None:
    """The child sends an unsolicited response after each one; the front's pooled connection
    holds it by the next request, and must be dropped rather than reused."""
    write_config(tmp_path, program=PROGRAMS / "extra_response_child.py")
    with start_front(tmp_path, anyio_backend) as front:
        (url,) = front.urls
        bodies = []
        async with httpx.AsyncClient(timeout=TIMEOUT) as client:
            for _ in range(3):
                bodies.append((await client.get(url + "/")).text)
                await anyio.sleep(0.3)  # the unsolicited response arrives meanwhile
        assert bodies == ["asked"] * 3


@pytest.fixture(scope="module")
def direct_child(anyio_backend: str, tmp_path_factory: pytest.TempPathFactory
                 ) -> Iterator[tuple[Program, str, str]]:
    """The probe started by hand with the module's contract: (program, url, token). One per
    backend for the tests that only send it requests: its output then holds every test's so
    far, which each checks for what must never be in it."""
    port = free_port()
    token = "t0ken-" + os.urandom(16).hex()
    env = {"HOSTKIT_PORT": str(port), "HOSTKIT_TOKEN": token, "HOSTKIT_PATH_BASE": "/app"}
    root = tmp_path_factory.mktemp("direct-child")
    write_settings(root, {"hosting_model": "OutOfProcess"})
    with Program(python(str(PROGRAMS / "probe.py"), f"--async_backend={anyio_backend}"),
                 cwd=root, env=env) as child:
        assert child.wait_started() == [f"http://127.0.0.1:{port}"]
        yield child, f"http://127.0.0.1:{port}", token


# -- 3. the integration middleware ----------------------------------------------------------


@pytest.mark.parametrize("tokens", [[], ["wrong"], ["RIGHT", "RIGHT"], ["RIGHT"[:-1]],
                                    ["right"]])
async def test_child_answers_400_without_exactly_the_token(
        direct_child: tuple[Program, str, str], tokens: list[str]) -> None:
    child, url, token = direct_child
    real = [t.replace("RIGHT", token) if t.startswith("RIGHT") else t for t in tokens]
    if tokens == ["RIGHT"[:-1]]:
        real = [token[:-1]]
    if tokens == ["right"]:
        real = [token.upper()]
    async with httpx.AsyncClient(timeout=TIMEOUT) as client:
        response = await client.get(url + "/app/boom",
                                    headers=[("Hostkit-Token", t) for t in real])
    assert response.status_code == 400
    assert response.content == b""
    assert "boom on purpose" not in child.output  # the app was never called


async def test_child_accepts_the_token_and_hides_it_from_the_app(
        direct_child: tuple[Program, str, str]) -> None:
    child, url, token = direct_child
    headers = {"Hostkit-Token": token, "X-Forwarded-For": "203.0.113.9, 198.51.100.7",
               "X-Forwarded-Proto": "https"}
    async with httpx.AsyncClient(timeout=TIMEOUT) as client:
        features = (await client.get(url + "/app/features", headers=headers)).json()
        environ = (await client.get(url + "/app/env", headers=headers)).json()
    assert features["hosting_model"] == "OutOfProcess"
    assert all(name != "hostkit-token" for name, _ in features["headers"])
    assert features["remote_ip"] == "198.51.100.7"  # the last hop
    assert features["scheme"] == "https"
    assert features["path_base"] == "/app" and features["path"] == "/features"
    assert environ["token_in_environ"] is False
    assert token not in child.output


# -- 4. the front as a proxy ----------------------------------------------------------------


async def test_client_cannot_impersonate_the_module(
        shared_front: tuple[Program, str, Path]) -> None:
    _, url, _ = shared_front
    spoofed = [("Hostkit-Token", "forged"), ("HOSTKIT-IDENTITY", "admin"),
               ("hostkit_client_cert", "AAAA"), ("Hostkit-Anything", "x"),
               ("X-Forwarded-For", "10.9.9.9"), ("X_Forwarded_For", "10.8.8.8"),
               ("X-Forwarded-Proto", "https"), ("X-Forwarded-Host", "evil"),
               ("Forwarded", "for=10.7.7.7"), ("X-Real-IP", "10.6.6.6"),
               ("Connection", "X-Drop-Me"), ("X-Drop-Me", "1"), ("X-Kept", "yes")]
    async with httpx.AsyncClient(timeout=TIMEOUT) as client:
        features = (await client.get(url + "/features", headers=spoofed)).json()
    names = [name for name, _ in features["headers"]]
    assert features["remote_ip"] == "127.0.0.1"
    assert features["scheme"] == "http"
    assert not [n for n in names if n.replace("_", "-").startswith("hostkit-")]
    assert [v for n, v in features["headers"] if n == "x-forwarded-for"] == ["127.0.0.1"]
    assert [v for n, v in features["headers"] if n == "x-forwarded-proto"] == ["http"]
    for dropped in ("forwarded", "x-real-ip", "x-forwarded-host", "x_forwarded_for",
                    "x-drop-me", "connection"):
        assert dropped not in names
    assert ["x-kept", "yes"] in features["headers"]
    assert ["host", url.removeprefix("http://")] in features["headers"]


@pytest.mark.parametrize("raw", [
    b"POST /length HTTP/1.1\r\nHost: a\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n"
    b"\r\n0\r\n\r\n",
    b"POST /length HTTP/1.1\r\nHost: a\r\nContent-Length: 3\r\nContent-Length: 3\r\n\r\nabc",
    b"POST /length HTTP/1.1\r\nHost: a\r\nContent-Length: 3, 3\r\n\r\nabc",
    b"GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n",
    b"GET /\x00 HTTP/1.1\r\nHost: a\r\n\r\n",
])
async def test_ambiguous_or_malformed_requests_get_400(
        shared_front: tuple[Program, str, Path], raw: bytes) -> None:
    _, url, _ = shared_front
    answer = await raw_exchange(url, raw)
    assert answer.startswith(b"HTTP/1.1 400"), answer


def peak_memory_kb(pid: int) -> int:
    with open(f"/proc/{pid}/status") as status:
        return next(int(line.split()[1]) for line in status if line.startswith("VmHWM:"))


async def test_100_mb_both_ways_with_bounded_memory(
        shared_front: tuple[Program, str, Path]) -> None:
    front, url, _ = shared_front
    size = 100 * 1024 * 1024
    async with httpx.AsyncClient(timeout=60) as client:
        await client.get(url + "/features")  # the child is up
        (child,) = [pid for pid in child_pids(front) if process_alive(pid)][:1]

        async def upload():  # type: ignore[no-untyped-def]
            chunk = b"u" * 65536
            for _ in range(size // len(chunk)):
                yield chunk

        uploaded = await client.post(url + "/length", content=upload())
        assert uploaded.text == str(size)
        received = 0
        async with client.stream("GET", url + f"/download?{size}") as download:
            async for chunk in download.aiter_bytes():
                received += len(chunk)
        assert received == size
    # Streaming, not buffering: neither process came near holding 100 MB.
    assert peak_memory_kb(front.process.pid) < 80 * 1024
    assert peak_memory_kb(child) < 80 * 1024


async def test_client_disconnect_reaches_the_child(
        shared_front: tuple[Program, str, Path]) -> None:
    front, url, root = shared_front
    before = child_log(root).count("probe: request aborted=True")
    with anyio.fail_after(TIMEOUT):
        stream = await connect(url)
        await stream.send(b"GET /wait-abort HTTP/1.1\r\nHost: test\r\n\r\n")
        await wait_until(lambda: child_log(root).count("probe: waiting for abort") > before)
        await stream.aclose()
    await wait_until(lambda: child_log(root).count("probe: request aborted=True") > before)


async def test_pool_idle_timeout_is_shorter_than_the_childs(tmp_path: Path) -> None:
    from hostkit.configuration import load_configuration
    from hostkit_outofprocess.front.server import ModuleServer

    write_config(tmp_path)
    server = ModuleServer(load_configuration([], {}, content_root=tmp_path))
    assert 0 < server.pool_idle < server.head_timeout


# -- 5. process management ------------------------------------------------------------------


async def test_requests_wait_for_the_starting_child(anyio_backend: str, tmp_path: Path) -> None:
    write_config(tmp_path)
    with start_front(tmp_path, anyio_backend) as front:
        (url,) = front.urls
        async with httpx.AsyncClient(timeout=TIMEOUT) as client:
            responses: list[httpx.Response] = []

            async def get() -> None:
                responses.append(await client.get(url + "/features"))

            async with anyio.create_task_group() as task_group:
                for _ in range(6):
                    task_group.start_soon(get)
        assert [r.status_code for r in responses] == [200] * 6
        assert len({r.json()["process_id"] for r in responses}) == 1
        assert len(child_pids(front)) == 1


@pytest.mark.parametrize("environment, shows_output", [("Development", True),
                                                       ("Production", False)])
async def test_child_that_never_listens_gets_502_5_and_is_killed(
        anyio_backend: str, tmp_path: Path, environment: str, shows_output: bool) -> None:
    write_config(tmp_path, program=PROGRAMS / "never_listens.py", startup_time_limit=1.5)
    with start_front(tmp_path, anyio_backend, f"--environment={environment}",
                     program=PROGRAMS / "probe.py") as front:
        (url,) = front.urls
        started = time.monotonic()
        async with httpx.AsyncClient(timeout=TIMEOUT) as client:
            response = await client.get(url + "/")
        elapsed = time.monotonic() - started
        assert response.status_code == 502
        assert "502.5 Out-Of-Process Startup Failure" in response.text
        assert ("loading forever (on purpose)" in response.text) is shows_output
        assert 1.5 <= elapsed < 1.5 + 1.0
        (pid,) = child_pids(front)
        await wait_until(lambda: not process_alive(pid), 5)


async def test_startup_failure_bare_status_when_pages_disabled(anyio_backend: str,
                                                               tmp_path: Path) -> None:
    write_config(tmp_path, disable_startup_error_page=True,
                 program=PROGRAMS / "crash_on_start.py")
    with start_front(tmp_path, anyio_backend) as front:
        (url,) = front.urls
        async with httpx.AsyncClient(timeout=TIMEOUT) as client:
            response = await client.get(url + "/")
        assert response.status_code == 502 and response.content == b""


async def test_rapid_fail_budget_answers_503_without_spawning(anyio_backend: str,
                                                              tmp_path: Path) -> None:
    write_config(tmp_path, rapid_fails_per_minute=2, program=PROGRAMS / "crash_on_start.py")
    with start_front(tmp_path, anyio_backend) as front:
        (url,) = front.urls
        async with httpx.AsyncClient(timeout=TIMEOUT) as client:
            statuses = [(await client.get(url + "/")).status_code for _ in range(3)]
            assert statuses == [502, 502, 502]  # three failures: more than two a minute
            spawned = len(child_pids(front))
            started = time.monotonic()
            refused = await client.get(url + "/")
            elapsed = time.monotonic() - started
        assert refused.status_code == 503
        assert 0 < int(refused.headers["retry-after"]) <= 60
        assert elapsed < 0.5
        assert len(child_pids(front)) == spawned  # no spawn


async def test_rapid_fail_budget_recovers_after_the_window(anyio_backend: str,
                                                           tmp_path: Path) -> None:
    from hostkit_outofprocess.children import ChildManager
    from hostkit_outofprocess.children import ChildSettings, RapidFailLimit
    from hostkit_outofprocess.children import ChildStartupFailure

    settings = ChildSettings([sys.executable, str(PROGRAMS / "crash_on_start.py")], tmp_path,
                             dict(os.environ), "/", 5, 2, 1, None)
    manager = ChildManager(settings, 1, rapid_fail_window=1.0)
    with anyio.fail_after(TIMEOUT):
        async with anyio.create_task_group() as task_group:
            await task_group.start(manager.run)
            for _ in range(2):
                with pytest.raises(ChildStartupFailure):
                    await manager.acquire()
            with pytest.raises(RapidFailLimit):
                await manager.acquire()
            await anyio.sleep(1.1)  # the (shortened) window passes: starting is allowed again
            with pytest.raises(ChildStartupFailure):
                await manager.acquire()
            task_group.cancel_scope.cancel()


async def test_crashed_child_is_replaced_by_the_next_request(
        shared_front: tuple[Program, str, Path]) -> None:
    front, url, _ = shared_front
    async with httpx.AsyncClient(timeout=TIMEOUT) as client:
        first = (await client.get(url + "/features")).json()["process_id"]
        os.kill(first, signal.SIGKILL)
        await wait_until(lambda: not process_alive(first))
        # The pooled connection to the dead child is stale: the GET is sent again, to a new one.
        response = await client.get(url + "/features")
    assert response.status_code == 200
    second = response.json()["process_id"]
    assert second != first and second in child_pids(front)
    front.wait_for_line(f"child pid {first} killed by SIGKILL")


async def test_request_timeout_is_504(anyio_backend: str, tmp_path: Path) -> None:
    write_config(tmp_path, request_timeout=0.5)
    with start_front(tmp_path, anyio_backend) as front:
        (url,) = front.urls
        async with httpx.AsyncClient(timeout=TIMEOUT) as client:
            assert (await client.get(url + "/features")).status_code == 200
            response = await client.get(url + "/slow?5")
        assert response.status_code == 504


async def test_child_dying_before_answering_is_502(anyio_backend: str, tmp_path: Path) -> None:
    write_config(tmp_path)
    with start_front(tmp_path, anyio_backend) as front:
        (url,) = front.urls
        async with httpx.AsyncClient(timeout=TIMEOUT) as client:
            pid = (await client.get(url + "/features")).json()["process_id"]
            response = await answer_to_slow_request(
                lambda: client.post(url + "/slow?5", content=b"x"), tmp_path,
                then=lambda: os.kill(pid, signal.SIGKILL))
        assert response.status_code == 502


async def test_child_dying_mid_response_aborts_the_client(anyio_backend: str,
                                                          tmp_path: Path) -> None:
    write_config(tmp_path)
    with start_front(tmp_path, anyio_backend) as front:
        (url,) = front.urls
        async with httpx.AsyncClient(timeout=TIMEOUT) as client:
            pid = (await client.get(url + "/features")).json()["process_id"]
            with pytest.raises(httpx.RemoteProtocolError):
                async with client.stream("GET", url + "/half") as response:
                    assert response.status_code == 200
                    async for chunk in response.aiter_bytes():
                        assert chunk.startswith(b"first part")
                        os.kill(pid, signal.SIGKILL)


async def test_front_on_a_unix_socket_removes_it_on_stop(anyio_backend: str,
                                                        tmp_path: Path) -> None:
    write_config(tmp_path)
    features, front_pid = await probe_on_unix_socket(tmp_path / "front.sock", anyio_backend,
                                                     tmp_path, TIMEOUT)
    assert features["hosting_model"] == "OutOfProcess"
    assert features["process_id"] != front_pid


# -- 6. stopping and orphans ----------------------------------------------------------------


async def test_sigterm_drains_then_stops_the_child(anyio_backend: str, tmp_path: Path) -> None:
    write_config(tmp_path)
    with start_front(tmp_path, anyio_backend) as front:
        (url,) = front.urls
        async with httpx.AsyncClient(timeout=TIMEOUT) as client:
            pid = (await client.get(url + "/features")).json()["process_id"]
            response = await answer_to_slow_request(
                lambda: client.get(url + "/slow?1.5"), tmp_path,
                then=lambda: front.signal(signal.SIGTERM))
        assert response.status_code == 200 and response.text == "slow done"
        assert await anyio.to_thread.run_sync(front.wait_exit) == 0
        assert not process_alive(pid)
        assert f"child pid {pid} stopped" in front.output


async def test_front_killed_with_sigkill_takes_its_children(anyio_backend: str,
                                                            tmp_path: Path) -> None:
    write_config(tmp_path, processes_per_application=2, eager_start=True)
    with Subreaper(), start_front(tmp_path, anyio_backend) as front:  # orphans come to us
        await wait_until(lambda: len(child_pids(front)) == 2)
        pids = child_pids(front)
        front.process.kill()
        front.wait_exit()
        killed_at = time.monotonic()
        await wait_until(lambda: all(_reaped(pid) for pid in pids), 2)
        assert time.monotonic() - killed_at <= 2
        assert not any(process_alive(pid) for pid in pids)


def _reaped(pid: int) -> bool:
    """Reap ``pid`` if it is our (adopted) zombie; True once it is gone entirely."""
    try:
        done, _ = os.waitpid(pid, os.WNOHANG)
    except ChildProcessError:
        return not os.path.exists(f"/proc/{pid}")
    return done == pid or not os.path.exists(f"/proc/{pid}")


# -- 7. module settings ---------------------------------------------------------------------


async def test_environment_variables_reach_the_child_and_win(anyio_backend: str,
                                                             tmp_path: Path) -> None:
    write_config(tmp_path, environment_variables={"GREETING": "from config"})
    with Program(python(str(PROGRAMS / "probe.py"), "--urls=http://127.0.0.1:0",
                        f"--async_backend={anyio_backend}"), cwd=tmp_path,
                 env={"GREETING": "inherited"}) as front:
        (url,) = front.wait_started()
        async with httpx.AsyncClient(timeout=TIMEOUT) as client:
            environ = (await client.get(url + "/env")).json()
        assert environ["greeting"] == "from config"
        assert Path(environ["cwd"]) == tmp_path  # the content root is the working directory


async def test_stdout_log_file_is_named_after_time_and_pid(
        shared_front: tuple[Program, str, Path]) -> None:
    front, url, root = shared_front
    async with httpx.AsyncClient(timeout=TIMEOUT) as client:
        pid = (await client.get(url + "/features")).json()["process_id"]
    names = [p.name for p in (root / "logs").glob("child_*.log")]
    assert any(re.fullmatch(rf"child_\d{{14}}_{pid}\.log", name) for name in names), names
    assert "Now listening on: http://127.0.0.1:" in child_log(root)


async def test_app_offline_file(anyio_backend: str, tmp_path: Path) -> None:
    write_config(tmp_path)
    offline = tmp_path / "app_offline.htm"
    with start_front(tmp_path, anyio_backend) as front:
        (url,) = front.urls
        async with httpx.AsyncClient(timeout=TIMEOUT) as client:
            pid = (await client.get(url + "/features")).json()["process_id"]
            offline.write_text("<h1>Back soon</h1>")
            await wait_until(lambda: not process_alive(pid))  # the child is stopped
            response = await client.get(url + "/features")
            assert response.status_code == 503
            assert response.text == "<h1>Back soon</h1>"
            assert response.headers["content-type"].startswith("text/html")
            # A HEAD gets the same head without the page, on a connection that goes on.
            head = await client.head(url + "/features")
            assert (head.status_code, head.content) == (503, b"")
            assert head.headers["content-length"] == str(len(b"<h1>Back soon</h1>"))
            assert (await client.get(url + "/features")).status_code == 503
            offline.unlink()
            await anyio.to_thread.run_sync(front.wait_for_line, "the app is online again")
            again = (await client.get(url + "/features")).json()["process_id"]
        assert again != pid


async def test_app_offline_wins_over_a_failing_start(anyio_backend: str,
                                                     tmp_path: Path) -> None:
    write_config(tmp_path, program=PROGRAMS / "crash_on_start.py")
    (tmp_path / "app_offline.htm").write_text("maintenance")
    with start_front(tmp_path, anyio_backend) as front:
        (url,) = front.urls
        async with httpx.AsyncClient(timeout=TIMEOUT) as client:
            response = await client.get(url + "/")
        assert (response.status_code, response.text) == (503, "maintenance")
        assert child_pids(front) == []


async def test_path_base_reaches_the_app(anyio_backend: str, tmp_path: Path) -> None:
    write_config(tmp_path, path_base="/shop")
    with start_front(tmp_path, anyio_backend) as front:
        (url,) = front.urls
        async with httpx.AsyncClient(timeout=TIMEOUT) as client:
            features = (await client.get(url + "/shop/features")).json()
        assert (features["path_base"], features["path"]) == ("/shop", "/features")


async def test_processes_per_application(anyio_backend: str, tmp_path: Path) -> None:
    write_config(tmp_path, processes_per_application=2)
    with start_front(tmp_path, anyio_backend) as front:
        (url,) = front.urls
        async with httpx.AsyncClient(timeout=TIMEOUT) as client:
            pids = [(await client.get(url + "/features")).json()["process_id"]
                    for _ in range(4)]
            assert len(set(pids)) == 2 and pids[0] == pids[2] and pids[1] == pids[3]
            os.kill(pids[0], signal.SIGKILL)
            await wait_until(lambda: not process_alive(pids[0]))
            after = {(await client.get(url + "/features")).json()["process_id"]
                     for _ in range(4)}
        assert pids[1] in after and pids[0] not in after and len(after) == 2


async def test_config_change_drains_the_child(anyio_backend: str, tmp_path: Path) -> None:
    write_config(tmp_path)
    with start_front(tmp_path, anyio_backend) as front:
        (url,) = front.urls
        async with httpx.AsyncClient(timeout=TIMEOUT) as client:
            pid = (await client.get(url + "/features")).json()["process_id"]
            config = tmp_path / "hostkit.toml"
            config.write_text(config.read_text() + "\n# changed\n")
            await wait_until(lambda: not process_alive(pid))
            again = (await client.get(url + "/features")).json()["process_id"]
        assert again != pid
        assert "configuration changed" in front.output


# -- 8. WebSockets and upgrades -------------------------------------------------------------


async def test_websocket_echo_through_the_front(anyio_backend: str, tmp_path: Path) -> None:
    write_config(tmp_path, program=SAMPLES / "starlette_app" / "app.py")
    with start_front(tmp_path, anyio_backend,
                     program=SAMPLES / "starlette_app" / "app.py") as front:
        (url,) = front.urls
        host, port = url.removeprefix("http://").split(":")
        with anyio.fail_after(TIMEOUT):
            async with await WebSocket.connect(host, int(port), "/ws") as ws:
                for text in ("one", "two"):
                    await ws.send(text)
                    assert await ws.receive() == f"echo: {text}"
        async with httpx.AsyncClient(timeout=TIMEOUT) as client:
            assert "OutOfProcess" in (await client.get(url + "/")).text


async def test_h2c_upgrade_is_never_forwarded(shared_front: tuple[Program, str, Path]) -> None:
    _, url, _ = shared_front
    async with httpx.AsyncClient(timeout=TIMEOUT) as client:
        response = await client.get(url + "/features", headers={
            "Connection": "Upgrade, HTTP2-Settings", "Upgrade": "h2c",
            "HTTP2-Settings": "AAMAAABkAARAAAAAAAIAAAAA"})
    assert response.status_code == 200
    names = [name for name, _ in response.json()["headers"]]
    assert "upgrade" not in names and "http2-settings" not in names


async def test_open_websocket_is_closed_at_stop(anyio_backend: str, tmp_path: Path) -> None:
    write_config(tmp_path, program=SAMPLES / "starlette_app" / "app.py")
    with start_front(tmp_path, anyio_backend,
                     program=SAMPLES / "starlette_app" / "app.py") as front:
        (url,) = front.urls
        host, port = url.removeprefix("http://").split(":")
        with anyio.fail_after(TIMEOUT):
            ws = await WebSocket.connect(host, int(port), "/ws")
            await ws.send("hello")
            assert await ws.receive() == "echo: hello"
            front.signal(signal.SIGTERM)
            stopped_at = time.monotonic()
            try:
                closing = await ws.receive()
                assert not isinstance(closing, str)
            except (anyio.EndOfStream, anyio.BrokenResourceError):
                pass
            assert time.monotonic() - stopped_at <= 3 + 5  # shutdown_time_limit + drain
            await ws.stream.aclose()
        assert await anyio.to_thread.run_sync(front.wait_exit) == 0


async def test_client_keep_alive_connection_carries_many_requests(
        shared_front: tuple[Program, str, Path]) -> None:
    _, url, _ = shared_front
    request = b"GET /features HTTP/1.1\r\nHost: test\r\n\r\n"
    with anyio.fail_after(TIMEOUT):
        async with await connect(url) as stream:
            for _ in range(3):
                await stream.send(request)
                answer = await receive_until(stream, b"0\r\n\r\n")
                assert answer.endswith(b"0\r\n\r\n"), answer
                assert answer.startswith(b"HTTP/1.1 200")


async def test_chatty_child_never_blocks_when_logging_is_off(anyio_backend: str,
                                                             tmp_path: Path) -> None:
    write_config(tmp_path, request_timeout=10, stdout_log_enabled=False)
    with start_front(tmp_path, anyio_backend) as front:
        (url,) = front.urls
        async with httpx.AsyncClient(timeout=TIMEOUT) as client:
            for _ in range(3):  # 24 MB in all: far past any pipe buffer
                response = await client.get(url + "/spam?8388608")
                assert (response.status_code, response.text) == (200, "spammed")
        assert not (tmp_path / "logs").exists()


async def test_head_request_gets_the_head_only_and_the_connection_goes_on(
        shared_front: tuple[Program, str, Path]) -> None:
    _, url, _ = shared_front
    async with httpx.AsyncClient(timeout=TIMEOUT) as client:
        head = await client.head(url + "/download?5000")
        assert head.status_code == 200
        assert head.headers["content-length"] == "5000" and head.content == b""
        after = await client.get(url + "/download?10")
    assert after.content == b"d" * 10


async def test_a_streamed_response_is_chunked_for_http_11_and_close_delimited_for_http_10(
        shared_front: tuple[Program, str, Path]) -> None:
    """The child streams /echo without a length; the front frames it for each client."""
    _, url, _ = shared_front
    answers = {}
    with anyio.fail_after(TIMEOUT):
        for version in (b"1.1", b"1.0"):
            async with await connect(url) as stream:
                await stream.send(b"POST /echo HTTP/%s\r\nHost: a\r\nContent-Length: 5\r\n"
                                  b"Connection: close\r\n\r\nhello" % version)
                answer = b""
                with contextlib.suppress(anyio.EndOfStream):
                    while True:
                        answer += await stream.receive()
            answers[version] = answer
    head, _, body = answers[b"1.1"].partition(b"\r\n\r\n")
    assert b"\r\ntransfer-encoding: chunked\r\n" in head.lower()
    assert body == b"5\r\nhello\r\n0\r\n\r\n"
    head, _, body = answers[b"1.0"].partition(b"\r\n\r\n")
    assert b"transfer-encoding" not in head.lower() and b"content-length" not in head.lower()
    assert b"\r\nconnection: close" in head.lower() and body == b"hello"


async def test_the_front_reuses_its_connections_to_the_child(anyio_backend: str,
                                                             tmp_path: Path) -> None:
    write_config(tmp_path)
    with start_front(tmp_path, anyio_backend) as front:
        (url,) = front.urls
        async with httpx.AsyncClient(timeout=TIMEOUT) as client:
            features = [(await client.get(url + "/features")).json() for _ in range(5)]
        pid = features[-1]["process_id"]
        assert _child_sockets(pid) <= 3


def _child_sockets(pid: int) -> int:
    """The child's TCP sockets in any state (its listener and pooled connections), read from
    /proc: one half-closed connection per request would show here."""
    inodes = set()
    for fd in Path(f"/proc/{pid}/fd").iterdir():
        target = os.readlink(fd)
        if target.startswith("socket:["):
            inodes.add(target[len("socket:["):-1])
    count = 0
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        for line in Path(table).read_text().splitlines()[1:]:
            if line.split()[9] in inodes:
                count += 1
    return count
