"""The parts reloads and recycling are made of: the in-process health probe, the request
stage's request limit, the recycle policy, the configuration read again (or refused), the
``--reload`` switch, and the content-root watch of ``*.py`` files."""

from __future__ import annotations

import logging
import os
from pathlib import Path

import anyio
import pytest

from hostkit.asgi import Receive, Scope, Send
from hostkit.configuration import load_configuration
from hostkit.configuration.sources import reload_configuration
from hostkit.content_root import ContentRootRules, ContentRootWatch
from hostkit.context import Features
from hostkit.errors import ConfigurationError
from hostkit.health import probe
from hostkit.processes.recycling import RecyclePolicy, resident_memory
from hostkit.request_stage import RequestStage

pytestmark = pytest.mark.anyio


async def _app(scope: Scope, receive: Receive, send: Send) -> None:
    path = scope["path"]
    if path == "/hang":
        await anyio.sleep(3600)
    if path == "/raise":
        raise RuntimeError("broken")
    status = 503 if path == "/down" else 200
    await send({"type": "http.response.start", "status": status, "headers": []})
    await send({"type": "http.response.body", "body": b"ok"})


def _stage(**limits: object) -> RequestStage:
    return RequestStage(_app, Features("InProcess", os.getpid(), "python", "test"),
                        max_request_body_size=0, allow_synchronous_io=False,
                        show_details=False, bare_error_pages=False, **limits)  # type: ignore


async def test_the_probe_passes_a_2xx_and_says_why_anything_else_fails() -> None:
    stage = _stage()
    assert await probe(stage, "/ready?deep=1", 2) is None
    assert await probe(stage, "/down", 2) == "GET /down answered 503"
    assert await probe(stage, "/raise", 2) == "GET /raise answered 500"  # the stage's 500
    with anyio.fail_after(3):
        assert await probe(stage, "/hang", 0.2) == "GET /hang got no answer within 0.2 s"
    assert await probe(_app, "/raise", 2) == "GET /raise raised RuntimeError: broken"


async def test_the_request_limit_calls_back_at_the_limit_and_again_after_as_many() -> None:
    calls: list[int] = []
    served = 0

    def at_limit() -> None:
        calls.append(served)

    stage = _stage(request_limit=3, on_request_limit=at_limit)
    for served in range(1, 8):
        assert await probe(stage, "/", 2) is None
    assert calls == [3, 6]


def test_the_recycle_policy_draws_its_jitter_per_process_and_reads_memory() -> None:
    assert RecyclePolicy().request_limit() is None
    limits = {RecyclePolicy(max_requests=100, max_requests_jitter=10).request_limit()
              for _ in range(200)}
    assert limits <= set(range(100, 111)) and len(limits) > 3
    mine = resident_memory(os.getpid())
    assert mine is not None and mine > 1024 * 1024
    assert RecyclePolicy(max_memory_mib=1).over_memory(os.getpid()) is not None
    assert RecyclePolicy(max_memory_mib=1_000_000).over_memory(os.getpid()) is None
    assert RecyclePolicy(max_memory_mib=1).over_memory(2 ** 22 + 12345) is None  # gone


def test_a_reload_reads_the_files_again_and_refuses_a_broken_one(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    (tmp_path / "hostkit.toml").write_text("shutdown_timeout = 3\n")
    configuration = load_configuration(["--workers:max_requests=7"], {},
                                       content_root=tmp_path)
    (tmp_path / "hostkit.toml").write_text("shutdown_timeout = 4\n")
    again = reload_configuration(configuration)
    assert again is not None and again.options.shutdown_timeout == 4
    assert again.options.workers.max_requests == 7  # the arguments are kept
    (tmp_path / "hostkit.toml").write_text("shutdown_timeout = 'soon'\n")
    with caplog.at_level(logging.ERROR):
        assert reload_configuration(configuration) is None
    assert "reload refused, the running processes keep serving" in caplog.text
    assert "shutdown_timeout" in caplog.text
    with pytest.raises(ConfigurationError):
        configuration.reloaded()


def test_reload_is_a_switch_and_implies_the_supervisor() -> None:
    options = load_configuration(["--reload", "--urls=http://127.0.0.1:1"], {}).options
    assert options.workers.reload and options.workers.supervised
    assert not load_configuration(["--reload=false"], {}).options.workers.supervised


async def test_with_reload_a_python_file_change_is_reported_and_others_are_not(
        tmp_path: Path) -> None:
    (tmp_path / "pkg").mkdir()
    (tmp_path / "__pycache__").mkdir()
    watch = ContentRootWatch(tmp_path.resolve(), "Production", ContentRootRules(reload=True))
    code_changes: list[str] = []
    config_changes: list[str] = []
    changed = anyio.Event()

    async def on_code() -> None:
        code_changes.append("code")
        changed.set()

    async def on_config() -> None:
        config_changes.append("config")
        changed.set()

    async def on_offline(content: bytes | None) -> None:
        pass

    stopping = anyio.Event()
    async with anyio.create_task_group() as task_group:
        await task_group.start(lambda *, task_status: watch.run(
            stopping, on_offline=on_offline, on_config_change=on_config,
            on_code_change=on_code, task_status=task_status))
        await anyio.sleep(0.3)  # the watch is set up
        (tmp_path / "notes.txt").write_text("not code")
        (tmp_path / "__pycache__" / "x.py").write_text("ignored")
        (tmp_path / "pkg" / "views.py").write_text("x = 1\n")
        with anyio.fail_after(10):
            await changed.wait()
        changed = anyio.Event()
        (tmp_path / "hostkit.toml").write_text("shutdown_timeout = 1\n")
        with anyio.fail_after(10):
            await changed.wait()
        stopping.set()
    assert code_changes == ["code"] and config_changes == ["config"]


@pytest.mark.parametrize("argument, allowed", [
    ("--workers:max_requests=-1", "a whole number at least 0"),
    ("--workers:max_requests_jitter=1.5", "a whole number at least 0"),
    ("--workers:max_lifetime=soon", "a number at least 0"),
    ("--workers:max_memory=-5", "a number at least 0"),
    ("--health:app_path=health", "a path starting with '/', or empty"),
    ("--health:app_failures=0", "a whole number at least 1"),
])
def test_a_bad_recycle_or_health_value_names_its_source_key_and_what_is_allowed(
        argument: str, allowed: str) -> None:
    key, _, value = argument[2:].replace(":", ".").partition("=")
    with pytest.raises(ConfigurationError) as raised:
        load_configuration([argument], {})
    assert str(raised.value) == (f"command-line argument {argument}: invalid value "
                                 f"{value!r} for {key!r}; allowed: {allowed}")
