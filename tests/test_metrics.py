"""Prometheus metrics (SPEC §9 ``[metrics]``): the values of :class:`hostkit.metrics.Metrics`,
the metrics listener, a supervisor's sum over its workers, the process counts of the pool and
the child manager, and the scrape of real hosts, parsed with ``prometheus_client``'s parser.

The sum over workers is tested with real worker processes: ``prometheus_client`` chooses
its multiprocess mode when it is imported, so a worker is always a process started with the
directory in its environment.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from collections.abc import Mapping
from pathlib import Path

import anyio
import pytest
from prometheus_client.parser import text_string_to_metric_families

from hostkit.configuration import load_configuration
from hostkit.content_root import ContentRootRules
from hostkit.errors import AddressInUseError, ConfigurationError
from hostkit.metrics import (
    DURATION_BUCKETS,
    MULTIPROCESS_DIRECTORY_VARIABLE,
    Metrics,
    exit_reason,
    metrics_for,
    recycle_reason,
)
from hostkit.metrics_listener import serve_metrics
from hostkit.processes.recycling import RecyclePolicy
from hostkit.server_contract import HostRole
from hostkit.supervisor import Supervisor
from hostkit.testing import Program, python, write_settings
from hostkit_outofprocess.children.manager import ChildManager
from hostkit_outofprocess.children.settings import ChildSettings
from tests.support.fronts import child_program, front_settings
from tests.support.http import build, request_once
from tests.support.paths import PROGRAMS
from tests.support.processes import LOOPBACK, free_port
from tests.support.supervisors import (
    SUPERVISED,
    TIMEOUT,
    get,
    pids_answering,
    port_of,
    start,
    supervised_settings,
)

pytestmark = pytest.mark.anyio

Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


def parse(text: str) -> Samples:
    """Every sample of a scrape, by name and labels, read by prometheus_client's parser."""
    return {(sample.name, frozenset(sample.labels.items())): sample.value
            for family in text_string_to_metric_families(text) for sample in family.samples}


def value(samples: Samples, name: str, **labels: str) -> float | None:
    return samples.get((name, frozenset(labels.items())))


def total(samples: Samples, name: str) -> float:
    """The sum of every sample named ``name``, whatever its labels."""
    return sum(v for (sample_name, _), v in samples.items() if sample_name == name)


def scraped(metrics: Metrics) -> Samples:
    body, content_type = metrics.exposition()
    assert content_type.startswith("text/plain; version=0.0.4")
    return parse(body.decode())


# -- 1. the values --------------------------------------------------------------------------


def test_requests_are_counted_by_method_and_status_class() -> None:
    metrics = Metrics()
    for method, status in [("GET", 200), ("GET", 204), ("POST", 503), ("BREW", 418),
                           ("get", 301), ("GET", 99), ("GET", 700)]:
        metrics.request_started()
        metrics.request_finished(method, status, 0.003)
    samples = scraped(metrics)
    assert value(samples, "hostkit_requests_total", method="GET", status_class="2xx") == 2
    assert value(samples, "hostkit_requests_total", method="POST", status_class="5xx") == 1
    # A method that is not a standard one (case matters in HTTP) is OTHER.
    assert value(samples, "hostkit_requests_total", method="OTHER", status_class="4xx") == 1
    assert value(samples, "hostkit_requests_total", method="OTHER", status_class="3xx") == 1
    assert value(samples, "hostkit_requests_total", method="GET", status_class="other") == 2
    assert total(samples, "hostkit_requests_total") == 7
    assert value(samples, "hostkit_requests_in_flight") == 0


def test_many_odd_methods_make_one_series() -> None:
    metrics = Metrics()
    for index in range(200):
        metrics.request_started()
        metrics.request_finished(f"X{index}", 200, 0.001)
    samples = scraped(metrics)
    series = [labels for name, labels in samples if name == "hostkit_requests_total"]
    assert series == [frozenset({("method", "OTHER"), ("status_class", "2xx")})]
    assert metrics._request_counters == {}  # nothing kept per odd method


def test_the_duration_histogram() -> None:
    metrics = Metrics()
    for seconds in (0.0002, 0.004, 0.004, 0.2, 60.0):
        metrics.request_started()
        metrics.request_finished("GET", 200, seconds)
    samples = scraped(metrics)
    bucket = "hostkit_request_duration_seconds_bucket"
    assert value(samples, bucket, le="0.0005") == 1
    assert value(samples, bucket, le="0.005") == 3
    assert value(samples, bucket, le="0.25") == 4
    assert value(samples, bucket, le="30.0") == 4
    assert value(samples, bucket, le="+Inf") == 5
    assert value(samples, "hostkit_request_duration_seconds_count") == 5
    assert value(samples, "hostkit_request_duration_seconds_sum") == pytest.approx(60.2082)
    assert len(DURATION_BUCKETS) + 1 == sum(1 for name, _ in samples if name == bucket)


def test_in_flight_queued_and_ready() -> None:
    metrics = Metrics()
    samples = scraped(metrics)
    assert value(samples, "hostkit_ready") == 0  # starting
    metrics.set_ready(True)
    for _ in range(3):
        metrics.request_started()
    metrics.queued(2)
    metrics.queued(-1)
    samples = scraped(metrics)
    assert value(samples, "hostkit_requests_in_flight") == 3
    assert value(samples, "hostkit_requests_queued") == 1
    assert value(samples, "hostkit_ready") == 1
    metrics.request_finished("GET", 200, 0.01)
    metrics.set_ready(False)
    samples = scraped(metrics)
    assert value(samples, "hostkit_requests_in_flight") == 2
    assert value(samples, "hostkit_ready") == 0


def test_process_starts_exits_and_recycles() -> None:
    metrics = Metrics()
    metrics.process_started("worker")
    metrics.process_started("worker")
    metrics.process_exited("worker", "crash")
    metrics.process_exited("worker", "something new")
    metrics.process_recycled("child", "it ran for workers.max_lifetime = 5 s")
    samples = scraped(metrics)
    assert value(samples, "hostkit_process_starts_total", kind="worker") == 2
    assert value(samples, "hostkit_process_exits_total", kind="worker", reason="crash") == 1
    assert value(samples, "hostkit_process_exits_total", kind="worker", reason="other") == 1
    assert value(samples, "hostkit_process_recycles_total", kind="child",
                 reason="max_lifetime") == 1


def test_recycle_reasons_are_read_from_what_is_logged() -> None:
    policy = RecyclePolicy(max_requests=10, max_lifetime=5, max_memory_mib=1)
    assert recycle_reason(policy.requests_reason(10)) == "max_requests"
    assert recycle_reason(policy.lifetime_reason()) == "max_lifetime"
    assert recycle_reason(policy.over_memory(os.getpid()) or "") == "max_memory"
    assert recycle_reason("3 failed health checks of health.app_path = /up") == "health"
    assert recycle_reason("it failed 3 health probes in a row (health.app_failures = 3): "
                          "GET /up answered 500") == "health"
    for reloaded in ("the configuration was reloaded", "a *.py file changed",
                     "reload: the configuration was read again"):
        assert recycle_reason(reloaded) == "reload"
    assert recycle_reason("max_memory") == "max_memory"


@pytest.mark.parametrize(("served", "asked", "replaced", "owner_stopping", "reason"), [
    (False, False, False, False, "startup_failure"),  # exited while starting
    (False, True, False, False, "startup_failure"),   # killed: not ready in time
    (False, True, False, True, "stop"),               # the owner stops while it starts
    (True, False, False, False, "crash"),
    (True, False, True, False, "crash"),              # crashed while it drained
    (True, True, True, False, "recycle"),
    (True, True, False, False, "stop"),               # offline
    (True, True, False, True, "stop"),                # the owner stops
])
def test_exit_reasons(served: bool, asked: bool, replaced: bool, owner_stopping: bool,
                      reason: str) -> None:
    assert exit_reason(served=served, asked_to_stop=asked, replaced=replaced,
                       owner_stopping=owner_stopping) == reason


def test_metrics_only_with_urls(tmp_path: Path) -> None:
    assert metrics_for(load_configuration([], {}, content_root=tmp_path)) is None
    configuration = load_configuration([f"--metrics:urls=http://{LOOPBACK}:0"], {},
                                       content_root=tmp_path)
    metrics = metrics_for(configuration)
    assert isinstance(metrics, Metrics) and metrics.serves


# -- 2. the listener ------------------------------------------------------------------------


async def _request(port: int, data: bytes) -> tuple[int, Mapping[bytes, bytes], bytes]:
    response = await request_once(port, data, TIMEOUT)
    return response.status, dict(response.headers), bytes(response.body)


async def _raw(port: int, data: bytes) -> bytes:
    """What the listener sends for ``data`` until it closes the connection."""
    received = b""
    async with await anyio.connect_tcp(LOOPBACK, port) as stream:
        await stream.send(data)
        with anyio.fail_after(TIMEOUT):
            while True:
                try:
                    received += await stream.receive()
                except anyio.EndOfStream:
                    return received


async def test_the_listener_answers_get_metrics_only(tmp_path: Path) -> None:
    metrics = Metrics()
    metrics.request_started()
    metrics.request_finished("GET", 200, 0.001)
    socket_path = tmp_path / "metrics.sock"
    with anyio.fail_after(TIMEOUT):
        async with anyio.create_task_group() as task_group:
            urls = await task_group.start(serve_metrics, metrics,
                                          [f"http://{LOOPBACK}:0", f"unix:{socket_path}"])
            port = int(urls[0].rpartition(":")[2])
            assert urls[1] == f"unix:{socket_path}" and port != 0
            status, headers, body = await _request(port, build("GET", "/metrics?x=1"))
            assert status == 200
            assert headers[b"content-type"].startswith(b"text/plain; version=0.0.4")
            assert value(parse(body.decode()), "hostkit_requests_total", method="GET",
                         status_class="2xx") == 1
            status, headers, body = await _request(port, build(
                "GET", "/metrics", [("Accept", "application/openmetrics-text; version=1.0.0")]))
            assert status == 200 and body.endswith(b"# EOF\n")
            assert headers[b"content-type"].startswith(b"application/openmetrics-text")
            head = await _raw(port, build("HEAD", "/metrics"))
            assert head.startswith(b"HTTP/1.1 200 ") and head.endswith(b"\r\n\r\n")
            assert (await _request(port, build("GET", "/")))[0] == 404
            assert (await _request(port, build("GET", "/metrics/x")))[0] == 404
            status, headers, _ = await _request(port, build("POST", "/metrics", body=b"x"))
            assert (status, headers[b"allow"]) == (405, b"GET, HEAD")
            assert (await _request(port, b"GET /metrics HTTP/1.1\r\nHost: a\r\nHost b\r\n\r\n"))[0] \
                == 400
            stream = await anyio.connect_unix(socket_path)
            async with stream:
                await stream.send(build("GET", "/metrics"))
                assert (await stream.receive()).startswith(b"HTTP/1.1 200 ")
            task_group.cancel_scope.cancel()
    assert not socket_path.exists()  # closed and removed once cancelled


def test_the_schema_refuses_an_https_metrics_url(tmp_path: Path) -> None:
    with pytest.raises(ConfigurationError,
                       match=r"argument --metrics:urls.*allowed: a list of http://HOST:PORT"):
        load_configuration([f"--metrics:urls=https://{LOOPBACK}:0"], {}, content_root=tmp_path)


async def test_the_listener_refuses_a_taken_port() -> None:
    async with await anyio.create_tcp_listener(local_host=LOOPBACK) as taken:
        port = taken.extra(anyio.abc.SocketAttribute.local_port)
        with pytest.raises(AddressInUseError, match="address already in use"):
            await serve_metrics(Metrics(), [f"http://{LOOPBACK}:0", f"http://{LOOPBACK}:{port}"])


# -- 3. a supervisor's sum over its workers -------------------------------------------------

#: A worker's metrics: ``argv[1]`` requests, one more in flight, ready; exits once its stdin
#: closes.
_WORKER = """
import sys
from hostkit.metrics import Metrics, in_multiprocess_mode
assert in_multiprocess_mode()
metrics = Metrics()
for _ in range(int(sys.argv[1])):
    metrics.request_started()
    metrics.request_finished("GET", 200, 0.003)
metrics.request_started()
metrics.set_ready(True)
metrics.process_started("child")
print("counted", flush=True)
sys.stdin.read()
"""


def _start_worker(requests: int, variables: Mapping[str, str]) -> subprocess.Popen[str]:
    worker = subprocess.Popen([sys.executable, "-c", _WORKER, str(requests)],
                              env={**os.environ, **variables}, stdin=subprocess.PIPE,
                              stdout=subprocess.PIPE, text=True)
    assert worker.stdout is not None and worker.stdout.readline() == "counted\n"
    return worker


def _stop_worker(worker: subprocess.Popen[str]) -> None:
    assert worker.stdin is not None
    worker.stdin.close()
    assert worker.wait(TIMEOUT) == 0


def test_a_supervisor_serves_the_sum_over_its_workers() -> None:
    supervisor = Metrics()
    supervisor.set_ready(True)
    with supervisor.collecting_workers() as variables:
        directory = Path(variables[MULTIPROCESS_DIRECTORY_VARIABLE])
        assert directory.is_dir() and not any(directory.iterdir())
        workers = [_start_worker(3, variables), _start_worker(4, variables)]
        for _ in workers:
            supervisor.process_started("worker")
        try:
            samples = scraped(supervisor)
            assert value(samples, "hostkit_requests_total", method="GET",
                         status_class="2xx") == 7
            assert value(samples, "hostkit_request_duration_seconds_count") == 7
            assert value(samples, "hostkit_request_duration_seconds_bucket", le="0.005") == 7
            assert value(samples, "hostkit_requests_in_flight") == 2
            assert value(samples, "hostkit_ready") == 1
            assert value(samples, "hostkit_process_starts_total", kind="worker") == 2
            assert value(samples, "hostkit_process_starts_total", kind="child") == 2
            supervisor.set_ready(False)  # the supervisor drains: not ready, whatever they say
            assert value(scraped(supervisor), "hostkit_ready") == 0
            supervisor.set_ready(True)

            first = workers.pop(0)
            _stop_worker(first)
            supervisor.process_exited("worker", "crash", first.pid)
            samples = scraped(supervisor)
            assert value(samples, "hostkit_requests_in_flight") == 1  # its gauge went
            assert value(samples, "hostkit_requests_total", method="GET",
                         status_class="2xx") == 7  # its counts stay
            assert value(samples, "hostkit_process_exits_total", kind="worker",
                         reason="crash") == 1
            assert not list(directory.glob(f"*_{first.pid}.db"))  # folded into the dead's
            assert (directory / "counter_dead.db").exists()

            replacement = _start_worker(5, variables)
            workers.append(replacement)
            for worker in list(workers):
                _stop_worker(worker)
                supervisor.process_exited("worker", "stop", worker.pid)
                workers.remove(worker)
            samples = scraped(supervisor)
            assert value(samples, "hostkit_requests_total", method="GET",
                         status_class="2xx") == 12
            assert value(samples, "hostkit_request_duration_seconds_sum") == \
                pytest.approx(12 * 0.003)
            assert value(samples, "hostkit_request_duration_seconds_bucket", le="+Inf") == 12
            assert value(samples, "hostkit_requests_in_flight") == 0
            assert value(samples, "hostkit_ready") == 0  # no worker is up
            assert sorted(path.name for path in directory.iterdir()) == [
                "counter_dead.db", "histogram_dead.db"]
        finally:
            for worker in workers:
                worker.kill()
                worker.wait()
    assert not directory.exists()
    samples = scraped(supervisor)  # its own values only, once it stopped collecting
    assert value(samples, "hostkit_process_starts_total", kind="worker") == 2
    assert value(samples, "hostkit_requests_total", method="GET", status_class="2xx") is None


# -- 4. the pool and the child manager count their processes --------------------------------


async def _app_never_called(scope: object, receive: object, send: object) -> None:
    raise AssertionError("a supervisor serves through its workers, never its app")


async def test_the_supervisor_counts_its_workers(anyio_backend: str, tmp_path: Path) -> None:
    write_settings(tmp_path, {"urls": [f"http://{LOOPBACK}:0"], "shutdown_timeout": 1,
                              "workers": {"processes": 2, "supervise": True}})
    configuration = load_configuration([], {}, content_root=tmp_path)
    metrics = Metrics()
    supervisor = Supervisor(
        configuration, worker_role=HostRole.SERVE, rules=ContentRootRules(),
        command=python(str(SUPERVISED), f"--content_root={tmp_path}",
                       f"--async_backend={anyio_backend}"), metrics=metrics)
    stopping = anyio.Event()
    with anyio.fail_after(30):
        async with anyio.create_task_group() as task_group:
            await task_group.start(supervisor.serve, _app_never_called, stopping)
            assert supervisor.pool is not None
            await supervisor.pool.replace_all("the configuration was reloaded")
            samples = scraped(metrics)
            stopping.set()
    assert value(samples, "hostkit_process_starts_total", kind="worker") == 4
    exits = {dict(labels)["reason"]: count for (name, labels), count in samples.items()
             if name == "hostkit_process_exits_total"}
    assert exits == {"recycle": 2}
    assert value(samples, "hostkit_process_recycles_total", kind="worker",
                 reason="reload") == 2
    samples = scraped(metrics)
    assert value(samples, "hostkit_process_exits_total", kind="worker", reason="stop") == 2


def _child_settings(program: str, root: Path) -> ChildSettings:
    return ChildSettings([sys.executable, str(PROGRAMS / program)], root, dict(os.environ),
                         "/", 15, 3, 10, None)


async def test_the_child_manager_counts_its_children(anyio_backend: str,
                                                     tmp_path: Path) -> None:
    metrics = Metrics()
    manager = ChildManager(_child_settings("plain_child.py", tmp_path), 1, metrics=metrics)
    with anyio.fail_after(TIMEOUT):
        async with anyio.create_task_group() as task_group:
            await task_group.start(manager.run)
            old = await manager.acquire()
            assert await manager.replace(0, "it served 5 requests (workers.max_requests = 5)")
            manager.reconfigure(_child_settings("crash_on_start.py", tmp_path))
            assert not await manager.replace(0, "a *.py file changed")
            task_group.cancel_scope.cancel()
    assert not old.running
    samples = scraped(metrics)
    assert value(samples, "hostkit_process_starts_total", kind="child") == 3
    assert value(samples, "hostkit_process_recycles_total", kind="child",
                 reason="max_requests") == 1
    exits = {dict(labels)["reason"]: count for (name, labels), count in samples.items()
             if name == "hostkit_process_exits_total"}
    assert exits == {"recycle": 1, "startup_failure": 1, "stop": 1}


# -- 5. real hosts ----------------------------------------------------------------------------


async def _scrape(port: int) -> Samples:
    response = await request_once(port, build("GET", "/metrics", [("Connection", "close")]),
                                  TIMEOUT)
    assert response.status == 200, response
    return parse(bytes(response.body).decode())


async def _scrape_counted(port: int, requests: float) -> Samples:
    """A scrape once ``requests`` requests are counted and none is in flight: a request is
    counted as the app returns, which may be just after its client read the response, and a
    supervisor's scrape reads each worker's gauge file and counter file one after the other
    (a request that ends between the two reads is counted and still in flight), so this
    scrapes again (for up to :data:`TIMEOUT` s) until both hold."""
    with anyio.fail_after(TIMEOUT):
        while True:
            samples = await _scrape(port)
            if total(samples, "hostkit_requests_total") >= requests \
                    and value(samples, "hostkit_requests_in_flight") == 0:
                return samples
            await anyio.sleep(0.05)


async def test_a_supervisor_serves_its_workers_requests(anyio_backend: str,
                                                        tmp_path: Path) -> None:
    metrics_port = free_port()
    supervised_settings(tmp_path, {"processes": 2},
                        metrics={"urls": [f"http://{LOOPBACK}:{metrics_port}"]})
    with start(tmp_path, anyio_backend) as program:
        program.wait_workers_ready(2)
        port = port_of(program)
        seen = await pids_answering(port, 2)  # both workers answered
        assert len(set(seen)) == 2, seen
        samples = await _scrape_counted(metrics_port, len(seen))
        assert value(samples, "hostkit_requests_total", method="GET",
                     status_class="2xx") == len(seen)
        assert value(samples, "hostkit_request_duration_seconds_count") == len(seen)
        assert value(samples, "hostkit_process_starts_total", kind="worker") == 2
        assert value(samples, "hostkit_requests_in_flight") == 0
        assert value(samples, "hostkit_ready") == 1
        assert (await get(port, "/nothing-here")).status == 404
        # Counted before a worker is killed: it may be the one that answered the 404.
        await _scrape_counted(metrics_port, len(seen) + 1)

        directory = Path(_environment_of(seen[0])[MULTIPROCESS_DIRECTORY_VARIABLE])
        assert directory.is_dir()
        os.kill(seen[0], signal.SIGKILL)
        program.wait_workers_ready(3, TIMEOUT)
        samples = await _scrape_counted(metrics_port, len(seen) + 1)
        assert value(samples, "hostkit_process_exits_total", kind="worker",
                     reason="crash") == 1
        assert value(samples, "hostkit_process_starts_total", kind="worker") == 3
        # The killed worker's requests are still counted.
        assert value(samples, "hostkit_requests_total", method="GET",
                     status_class="2xx") == len(seen)
        assert value(samples, "hostkit_requests_total", method="GET",
                     status_class="4xx") == 1
    assert not directory.exists()  # removed when the supervisor stopped


def _environment_of(pid: int) -> dict[str, str]:
    items = Path(f"/proc/{pid}/environ").read_bytes().decode().split("\0")
    return dict(item.partition("=")[::2] for item in items if item)


async def _three_requests_scraped(root: Path, backend: str, metrics_port: int) -> Samples:
    """The probe run with ``root``'s settings, three requests to it, then its metrics once
    they count them (scraped while it still runs)."""
    with Program(python(str(PROGRAMS / "probe.py"), f"--urls=http://{LOOPBACK}:0",
                        f"--async_backend={backend}"), cwd=root) as program:
        program.wait_started()
        port = port_of(program)
        for _ in range(3):
            assert (await get(port)).status == 200
        return await _scrape_counted(metrics_port, 3)


async def test_a_single_host_serves_its_own(anyio_backend: str, tmp_path: Path) -> None:
    metrics_port = free_port()
    write_settings(tmp_path, {"metrics": {"urls": [f"http://{LOOPBACK}:{metrics_port}"]}})
    samples = await _three_requests_scraped(tmp_path, anyio_backend, metrics_port)
    assert value(samples, "hostkit_requests_total", method="GET", status_class="2xx") == 3
    assert value(samples, "hostkit_ready") == 1
    assert total(samples, "hostkit_process_starts_total") == 0


async def test_a_front_counts_the_requests_and_its_children(anyio_backend: str,
                                                            tmp_path: Path) -> None:
    metrics_port = free_port()
    write_settings(tmp_path, front_settings(
        module=child_program(PROGRAMS / "probe.py"),
        metrics={"urls": [f"http://{LOOPBACK}:{metrics_port}"]}))
    samples = await _three_requests_scraped(tmp_path, anyio_backend, metrics_port)
    assert value(samples, "hostkit_requests_total", method="GET", status_class="2xx") == 3
    assert value(samples, "hostkit_process_starts_total", kind="child") == 1
    assert value(samples, "hostkit_ready") == 1
