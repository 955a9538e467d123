"""systemd and containers (SPEC §9): ``fd://N`` in ``urls``, socket activation, ``sd_notify``,
and unknown ``HOSTKIT_*`` variables (a warning, as Kubernetes sets them).

Socket activation is what ``systemd-socket-activate`` does (``tests/programs/
socket_activate.py`` binds, passes descriptors 3, 4 … and execs the host); notifications
go to a real ``AF_UNIX`` datagram socket bound here, which reads the sender's pid from the
kernel (``SO_PASSCRED``), as systemd does to accept only its main process's.
"""

from __future__ import annotations

import os
import signal
import socket
import struct
import sys
import tempfile
import uuid
from collections.abc import Iterator
from pathlib import Path

import anyio
import httpx
import pytest

from hostkit import systemd
from hostkit.configuration import ConfigurationError, load_configuration
from hostkit.listeners import bind_all, bind_here, close_all, parse_url
from hostkit.testing import Program, python
from tests.support.paths import PROGRAMS
from tests.support.processes import LOOPBACK

pytestmark = [pytest.mark.anyio]

TIMEOUT = 20.0
ACTIVATE = PROGRAMS / "socket_activate.py"
SYSTEMD_PROBE = PROGRAMS / "systemd_probe.py"
SERVICE_LINK = "HOSTKIT_SERVICE_PORT"  # what Kubernetes sets for a Service named hostkit


@pytest.fixture
def short_dir() -> Iterator[Path]:
    """A folder with a short path, for unix sockets (whose paths are at most 107 bytes)."""
    with tempfile.TemporaryDirectory(prefix="hk") as folder:
        yield Path(folder)


def listening_socket(family: int = socket.AF_INET) -> socket.socket:
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.bind((LOOPBACK, 0))
    sock.listen(8)
    return sock


def closed_descriptor() -> int:
    """A descriptor number that no file is open on (until the next open)."""
    fd = os.open(os.devnull, os.O_RDONLY)
    os.close(fd)
    return fd


class NotifySocket:
    """systemd's end of ``NOTIFY_SOCKET``: a datagram socket that knows who sent what."""

    def __init__(self, address: str):
        self.address = address
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.bind("\0" + address[1:] if address.startswith("@") else address)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_PASSCRED, 1)
        self.sock.setblocking(False)

    async def receive(self) -> tuple[str, int]:
        """The next message and the pid of its sender, within :data:`TIMEOUT`."""
        with anyio.fail_after(TIMEOUT):
            await anyio.wait_readable(self.sock)
        return self._read()

    def pending(self) -> list[tuple[str, int]]:
        """Every message already received and not read yet."""
        messages = []
        while True:
            try:
                messages.append(self._read())
            except BlockingIOError:
                return messages

    def _read(self) -> tuple[str, int]:
        credentials = struct.calcsize("3i")
        data, ancillary, _, _ = self.sock.recvmsg(4096, socket.CMSG_SPACE(credentials))
        (pid,) = [struct.unpack("3i", item[:credentials])[0]
                  for level, kind, item in ancillary
                  if level == socket.SOL_SOCKET and kind == socket.SCM_CREDENTIALS]
        return data.decode(), pid

    def close(self) -> None:
        self.sock.close()


# -- fd://N -----------------------------------------------------------------------------------


def test_fd_urls_are_listen_addresses_of_their_own() -> None:
    assert parse_url("fd://3").fd == 3 and parse_url("FD://12").fd == 12
    for bad in ("fd://", "fd://x", "fd://-1", "fd://3/path", "fd:3"):
        with pytest.raises(ConfigurationError, match="fd://N"):
            parse_url(bad)
    assert load_configuration(["--urls=fd://3;http://127.0.0.1:0"], {}).options.urls == (
        "fd://3", "http://127.0.0.1:0")
    with pytest.raises(ConfigurationError, match=r"command-line argument --urls=fd://three: "
                                                 r"invalid value .*fd://N"):
        load_configuration(["--urls=fd://three"], {})


@pytest.mark.parametrize("family", [socket.AF_INET, socket.AF_UNIX])
def test_an_fd_url_serves_the_inherited_socket_with_its_real_address(
        family: int, short_dir: Path) -> None:
    if family == socket.AF_UNIX:
        inherited = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        inherited.bind(str(short_dir / "app.sock"))
        inherited.listen(8)
    else:
        inherited = listening_socket()
    name = inherited.getsockname()
    fd = inherited.detach()  # bind_all owns it now
    bound = bind_all([f"fd://{fd}", "http://127.0.0.1:0"])
    try:
        (address, sock), (other, _) = bound
        assert sock.fileno() == fd and other.fd is None
        assert address.inherited and address.url == f"fd://{fd}"
        if family == socket.AF_UNIX:
            assert address.display(sock) == f"unix:{name} (fd://{fd})"
        else:
            assert address.display(sock) == f"http://127.0.0.1:{name[1]} (fd://{fd})"
            assert sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY)
    finally:
        close_all(bound)
    assert family != socket.AF_UNIX or (short_dir / "app.sock").exists()  # not hostkit's file
    with pytest.raises(OSError):
        os.fstat(fd)  # closed like any other listener


def test_an_fd_url_that_is_no_listening_socket_names_the_setting(tmp_path: Path) -> None:
    datagram = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    unlistened = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    with open(tmp_path / "file", "w") as file, datagram, unlistened:
        cases = {closed_descriptor(): "names no open descriptor",
                 file.fileno(): "names a descriptor that is not a socket",
                 datagram.fileno(): "names a socket that is not a listening TCP or unix "
                                    "stream socket",
                 unlistened.fileno(): "names a socket that is not a listening TCP or unix "
                                      "stream socket"}
        for fd, reason in cases.items():
            with pytest.raises(ConfigurationError) as raised:
                bind_all([f"fd://{fd}"], source="file hostkit.toml, line 1")
            assert str(raised.value) == (
                f"file hostkit.toml, line 1: urls: 'fd://{fd}' {reason}; allowed: fd://N "
                "naming a listening socket this process inherited on descriptor N (systemd "
                "socket activation, or a parent process that passed it)")
        os.fstat(datagram.fileno())  # a refused descriptor is left open
        datagram.getsockname()
    with listening_socket() as inherited:
        with pytest.raises(ConfigurationError, match=rf"metrics.urls: 'fd://{inherited.fileno()}'"
                                                     r" is listed twice"):
            bind_here([f"fd://{inherited.fileno()}"] * 2, key="metrics.urls")


def test_a_bad_fd_url_stops_the_host_with_one_line(tmp_path: Path) -> None:
    fd = 97  # no program starts with this one open
    with Program(python(str(PROGRAMS / "probe.py"), f"--urls=fd://{fd}"),
                 cwd=tmp_path) as program:
        assert program.wait_exit(TIMEOUT) == 1
    assert f"urls: 'fd://{fd}' names no open descriptor; allowed: fd://N" in program.output
    assert "Traceback" not in program.output


# -- socket activation ------------------------------------------------------------------------


def test_socket_activation_is_read_only_for_this_process() -> None:
    pid = str(os.getpid())
    assert systemd.listen_fds({"LISTEN_PID": pid, "LISTEN_FDS": "2"}) == (3, 4)
    for environ in ({"LISTEN_PID": str(os.getpid() + 1), "LISTEN_FDS": "2"},
                    {"LISTEN_FDS": "2"}, {"LISTEN_PID": pid, "LISTEN_FDS": "0"},
                    {"LISTEN_PID": pid, "LISTEN_FDS": "two"}, {}):
        assert systemd.listen_fds(environ) == ()


def test_activated_sockets_are_the_urls_unless_a_source_sets_urls(tmp_path: Path) -> None:
    activated = {"LISTEN_PID": str(os.getpid()), "LISTEN_FDS": "2"}
    configuration = load_configuration([], activated, content_root=tmp_path)
    assert configuration.options.urls == ("fd://3", "fd://4")
    assert str(configuration.source_of("urls")) == "systemd socket activation (LISTEN_FDS)"
    for args, environ in ((["--urls=fd://4"], {}), (["--port=8001"], {}),
                          ([], {"HOSTKIT_URLS": "fd://4"})):
        configuration = load_configuration(args, {**activated, **environ},
                                           content_root=tmp_path)
        source = configuration.source_of("urls")
        assert configuration.options.urls != ("fd://3", "fd://4")
        assert source is not None and source.kind in ("argument", "environment")


async def test_a_socket_activated_host_serves_the_inherited_sockets(
        anyio_backend: str, short_dir: Path) -> None:
    unix = short_dir / "app.sock"
    with Program(python(str(ACTIVATE), f"tcp:{LOOPBACK}:0", f"unix:{unix}", "--",
                        sys.executable, str(SYSTEMD_PROBE),
                        f"--async_backend={anyio_backend}"), cwd=short_dir) as program:
        tcp_url, unix_url = program.wait_started(TIMEOUT)
        assert unix_url == f"unix:{unix}"
        assert f"Now listening on: {tcp_url} (fd://3)" in program.output
        assert f"Now listening on: {unix_url} (fd://4)" in program.output
        async with httpx.AsyncClient(timeout=TIMEOUT) as client:
            over_tcp = (await client.get(tcp_url + "/")).json()
        transport = httpx.AsyncHTTPTransport(uds=str(unix))
        async with httpx.AsyncClient(transport=transport, timeout=TIMEOUT) as client:
            over_unix = (await client.get("http://localhost/")).json()
        assert over_tcp == over_unix
        assert over_tcp["pid"] == program.pid  # exec kept the pid systemd named
        assert over_tcp["systemd"] == dict.fromkeys(systemd.VARIABLES)  # read, then unset
        assert program.stop() == 0
    assert unix.exists()  # systemd's socket file: the host leaves it alone


@pytest.mark.parametrize("anyio_backend", ["trio"])  # the other backend: the tests above
async def test_a_supervised_outofprocess_host_under_systemd(
        anyio_backend: str, short_dir: Path) -> None:
    """A systemd service with socket activation and Type=notify, in a Kubernetes pod whose
    namespace has a Service named hostkit: the supervisor takes the activated socket and
    hands it to its workers, only it notifies, and one warning names the variable."""
    notify = NotifySocket(f"@hostkit-test-{uuid.uuid4().hex}")
    environment = {"NOTIFY_SOCKET": notify.address, SERVICE_LINK: "tcp://10.0.0.1:80",
                   "HOSTKIT_SERVICE_HOST": "10.0.0.1", "HOSTKIT_PORT": "tcp://10.0.0.1:80"}
    try:
        with Program(python(str(ACTIVATE), f"tcp:{LOOPBACK}:0", "--",
                            sys.executable, str(SYSTEMD_PROBE), "--workers=2",
                            "--hosting_model=OutOfProcess", "--module:eager_start=true",
                            "--shutdown_timeout=2", f"--async_backend={anyio_backend}"),
                     cwd=short_dir, env=environment) as program:
            assert await notify.receive() == ("READY=1", program.pid)
            (url,) = program.wait_started(TIMEOUT)
            assert f"Now listening on: {url} (fd://3)" in program.output
            async with httpx.AsyncClient(timeout=TIMEOUT) as client:
                answers = [(await client.get(url + "/")).json() for _ in range(4)]
            assert all(answer["systemd"] == dict.fromkeys(systemd.VARIABLES)
                       for answer in answers)
            assert program.pid not in {answer["pid"] for answer in answers}
            program.signal(signal.SIGTERM)
            assert await notify.receive() == ("STOPPING=1", program.pid)
            assert program.wait_exit(TIMEOUT) == 0
        assert notify.pending() == []  # no worker or child notified
        warnings = [line for line in program.lines if "HOSTKIT_SERVICE_HOST" in line]
        assert len(warnings) == 1, program.output
        assert "WARNING" in warnings[0] and "hostkit.configuration" in warnings[0]
        assert SERVICE_LINK in warnings[0] and "enableServiceLinks: false" in warnings[0]
        assert "HOSTKIT_PORT," not in warnings[0]  # the child contract's: never a setting
    finally:
        notify.close()


# -- sd_notify ----------------------------------------------------------------------------------


async def test_a_host_notifies_ready_once_serving_and_stopping_on_sigterm(
        anyio_backend: str, short_dir: Path) -> None:
    notify = NotifySocket(str(short_dir / "notify"))
    try:
        with Program(python(str(PROGRAMS / "probe.py"), f"--urls=http://{LOOPBACK}:0",
                            f"--async_backend={anyio_backend}"),
                     cwd=short_dir, env={"NOTIFY_SOCKET": notify.address}) as program:
            assert await notify.receive() == ("READY=1", program.pid)
            (url,) = program.wait_started(TIMEOUT)  # logged before READY=1 was sent
            async with httpx.AsyncClient(timeout=TIMEOUT) as client:
                assert (await client.get(url + "/echo")).status_code == 200
            assert notify.pending() == []
            program.signal(signal.SIGTERM)
            assert await notify.receive() == ("STOPPING=1", program.pid)
            assert program.wait_exit(TIMEOUT) == 0
        assert notify.pending() == []
    finally:
        notify.close()


async def test_send_reaches_path_and_abstract_sockets_and_never_raises(
        short_dir: Path) -> None:
    for address in (str(short_dir / "notify"), f"@hostkit-test-{uuid.uuid4().hex}"):
        receiver = NotifySocket(address)
        try:
            assert systemd.send(address, "READY=1")
            assert await receiver.receive() == ("READY=1", os.getpid())
        finally:
            receiver.close()
    for nowhere in (None, str(short_dir / "nobody"), str(short_dir), "vsock:2:999", "relative"):
        assert not systemd.send(nowhere, "READY=1")
    full = NotifySocket(str(short_dir / "full"))
    try:
        while systemd.send(full.address, "x" * 4000):  # until its queue is full
            pass
        assert not systemd.send(full.address, "STOPPING=1")  # and it did not block
    finally:
        full.close()


# -- unknown HOSTKIT_* variables ---------------------------------------------------------------


def test_unknown_hostkit_variables_are_ignored_with_one_warning(tmp_path: Path) -> None:
    environ = {SERVICE_LINK: "tcp://10.0.0.1:80", "HOSTKIT_URL": "x",
               "HOSTKIT_SERVER__KEEP_ALIVE_TIMOUT": "3", "HOSTKIT_SHUTDOWN_TIMEOUT": "4",
               "HOSTKIT_PORT": "tcp://10.0.0.1:80", "HOSTKIT_TOKEN": "t",
               "HOSTKIT_WORKER_CHANNEL": "x", "HOSTKIT_MYAPP__GREETING": "hi"}
    configuration = load_configuration([], environ, content_root=tmp_path)
    assert configuration.options.shutdown_timeout == 4
    assert configuration.get("myapp.greeting") == "hi"  # an app's own table: no warning
    (warning,) = configuration.warnings
    assert warning.startswith(
        "ignored environment variables HOSTKIT_SERVER__KEEP_ALIVE_TIMOUT (did you mean "
        "'keep_alive_timeout'?), HOSTKIT_SERVICE_PORT, HOSTKIT_URL (did you mean 'urls'?): "
        "they name no hostkit setting (HOSTKIT_KEY and HOSTKIT_TABLE__KEY set settings); "
        "Kubernetes sets such variables for every Service in the namespace, these for one "
        "named hostkit: enableServiceLinks: false in the pod spec turns them off")
    assert "TOKEN" not in warning and "HOSTKIT_PORT," not in warning and "WORKER" not in warning
    assert configuration.get("port") is None and configuration.get("url") is None
    assert load_configuration([], {}, content_root=tmp_path).warnings == ()


def test_files_and_arguments_stay_strict_about_unknown_keys(tmp_path: Path) -> None:
    with pytest.raises(ConfigurationError, match=r"command-line argument --service_port=80: "
                                                 r"unknown key 'service_port'"):
        load_configuration(["--service_port=80"], {}, content_root=tmp_path)
    (tmp_path / "hostkit.toml").write_text("service_port = 80\n")
    with pytest.raises(ConfigurationError, match=r"hostkit.toml, line 1: unknown key"):
        load_configuration([], {}, content_root=tmp_path)
    (tmp_path / "hostkit.toml").write_text("")
    with pytest.raises(ConfigurationError, match=r"environment variable HOSTKIT_URLS: "
                                                 r"invalid value"):
        load_configuration([], {"HOSTKIT_URLS": "nowhere"}, content_root=tmp_path)


def test_a_host_logs_the_ignored_variables_once_at_start(tmp_path: Path) -> None:
    with Program(python(str(PROGRAMS / "probe.py"), f"--urls=http://{LOOPBACK}:0"),
                 cwd=tmp_path, env={SERVICE_LINK: "tcp://10.0.0.1:80"}) as program:
        program.wait_started(TIMEOUT)
    warnings = [line for line in program.lines if SERVICE_LINK in line]
    assert len(warnings) == 1, program.output
    assert "WARNING" in warnings[0] and "hostkit.configuration" in warnings[0]

