"""The settings tables of hostkit's own configuration keys, and the types every table is
declared with: one source of truth for every setting.

Each setting is a dataclass field whose metadata holds its :class:`Kind` (how a value is
validated and converted, from TOML or from text) and its documentation. The configuration
loader, ``hostkit config``, ``hostkit.toml.example`` and the docs all read the tables, so a
key is added in exactly one place.

Plugins declare tables of their own with the same :class:`SettingsTable` type and contribute
them through the ``hostkit_add_settings_tables`` hook; :mod:`hostkit.configuration.schema`
puts both together.
"""

from __future__ import annotations

import dataclasses
import enum
import ipaddress
from collections.abc import Callable, Iterator, Mapping
from typing import Any, Generic, TypeVar

from hostkit._compat import tomllib
from hostkit.errors import ConfigurationError
from hostkit.event_loop import EVENT_LOOPS
from hostkit.listeners import parse_url

T = TypeVar("T")


class HostingModel(str, enum.Enum):
    """Where the app runs: in the serving process, or in a child behind the module."""

    IN_PROCESS = "InProcess"
    OUT_OF_PROCESS = "OutOfProcess"

    def __str__(self) -> str:
        return self.value


class InvalidValue(ValueError):
    """A value does not fit its setting; the message says what is allowed."""


class Kind(Generic[T]):
    """How one setting's values are checked and converted.

    ``convert`` takes a value parsed from TOML; ``from_text`` takes the string of an
    environment variable or command-line argument. Both raise :class:`InvalidValue` whose
    message describes what is allowed.
    """

    allowed: str = "a value"

    def convert(self, value: Any) -> T:
        raise NotImplementedError

    def from_text(self, text: str) -> T:
        return self.convert(text)

    def to_toml(self, value: T) -> str:
        """The value written as TOML, for ``hostkit.toml.example`` and ``hostkit config``."""
        return toml_literal(value)

    def fail(self) -> InvalidValue:
        return InvalidValue(f"allowed: {self.allowed}")


def toml_literal(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, enum.Enum):
        return toml_literal(value.value)
    if isinstance(value, str):
        escaped = value.replace("\\", "\\\\").replace('"', '\\"')
        return f'"{escaped}"'
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(toml_literal(item) for item in value) + "]"
    if isinstance(value, Mapping):
        return "{" + ", ".join(f"{k} = {toml_literal(v)}" for k, v in value.items()) + "}"
    if value is None:
        return '""'
    return repr(value)


class Boolean(Kind[bool]):
    allowed = "true or false"
    _TEXT = {"true": True, "1": True, "yes": True, "on": True,
             "false": False, "0": False, "no": False, "off": False}

    def convert(self, value: Any) -> bool:
        if isinstance(value, bool):
            return value
        raise self.fail()

    def from_text(self, text: str) -> bool:
        try:
            return self._TEXT[text.strip().lower()]
        except KeyError:
            raise self.fail() from None


class Number(Kind[float]):
    """A number of seconds or similar, with an optional inclusive range."""

    def __init__(self, minimum: float = 0, maximum: float | None = None, integer: bool = False):
        self.minimum = minimum
        self.maximum = maximum
        self.integer = integer
        noun = "a whole number" if integer else "a number"
        upper = f" and at most {maximum:g}" if maximum is not None else ""
        self.allowed = f"{noun} at least {minimum:g}{upper}"

    def convert(self, value: Any) -> Any:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise self.fail()
        if self.integer and not (isinstance(value, int) or float(value).is_integer()):
            raise self.fail()
        if value < self.minimum or (self.maximum is not None and value > self.maximum):
            raise self.fail()
        return int(value) if self.integer else value

    def from_text(self, text: str) -> Any:
        try:
            value: float = int(text.strip())
        except ValueError:
            try:
                value = float(text.strip())
            except ValueError:
                raise self.fail() from None
        return self.convert(value)


class Text(Kind[str]):
    def __init__(self, allowed: str = "a string", non_empty: bool = False,
                 check: Callable[[str], bool] | None = None):
        self.allowed = allowed
        self.non_empty = non_empty
        self.check = check

    def convert(self, value: Any) -> str:
        if not isinstance(value, str) or (self.non_empty and not value):
            raise self.fail()
        if self.check is not None and not self.check(value):
            raise self.fail()
        return value


class Choice(Kind[Any]):
    """One of a fixed set of words, matched case-insensitively."""

    def __init__(self, *choices: Any):
        self.choices = choices
        self.allowed = " or ".join(f'"{c}"' for c in choices)

    def convert(self, value: Any) -> Any:
        if isinstance(value, str):
            for choice in self.choices:
                if str(choice).lower() == value.strip().lower():
                    return choice
        raise self.fail()


class TextList(Kind[tuple[str, ...]]):
    """A list of strings. From text: a TOML array, or items separated by ';' or ','."""

    def __init__(self, allowed: str = "a list of strings", non_empty: bool = False,
                 item_check: Callable[[str], bool] | None = None):
        self.allowed = allowed
        self.non_empty = non_empty
        self.item_check = item_check

    def convert(self, value: Any) -> tuple[str, ...]:
        if isinstance(value, str):
            value = [value]
        if not isinstance(value, (list, tuple)) or not all(isinstance(v, str) for v in value):
            raise self.fail()
        if self.non_empty and not value:
            raise self.fail()
        if self.item_check is not None and not all(self.item_check(v) for v in value):
            raise self.fail()
        return tuple(value)

    def from_text(self, text: str) -> tuple[str, ...]:
        stripped = text.strip()
        if stripped.startswith("["):
            return self.convert(_parse_toml_value(stripped, self))
        items = [item.strip() for item in stripped.replace(",", ";").split(";")]
        return self.convert([item for item in items if item])


class TextTable(Kind[Mapping[str, str]]):
    """A table of string values, e.g. extra environment variables. From text: an inline table."""

    def __init__(self, allowed: str = "a table of strings", reserved: frozenset[str] = frozenset()):
        self.reserved = reserved
        suffix = f" (not {', '.join(sorted(reserved))})" if reserved else ""
        self.allowed = allowed + suffix

    def convert(self, value: Any) -> Mapping[str, str]:
        if not isinstance(value, Mapping) or not all(
            isinstance(k, str) and isinstance(v, str) for k, v in value.items()
        ):
            raise self.fail()
        if any(k.upper() in self.reserved for k in value):
            raise self.fail()
        return dict(value)

    def from_text(self, text: str) -> Mapping[str, str]:
        return self.convert(_parse_toml_value(text.strip(), self))


def _parse_toml_value(text: str, kind: Kind[Any]) -> Any:
    try:
        return tomllib.loads(f"value = {text}")["value"]
    except tomllib.TOMLDecodeError:
        raise kind.fail() from None


def _is_url(value: str) -> bool:
    """True for a listen address the servers can bind: what :func:`parse_url` accepts."""
    try:
        parse_url(value)
    except ConfigurationError:
        return False
    return True


def _is_plain_url(value: str) -> bool:
    """A listen address without TLS (``[metrics] urls``)."""
    return _is_url(value) and not parse_url(value).is_secure


def _is_path_or_empty(value: str) -> bool:
    return not value or value.startswith("/")


def _is_ip_address(value: str) -> bool:
    try:
        ipaddress.ip_address(value.strip())
    except ValueError:
        return False
    return True


def _is_network(value: str) -> bool:
    try:
        ipaddress.ip_network(value.strip(), strict=False)
    except ValueError:
        return False
    return True


def setting(default: Any, kind: Kind[Any], doc: str, *, secret: bool = False) -> Any:
    """Declare one setting as a dataclass field."""
    factory = (lambda: dict(default)) if isinstance(default, dict) else None
    metadata = {"kind": kind, "doc": doc, "secret": secret}
    if factory is not None:
        return dataclasses.field(default_factory=factory, metadata=metadata)
    return dataclasses.field(default=default, metadata=metadata)


def field_default(field: dataclasses.Field[Any]) -> Any:
    """The default value of a setting declared with :func:`setting`."""
    if field.default is not dataclasses.MISSING:
        return field.default
    return field.default_factory()  # type: ignore[misc,operator]


@dataclasses.dataclass(frozen=True)
class SettingsTable:
    """A table of settings: a frozen dataclass type whose fields were declared with :func:`setting`.

    ``name`` is the TOML table (``None`` for the top level); ``doc`` is one line for the docs.
    """

    name: str | None
    options: type[Any]
    doc: str = ""

    def fields(self) -> Iterator[dataclasses.Field[Any]]:
        yield from (f for f in dataclasses.fields(self.options) if "kind" in f.metadata)


@dataclasses.dataclass(frozen=True)
class TlsOptions:
    certificate: str = setting("", Text("a path to a PEM certificate file"),
                               "PEM certificate (chain) for https:// urls")
    private_key: str = setting("", Text("a path to a PEM private key file"),
                               "PEM private key of the certificate")
    client_certificate_mode: str = setting(
        "none", Choice("none", "optional", "required"),
        "ask clients for a certificate: none, optional or required")
    client_ca: str = setting("", Text("a path to a PEM file of CA certificates"),
                             "CA certificates that client certificates must chain to")


@dataclasses.dataclass(frozen=True)
class ServerOptions:
    max_request_body_size: int = setting(
        30_000_000, Number(0, integer=True),
        "bytes; a larger request body gets 413 before the app reads past the limit (0: no limit)")
    allow_synchronous_io: bool = setting(
        False, Boolean(), "allow request.body_sync() / response.write_sync()")
    request_header_timeout: float = setting(
        30, Number(0.001), "seconds a connection may take to deliver a whole request head")
    keep_alive_timeout: float = setting(
        5, Number(0), "seconds an idle keep-alive connection stays open")
    max_concurrent_requests: int = setting(
        0, Number(0, integer=True),
        "requests served at once by the process that owns the public listener (0: no "
        "limit); more wait in a queue")
    request_queue_length: int = setting(
        1000, Number(0, integer=True),
        "requests that may wait for max_concurrent_requests (IIS queueLength); beyond it "
        "503 with Retry-After at once")
    wsgi_threads: int = setting(
        10, Number(1, integer=True),
        "threads that run a WSGI app's requests (a request waits for a free one)")
    http2_max_concurrent_streams: int = setting(
        100, Number(1, integer=True),
        "HTTP/2 streams a client may have open at once on one connection, announced in "
        "SETTINGS (a stream past it: REFUSED_STREAM at the front, GOAWAY PROTOCOL_ERROR "
        "InProcess)")
    http2_max_header_list_size: int = setting(
        65536, Number(1024, integer=True),
        "bytes of HTTP/2 request headers (decoded, as RFC 9113 SETTINGS_MAX_HEADER_LIST_SIZE "
        "counts them) a stream may send; more ends the connection with GOAWAY "
        "ENHANCE_YOUR_CALM")

    @property
    def next_request_head_timeout(self) -> float:
        """Seconds a connection may wait for the whole head of its next request.

        The wait runs from the moment the connection is accepted (or a response ends) until a
        whole request head has arrived, and bytes arriving do not restart it: it is both the
        keep-alive timeout and the request-head deadline, so it is the smaller of the two.
        Every server that owns the public listener times its connections with it.
        """
        return min(self.keep_alive_timeout, self.request_header_timeout)


@dataclasses.dataclass(frozen=True)
class AuthenticationOptions:
    automatic_authentication: bool = setting(
        True, Boolean(), "server authentication sets context.user on every request")
    authentication_display_name: str = setting(
        "", Text(), "display name of the server's authentication scheme")
    schemes: tuple[str, ...] = setting(
        (), TextList("a list of scheme names, e.g. [\"basic\", \"certificate\"]"),
        "server-level authentication schemes run by the process that owns the public listener")
    users_file: str = setting(
        "users.txt", Text("a path to a users file", non_empty=True),
        "the basic scheme's users (NAME:PBKDF2 hash lines; `hostkit users add NAME` writes it)")


@dataclasses.dataclass(frozen=True)
class WorkersOptions:
    """The supervisor and its worker processes (SPEC §8, IIS's application pool under WAS)."""

    processes: int = setting(
        1, Number(1, 256, integer=True),
        "worker processes (a web garden); more than 1 runs the supervisor")
    supervise: bool = setting(
        False, Boolean(), "run the supervisor even with one worker (crash restart)")
    rapid_fails_per_minute: int = setting(
        10, Number(0, integer=True),
        "worker crashes per rolling minute before the supervisor stops restarting them "
        "for the rest of that minute (it answers 503 meanwhile)")
    startup_time_limit: float = setting(
        120, Number(0.001), "seconds a new worker has to report ready")
    max_requests: int = setting(
        0, Number(0, integer=True),
        "recycle the process that runs the app (InProcess worker, OutOfProcess child) after "
        "this many requests (0: never)")
    max_requests_jitter: int = setting(
        0, Number(0, integer=True),
        "a random 0..this many requests added to max_requests per process, so processes do "
        "not recycle together")
    max_lifetime: float = setting(
        0, Number(0), "seconds; recycle the process that runs the app after this long (0: never)")
    max_memory: float = setting(
        0, Number(0),
        "MiB of resident memory; recycle the process that runs the app above it (0: never)")
    reload: bool = setting(
        False, Boolean(),
        "development only: replace the app's processes when a *.py or configuration file "
        "under the content root changes (--reload)")

    @property
    def supervised(self) -> bool:
        """Whether a supervisor runs the workers: ``supervise``, more than one process, or
        ``reload`` (a single InProcess host cannot replace itself)."""
        return self.supervise or self.processes > 1 or self.reload

    @property
    def recycles(self) -> bool:
        """Whether any recycle key is set."""
        return bool(self.max_requests or self.max_lifetime or self.max_memory)


@dataclasses.dataclass(frozen=True)
class HealthOptions:
    """Health checks of the processes that run the app (SPEC §9)."""

    app_path: str = setting(
        "", Text("a path starting with '/', or empty", check=_is_path_or_empty),
        "an app path probed before a new process gets traffic and every app_interval seconds "
        "(empty: no probe)")
    app_interval: float = setting(10, Number(0.01), "seconds between two probes of app_path")
    app_failures: int = setting(
        3, Number(1, integer=True), "failed probes in a row that replace the process")
    liveness_path: str = setting(
        "", Text("a path starting with '/', or empty", check=_is_path_or_empty),
        "answered by hostkit itself, before authentication and the app: 200 while the "
        "process serves (empty: not answered)")
    readiness_path: str = setting(
        "", Text("a path starting with '/', or empty", check=_is_path_or_empty),
        "answered by hostkit itself: 200 while the app is started and not draining, offline, "
        "rapid-failed or failed to start; else 503 (empty: not answered)")

    def paths(self) -> dict[str, str]:
        """The paths set, by key (``app_path``, ``liveness_path``, ``readiness_path``)."""
        return {name: getattr(self, name) for name in ("app_path", "liveness_path",
                                                       "readiness_path") if getattr(self, name)}


_LOG_LEVELS = ("debug", "info", "warning", "error")


@dataclasses.dataclass(frozen=True)
class LoggingOptions:
    """hostkit's logs and the access log (SPEC §9)."""

    level: str = setting("info", Choice(*_LOG_LEVELS),
                         "hostkit's log level: debug, info, warning or error (--log-level)")
    format: str = setting("text", Choice("text", "json"),
                          "text, or json (one JSON object per line)")
    access_log: bool = setting(
        True, Boolean(),
        "one line per request (logger hostkit.access), written by the process that owns "
        "the public listener")
    access_log_format: str = setting(
        "combined", Choice("common", "combined", "json"),
        "common, combined (Apache/nginx, plus the duration in ms and the request id) or json")


@dataclasses.dataclass(frozen=True)
class ForwardedHeadersOptions:
    """Which proxies' X-Forwarded-* and Forwarded headers are believed (ASP.NET Core's
    ForwardedHeadersOptions)."""

    known_proxies: tuple[str, ...] = setting(
        (), TextList("a list of IP addresses, e.g. [\"10.0.0.1\", \"::1\"]",
                     item_check=_is_ip_address),
        "IP addresses of proxies whose forwarding headers are believed (nobody by default)")
    known_networks: tuple[str, ...] = setting(
        (), TextList("a list of networks in CIDR notation, e.g. [\"10.0.0.0/8\"]",
                     item_check=_is_network),
        "networks (CIDR) of proxies whose forwarding headers are believed")
    forward_limit: int = setting(
        1, Number(1, integer=True),
        "how many proxy hops, right to left, are read from the forwarding headers")


@dataclasses.dataclass(frozen=True)
class MetricsOptions:
    """The Prometheus metrics listener (SPEC §9)."""

    urls: tuple[str, ...] = setting(
        (), TextList("a list of http://HOST:PORT, unix:/PATH or fd://N",
                     item_check=_is_plain_url),
        "a separate listener serving Prometheus text format at /metrics, summed over all "
        "workers (empty: no metrics)")


@dataclasses.dataclass(frozen=True)
class HostOptions:
    """hostkit's own settings, typed. ``Configuration.options`` holds the effective ones."""

    hosting_model: HostingModel = setting(
        HostingModel.IN_PROCESS, Choice(HostingModel.IN_PROCESS, HostingModel.OUT_OF_PROCESS),
        "InProcess or OutOfProcess (case-insensitive)")
    urls: tuple[str, ...] = setting(
        ("http://127.0.0.1:5000",),
        TextList("a non-empty list of http://HOST:PORT, https://HOST:PORT or unix:/PATH, "
                 "or fd://N (a listening socket inherited on descriptor N)",
                 non_empty=True, item_check=_is_url),
        "public listen addresses; https:// needs [tls]; unix:/path allowed; fd://N serves an "
        "inherited socket (systemd socket activation: the activated sockets when not set)")
    async_backend: str = setting("asyncio", Choice("asyncio", "trio"),
                                 "the async library: asyncio or trio")
    event_loop: str = setting(
        "auto", Choice(*EVENT_LOOPS),
        "asyncio's event loop: auto (uvloop when it can be imported, else the standard "
        "library's), asyncio or uvloop (pip install 'hostkit[uvloop]'); with trio, auto and "
        "asyncio mean trio and uvloop is an error")
    server: str = setting("hypercorn", Text("a server plugin name", non_empty=True),
                          "which server plugin serves the pipeline")
    shutdown_timeout: float = setting(30, Number(0),
                                      "seconds the host drains in-flight requests on stop")
    capture_startup_errors: bool = setting(
        True, Boolean(),
        "InProcess: a start failure serves the 500.30 page (true) or prints the error and "
        "exits with status 3 (false); a child always exits on a start failure")
    startup_time_limit: float = setting(
        120, Number(0.001),
        "InProcess: seconds the app's lifespan startup may take before the host reports a "
        "start failure (500.37)")
    shutdown_delay: float = setting(
        0, Number(0),
        "seconds between SIGTERM and the drain during which readiness answers 503 and "
        "requests are still served (ANCM shutdownDelay)")
    plugins: tuple[str, ...] = setting((), TextList("a list of importable module names"),
                                       "extra plugin modules to import and register")
    tls: TlsOptions = dataclasses.field(default_factory=TlsOptions)
    server_options: ServerOptions = dataclasses.field(default_factory=ServerOptions)
    authentication: AuthenticationOptions = dataclasses.field(
        default_factory=AuthenticationOptions)
    workers: WorkersOptions = dataclasses.field(default_factory=WorkersOptions)
    health: HealthOptions = dataclasses.field(default_factory=HealthOptions)
    logging: LoggingOptions = dataclasses.field(default_factory=LoggingOptions)
    forwarded_headers: ForwardedHeadersOptions = dataclasses.field(
        default_factory=ForwardedHeadersOptions)
    metrics: MetricsOptions = dataclasses.field(default_factory=MetricsOptions)


# The tables of hostkit's own schema, in documentation order, with the HostOptions attribute
# that holds each. ``[server]`` lives in ``server_options`` because the top-level ``server`` key
# names the server plugin.
HOST_TABLES: tuple[tuple[SettingsTable, str], ...] = (
    (SettingsTable(None, HostOptions, "Host"), ""),
    (SettingsTable("tls", TlsOptions, "TLS on the public listener"), "tls"),
    (SettingsTable("server", ServerOptions, "Server limits"), "server_options"),
    (SettingsTable("authentication", AuthenticationOptions, "Server authentication"),
     "authentication"),
    (SettingsTable("workers", WorkersOptions, "Worker processes and the supervisor"),
     "workers"),
    (SettingsTable("health", HealthOptions, "Health checks"), "health"),
    (SettingsTable("logging", LoggingOptions, "Logging and the access log"), "logging"),
    (SettingsTable("forwarded_headers", ForwardedHeadersOptions,
                   "Trusted proxies and forwarding headers"), "forwarded_headers"),
    (SettingsTable("metrics", MetricsOptions, "Prometheus metrics"), "metrics"),
)
