"""The contract between the host and its server: the role of the process, the request a server
plugin answers, the :class:`Server` protocol, and what each server declares it supports.

**Roles.** Every host process has one :class:`HostRole`, chosen once by ``HostBuilder.build()``
through the ``hostkit_host_role`` hook (no plugin answering: ``SERVE`` for InProcess):

- ``SERVE``: this process owns the public ``urls`` and runs the pipeline (InProcess);
- ``FRONT``: this process owns the public ``urls`` and the app runs elsewhere (the
  OutOfProcess module): the host runs neither the app's lifespan nor the pipeline here;
- ``CHILD``: this process runs the pipeline on a private address behind a front;
- ``SUPERVISE``: this process binds the public ``urls`` and runs worker processes that serve
  them (``[workers]``); the core chooses it, before the hook, and serves it itself.

**Creating the server.** ``hostkit_create_server`` gets one :class:`ServerRequest`, so a new
fact about the request never changes every implementation's signature.

**Declarations.** A server plugin declares each server it provides with a :class:`ServerInfo` returned from
``hostkit_declare_servers``: the hosting models it serves, the async backends it runs on and
the kinds of listen address it binds. ``HostBuilder.build()`` reads the declarations
(:func:`declared_servers`) and, before ``hostkit_create_server`` is called, checks the
configured ``server`` against its declaration (:func:`check_server_choice`). A combination
the server does not support is a :class:`~hostkit.ServerSelectionError` naming the server,
the setting, where it was set, what the server supports and which declared servers would do.

A server nobody declares is not checked here: ``hostkit_create_server`` alone decides.
"""

from __future__ import annotations

import dataclasses
import enum
from collections.abc import Iterable, Mapping
from typing import TYPE_CHECKING, Protocol, runtime_checkable

import anyio
from anyio.abc import TaskStatus

from hostkit.asgi import ASGIApp
from hostkit.errors import ServerSelectionError
from hostkit.listeners import parse_url
from hostkit.configuration.tables import HostingModel

if TYPE_CHECKING:
    from hostkit.authentication import Authenticator
    from hostkit.configuration import Configuration
    from hostkit.gateway import Gateway
    from hostkit.plugin_manager import Plugins


class HostRole(str, enum.Enum):
    """What this process does for the app; chosen by the ``hostkit_host_role`` hook."""

    #: owns the public ``urls`` and runs the pipeline (InProcess).
    SERVE = "serve"
    #: owns the public ``urls``; the app runs in other processes (the OutOfProcess module).
    FRONT = "front"
    #: runs the pipeline on a private address behind a front (an OutOfProcess child).
    CHILD = "child"
    #: binds the public ``urls`` and runs the worker processes that serve them.
    SUPERVISE = "supervise"

    @property
    def runs_pipeline(self) -> bool:
        """Whether the app, its lifespan and the pipeline run in this process."""
        return self in (HostRole.SERVE, HostRole.CHILD)

    @property
    def owns_public_listener(self) -> bool:
        """Whether this process serves the requests clients send to the public ``urls`` (and
        so runs the server-level authentication schemes on them). A supervisor binds them,
        but its workers serve them."""
        return self in (HostRole.SERVE, HostRole.FRONT)

    def __str__(self) -> str:
        return self.value

@runtime_checkable
class Server(Protocol):
    """A server that serves the host: the embedded server, or the out-of-process module."""

    #: the name users put in the ``server`` setting, e.g. ``"hypercorn"``.
    name: str

    async def serve(self, app: ASGIApp, stopping: anyio.Event, *,
                    task_status: TaskStatus[list[str]] = anyio.TASK_STATUS_IGNORED) -> None:
        """Serve ``app`` until ``stopping`` is set, then drain and return.

        Binds every address before calling ``task_status.started(urls)`` with the URLs it
        really listens on (a port of 0 resolved); raises :class:`hostkit.AddressInUseError`
        (or another :class:`hostkit.HostkitError`) before that when it cannot listen. Once
        ``stopping`` is set: stop accepting, let in-flight requests finish within
        ``shutdown_timeout``, close idle connections, and return. The host may cancel it past
        that deadline.
        """
        ...


@runtime_checkable
class ReloadableServer(Protocol):
    """A server that replaces the processes that run the app without stopping: the
    supervisor (its workers), the OutOfProcess module (its children)."""

    async def reload(self, configuration: Configuration) -> None:
        """Replace every process that runs the app by rolling replacement, under
        ``configuration`` (the configuration read again, :func:`reload_configuration`).

        Called by the host on SIGHUP, while :meth:`Server.serve` runs, in its event loop.
        Returns once every replacement is done or has failed; a new process that fails to
        start is logged and counted, and the old one keeps serving. Raises nothing for that.
        """
        ...


@runtime_checkable
class StopNowServer(Protocol):
    """A server whose own processes must stop at once when its host does: the OutOfProcess
    module (its children). The supervisor needs none: it stops its workers at once when its
    serve is cancelled."""

    def stop_now(self) -> None:
        """Called by the host on a second SIGINT/SIGTERM, in its event loop, just before it
        cancels :meth:`Server.serve`: end what the server's processes are doing (their drain
        and their app's shutdown cut short), killing those that do not end within a few
        seconds. Returns at once; the stop that follows in ``serve`` waits for them."""
        ...


#: Every async backend a host can run on (the ``async_backend`` setting).
ASYNC_BACKENDS = ("asyncio", "trio")
#: Every kind of listen address in ``urls``: ``http://``, ``https://`` and ``unix:``.
URL_SCHEMES = ("http", "https", "unix")


def _models(values: Iterable[HostingModel | str]) -> tuple[HostingModel, ...]:
    by_name = {model.value.lower(): model for model in HostingModel}
    result = []
    for value in values:
        model = by_name.get(str(value).lower())
        if model is None:
            raise ValueError(f"ServerInfo: unknown hosting model {value!r}; allowed: "
                             + ", ".join(model.value for model in HostingModel))
        result.append(model)
    return tuple(dict.fromkeys(result))


def _choices(what: str, values: Iterable[str], allowed: tuple[str, ...]) -> tuple[str, ...]:
    result = tuple(dict.fromkeys(str(value).lower() for value in values))
    unknown = [value for value in result if value not in allowed]
    if unknown:
        raise ValueError(f"ServerInfo: unknown {what} {unknown[0]!r}; allowed: "
                         + ", ".join(allowed))
    return result


@dataclasses.dataclass(frozen=True, init=False)
class ServerInfo:
    """What one server supports; a plugin returns these from ``hostkit_declare_servers``.

    ``name`` is what users put in the ``server`` setting (compared lower-cased).
    ``hosting_models``: ``HostingModel.IN_PROCESS`` when it can serve the public ``urls``
    itself, ``HostingModel.OUT_OF_PROCESS`` when it can run in an out-of-process child (on
    loopback, behind the module). ``async_backends``: ``"asyncio"`` and/or ``"trio"``.
    ``url_schemes``: ``"http"``, ``"https"`` (TLS from ``[tls]``) and/or ``"unix"``. Values
    are normalised to tuples (lower-cased, duplicates dropped); an unknown or empty one raises
    ``ValueError`` when the plugin makes the object.
    """

    name: str
    hosting_models: tuple[HostingModel, ...]
    async_backends: tuple[str, ...]
    url_schemes: tuple[str, ...]

    def __init__(self, *, name: str, hosting_models: Iterable[HostingModel | str],
                 async_backends: Iterable[str], url_schemes: Iterable[str]):
        normalised: dict[str, object] = {
            "name": name.strip().lower(),
            "hosting_models": _models(hosting_models),
            "async_backends": _choices("async backend", async_backends, ASYNC_BACKENDS),
            "url_schemes": _choices("url scheme", url_schemes, URL_SCHEMES),
        }
        for field, value in normalised.items():
            if not value:
                raise ValueError(f"ServerInfo: {field} must not be empty")
            object.__setattr__(self, field, value)

    def describe(self) -> str:
        """One line for ``hostkit plugins``: models; backends; url schemes."""
        return (f"{', '.join(model.value for model in self.hosting_models)}; "
                f"{', '.join(self.async_backends)}; {', '.join(self.url_schemes)}")


@dataclasses.dataclass(frozen=True)
class ServerRequest:
    """What ``hostkit_create_server`` is asked to create, as one object.

    ``role``: this process's :class:`HostRole`. ``hosting_model``: the configured model.
    ``server_name``: the ``server`` setting, lower-cased (in a ``FRONT``, the server its
    children will run). ``configuration``: the effective configuration. ``authenticator``:
    the configured server authentication, ``None`` when ``[authentication] schemes`` is empty;
    an embedded server ignores it (the pipeline runs it), a front must run it on every
    request. ``declared``: every declared server, by name (a front checks what its children
    will run against it with :func:`check_server_choice`). ``gateway``: the per-request duties
    of the process that owns the public listener (:class:`hostkit.gateway.Gateway`: forwarded
    headers, request ids, health paths, the limit, the access log, metrics); a ``FRONT`` does
    them on every request; an embedded server ignores it (the host puts them in front of the
    app it serves). None only where no host built it (a test).
    """

    role: HostRole
    hosting_model: HostingModel
    server_name: str
    configuration: Configuration
    authenticator: Authenticator | None = None
    declared: Mapping[str, ServerInfo] = dataclasses.field(default_factory=dict)
    gateway: Gateway | None = None


def declared_servers(plugins: Plugins) -> dict[str, ServerInfo]:
    """Every server the registered plugins declare, by name.

    Calls ``hostkit_declare_servers`` once. When two plugins declare the same name, the
    declaration of the plugin that ``hostkit_create_server`` asks first wins (pluggy's order).
    Raises ``TypeError`` when a plugin returns something other than ``ServerInfo`` objects.
    """
    servers: dict[str, ServerInfo] = {}
    for infos in plugins.hook.hostkit_declare_servers():
        for info in infos or ():
            if not isinstance(info, ServerInfo):
                raise TypeError(f"hostkit_declare_servers returned {info!r}, "
                                "expected hostkit.ServerInfo instances")
            servers.setdefault(info.name, info)
    return servers


def _others(declared: Mapping[str, ServerInfo], supports: str, value: object) -> str:
    names = sorted(name for name, info in declared.items()
                   if value in getattr(info, supports))
    return f"; servers that support it: {', '.join(names)}" if names else ""


def _where(configuration: Configuration, key: str) -> str:
    return str(configuration.source_of(key) or "default")


def check_server_choice(configuration: Configuration, declared: Mapping[str, ServerInfo],
                        *, role: HostRole) -> None:
    """Raise :class:`ServerSelectionError` when the declared server cannot serve this
    configuration: its hosting model, its async backend, or a kind of address in ``urls``.

    Called by ``HostBuilder.build()`` before ``hostkit_create_server`` in a process that runs
    the pipeline (``SERVE``, ``CHILD``). A ``FRONT`` does not run the ``server`` it names: the
    front's plugin calls this with ``role=HostRole.CHILD`` on the configuration its children
    will load. Does nothing for a server no plugin declares.
    """
    options = configuration.options
    name = options.server.lower()
    info = declared.get(name)
    if info is None:
        return
    model = options.hosting_model
    child = " in the out-of-process child" if role is HostRole.CHILD else ""
    if model not in info.hosting_models:
        raise ServerSelectionError(
            f"server {name!r} does not support hosting_model {model.value!r} (set by "
            f"{_where(configuration, 'hosting_model')}); it supports: "
            f"{', '.join(m.value for m in info.hosting_models)}"
            + _others(declared, "hosting_models", model))
    backend = options.async_backend
    if backend not in info.async_backends:
        raise ServerSelectionError(
            f"server {name!r} does not support async_backend {backend!r}{child} (set by "
            f"{_where(configuration, 'async_backend')}); it supports: "
            f"{', '.join(info.async_backends)}" + _others(declared, "async_backends", backend))
    if role is HostRole.CHILD:
        return  # the child listens where its front says, whatever urls holds
    for url in options.urls:
        scheme = parse_url(url).scheme
        if scheme not in info.url_schemes:
            hint = ("" if model is HostingModel.OUT_OF_PROCESS else
                    "; with hosting_model = \"OutOfProcess\" the module listens on urls")
            raise ServerSelectionError(
                f"server {name!r} cannot listen on {url!r} (urls, set by "
                f"{_where(configuration, 'urls')}): it supports "
                f"{', '.join(s + ('://' if s != 'unix' else ':') for s in info.url_schemes)} "
                f"addresses" + _others(declared, "url_schemes", scheme) + hint)
