"""The command line (SPEC §2, §9): ``hostkit --version``, ``hostkit run --help``, and the
shorthands ``--host``, ``--port``, ``--workers``, ``--reload`` and ``--log-level``, which
``hostkit run`` and program files read alike. Real ``python -m hostkit`` runs, bounded."""

from __future__ import annotations

import importlib.metadata
import subprocess
import sys
from pathlib import Path

import httpx
import pytest

import hostkit
from hostkit.configuration import ConfigurationError, load_configuration
from hostkit.configuration.schema import Schema, contributed_tables
from hostkit.plugin_manager import Plugins
from hostkit.testing import Program, python
from tests.support.paths import PROGRAMS
from tests.support.processes import LOOPBACK, free_port

TIMEOUT = 20.0


def hostkit_command(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "hostkit", *args], cwd=cwd, text=True,
                          capture_output=True, timeout=TIMEOUT, stdin=subprocess.DEVNULL)


def test_version_is_the_installed_distributions(tmp_path: Path) -> None:
    result = hostkit_command("--version", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert result.stdout == f"hostkit {importlib.metadata.version('hostkit')}\n"
    assert result.stdout == f"hostkit {hostkit.__version__}\n"  # the two never drift apart


def test_run_help_lists_every_option(tmp_path: Path) -> None:
    result = hostkit_command("run", "--help", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    text = result.stdout
    assert text.startswith("usage: hostkit run MODULE:ATTR [OPTION ...]\n")
    for option in ("--host HOST", "--port PORT", "--workers N", "--reload",
                   "--log-level LEVEL", "--KEY=VALUE, --KEY VALUE", "--TABLE:KEY=VALUE",
                   "--environment=NAME", "--content_root=PATH", "-h, --help"):
        assert f"\n  {option} " in text, option
    plugins = Plugins()
    plugins.load_entry_points()
    keys = Schema(contributed_tables(plugins)).fields()
    assert ("module", "eager_start") in keys  # the plugins' settings are listed too
    for path in keys:
        assert f"\n  --{':'.join(path)} " in text or f"\n  --{':'.join(path)}\n" in text, path
    assert hostkit_command("run", "probe:create_host_builder", "--help",
                           cwd=tmp_path).stdout == text


@pytest.mark.parametrize(("args", "key", "value"), [
    (["--port", "8001"], "urls", ("http://127.0.0.1:8001",)),
    (["--host=0.0.0.0"], "urls", ("http://0.0.0.0:5000",)),
    (["--host", "::", "--port=0"], "urls", ("http://[::]:0",)),
    (["--workers", "3"], "workers.processes", 3),
    (["--reload"], "workers.reload", True),
    (["--log-level", "DEBUG"], "logging.level", "debug"),
    (["--log_level=warning"], "logging.level", "warning"),
])
def test_each_shorthand_sets_its_key(args: list[str], key: str, value: object,
                                     tmp_path: Path) -> None:
    configuration = load_configuration(args, {}, content_root=tmp_path)
    assert configuration.get(key) == value
    assert str(configuration.source_of(key)) == f"command-line argument {' '.join(args)}"


@pytest.mark.parametrize(("args", "message"), [
    (["--port=8001", "--urls=http://127.0.0.1:1"],
     "command-line arguments --port=8001 and --urls=http://127.0.0.1:1: both set urls (--host "
     "and --port are a shorthand for urls = [\"http://HOST:PORT\"]); give one or the other"),
    (["--port", "http"], "command-line argument --port http: invalid port 'http'; allowed: a "
                         "whole number from 0 to 65535"),
    (["--port=70000"], "command-line argument --port=70000: invalid port '70000'"),
    (["--host", "a/b"], "command-line argument --host a/b: invalid host 'a/b'; allowed: a host "
                        "name or an IP address"),
    (["--log-level", "loud"], "command-line argument --log-level loud: invalid value 'loud' "
                              "for 'logging.level'; allowed: \"debug\""),
])
def test_a_bad_shorthand_names_the_argument(args: list[str], message: str,
                                            tmp_path: Path) -> None:
    with pytest.raises(ConfigurationError) as raised:
        load_configuration(args, {}, content_root=tmp_path)
    assert str(raised.value).startswith(message)


def test_hostkit_config_shows_the_shorthands_as_arguments(tmp_path: Path) -> None:
    result = hostkit_command("config", "--port", "8001", "--log-level", "debug",
                             cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert 'urls = ["http://127.0.0.1:8001"]  # command-line argument --port 8001' in lines
    assert 'logging.level = "debug"  # command-line argument --log-level debug' in lines
    result = hostkit_command("config", "--port=1", "--urls=http://127.0.0.1:2", cwd=tmp_path)
    assert result.returncode == 1
    assert result.stderr.startswith("hostkit: error: command-line arguments --port=1 and "
                                    "--urls=http://127.0.0.1:2: both set urls")


@pytest.mark.parametrize(("how", "backend"), [("hostkit run, target first", "asyncio"),
                                            ("hostkit run, target last", "trio"),
                                            ("program file", "trio")])
def test_port_and_host_serve_where_they_say(how: str, backend: str) -> None:
    port = free_port()
    options = ["--host", LOOPBACK, "--port", str(port), f"--async_backend={backend}"]
    command = {
        "hostkit run, target first": python("-m", "hostkit", "run", "probe:create_host_builder",
                                            *options),
        "hostkit run, target last": python("-m", "hostkit", "run", "--reload", *options,
                                           "probe:create_host_builder"),
        "program file": python(str(PROGRAMS / "probe.py"), *options),
    }[how]
    with Program(command, cwd=PROGRAMS) as program:
        assert program.wait_started(TIMEOUT) == [f"http://{LOOPBACK}:{port}"]
        response = httpx.post(f"http://{LOOPBACK}:{port}/echo", content=b"hi", timeout=TIMEOUT)
        assert (response.status_code, response.content) == (200, b"hi")
        if "last" in how:  # --reload before the target: a switch, not the target's name
            assert "Supervising 1 worker processes" in program.output


def test_run_without_a_target_says_how_to_call_it(tmp_path: Path) -> None:
    result = hostkit_command("run", "--port", "8001", cwd=tmp_path)
    assert result.returncode == 1
    assert result.stderr == ("hostkit: error: run: MODULE:ATTR is missing; usage: hostkit "
                             "run MODULE:ATTR [OPTION ...] (hostkit run --help lists the "
                             "options)\n")
