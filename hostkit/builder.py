"""HostBuilder: collects the app, middleware and plugins, then builds the Host once."""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from hostkit.asgi import Receive, Scope, Send
from hostkit.authentication import AuthenticationMiddleware, Authenticator, build_authenticator
from hostkit.claims import ClaimsTransformation, claims_transformation_middleware
from hostkit.child_contract import VARIABLES as CHILD_VARIABLES
from hostkit.configuration import Configuration, Source
from hostkit.configuration.schema import contributed_tables
from hostkit.content_root import ContentRootRules
from hostkit.environment import HostEnvironment, flag_is_set
from hostkit.errors import ConfigurationError, InvalidOperationError, ServerSelectionError
from hostkit.gateway import Gateway, gateway_for
from hostkit.metrics import metrics_for
from hostkit.pipeline import AsgiMiddlewareFactory, Middleware, Pipeline, Stage, as_terminal_app
from hostkit.plugin_manager import Plugins
from hostkit.configuration.tables import HostingModel, SettingsTable
from hostkit.server_contract import (
    HostRole,
    Server,
    ServerRequest,
    check_server_choice,
    declared_servers,
)
from hostkit.supervisor import Supervisor
from hostkit.worker_contract import current_worker
from hostkit.wsgi import WsgiApp, is_wsgi_app

if TYPE_CHECKING:
    from hostkit.host import Host

logger = logging.getLogger("hostkit.host")


async def _not_found(scope: Scope, receive: Receive, send: Send) -> None:
    """The terminal app when ``use_app`` was never called: 404 for every request."""
    if scope["type"] == "http":
        await send({"type": "http.response.start", "status": 404,
                    "headers": [(b"content-length", b"0")]})
        await send({"type": "http.response.body", "body": b""})
    elif scope["type"] == "websocket":
        await send({"type": "websocket.close", "code": 1000})


class HostBuilder:
    """Builds a :class:`Host`. Methods append and return the builder; :meth:`build` runs once.

    Usually made by ``Host.create_default_builder(args)``.
    """

    def __init__(self, configuration: Configuration, plugins: Plugins | None = None):
        self._configuration = configuration
        self.plugins = plugins if plugins is not None else Plugins()
        self.pipeline = Pipeline()
        self._app: Any = None
        self._claims_transformations: list[ClaimsTransformation] = []
        self._built = False
        #: This process's role, chosen by ``hostkit_host_role`` when :meth:`build` starts
        #: (``None`` before): plugins read it in ``hostkit_configure_builder``.
        self.role: HostRole | None = None
        self._worker_role = HostRole.SERVE
        #: What the offline file and a configuration change do (``[module]``
        #: ``app_offline_file``, ``restart_on_config_change``): a plugin that owns those keys
        #: sets it, the OutOfProcess plugin; the supervisor applies it to InProcess workers.
        self.content_root_rules = ContentRootRules()
        #: Bare status codes instead of hostkit's error pages (the 500.30 start-failure page
        #: included). A plugin sets it: the OutOfProcess plugin from ``[module]
        #: disable_startup_error_page``, which covers both models as ANCM's
        #: ``disableStartUpErrorPage`` does.
        self.bare_error_pages = False

    @property
    def configuration(self) -> Configuration:
        """The merged configuration, readable before :meth:`build`."""
        return self._configuration

    @property
    def environment(self) -> HostEnvironment:
        return HostEnvironment(self._configuration.environment_name,
                               self._configuration.content_root)

    def set_configuration(self, values: Mapping[str, Any], source: str) -> HostBuilder:
        """Set configuration values from code, validated; ``source`` names who set them."""
        self._configuration = self._configuration.with_values(values, Source("code", source))
        return self

    def use_app(self, app: Any) -> HostBuilder:
        """Set the terminal app: an ASGI 3 app, ``async def handler(context)``, or a WSGI app
        ``app(environ, start_response)`` (served in a thread pool by
        :class:`hostkit.wsgi.WsgiApp`, docs/wsgi.md). Raises ``TypeError`` naming what was
        given for anything else."""
        if not is_wsgi_app(app):
            as_terminal_app(app)  # TypeError now, where the mistake is, not at build()
        self._app = app
        return self

    def _terminal_app(self) -> Any:
        """The ASGI app ``use_app`` set (a WSGI app wrapped with this configuration's
        ``[server] wsgi_threads``), or the 404 app when it was never called."""
        if self._app is None:
            return _not_found
        if not is_wsgi_app(self._app):
            return as_terminal_app(self._app)
        options = self._configuration.options
        processes = max(options.workers.processes,
                        self._configuration.get("module.processes_per_application", 1) or 1)
        return WsgiApp(self._app, threads=options.server_options.wsgi_threads,
                       multiprocess=processes > 1)

    def use(self, middleware: Middleware) -> HostBuilder:
        """Append ``async def middleware(context, call_next)``; earlier calls are outer layers."""
        self.pipeline.use(middleware, Stage.APP)
        return self

    def use_asgi_middleware(self, factory: AsgiMiddlewareFactory, **options: Any) -> HostBuilder:
        """Append an ASGI middleware: ``factory(app, **options)`` returns the wrapped app."""
        self.pipeline.use_asgi_middleware(factory, Stage.APP, **options)
        return self

    def add_claims_transformation(self, transformation: ClaimsTransformation) -> HostBuilder:
        """Add ``fn(principal, context) -> ClaimsPrincipal`` (sync or async), run per request."""
        if not callable(transformation):
            raise TypeError(f"add_claims_transformation() expected a callable, "
                            f"got {transformation!r}")
        self._claims_transformations.append(transformation)
        return self

    def add_plugin(self, plugin: object, name: str | None = None) -> HostBuilder:
        """Register a pluggy plugin (module or object) for this host only."""
        self.plugins.register(plugin, name)
        return self

    def settings_tables(self) -> list[SettingsTable]:
        """The settings tables the plugins contribute (``hostkit_add_settings_tables``), which
        :meth:`build` adds to the configuration's schema; for ``hostkit config``, which shows
        them without building. Raises :class:`TypeError` for a result that is not a
        :class:`SettingsTable`."""
        return contributed_tables(self.plugins)

    def build(self) -> Host:
        """Validate, configure the pipeline, choose the server; returns the :class:`Host`.

        Raises :class:`hostkit.ConfigurationError` for bad plugin settings or hooks,
        :class:`hostkit.ServerSelectionError` when no plugin serves the configuration or the
        chosen server's declaration (``hostkit_declare_servers``) rules it out, and
        :class:`hostkit.InvalidOperationError` when called twice.
        """
        from hostkit.host import Host, configure_default_logging

        if self._built:
            raise InvalidOperationError("HostBuilder.build() can be called only once")
        self._built = True
        # The warnings of build() read like the host's own.
        configure_default_logging(self._configuration.options.logging)
        hook = self.plugins.hook

        tables = self.settings_tables()
        self._configuration = self._configuration.with_tables(tables)
        self._configuration.check_app_tables(table.name for table in tables if table.name)
        self.role = self._choose_role()
        if self.role is HostRole.SERVE and not self._configuration.options.workers.supervised:
            self._warn_unsupervised()
        hook.hostkit_configure_builder(builder=self)
        self.plugins.check_pending()
        hook.hostkit_configure_pipeline(pipeline=self.pipeline, configuration=self._configuration)
        authenticator = self._add_authentication()
        transform = claims_transformation_middleware(self.plugins.manager,
                                                     self._claims_transformations)
        if transform is not None:
            self.pipeline.use(transform, Stage.AUTHENTICATION)

        app = self.pipeline.build(self._terminal_app())
        # A child's front counts its requests and does its gateway's duties.
        metrics = metrics_for(self._configuration) if self.role is not HostRole.CHILD else None
        gateway = gateway_for(self._configuration, metrics)
        server = self._create_server(self.role, authenticator, gateway)
        return Host(self._configuration, self.plugins, server, app, role=self.role,
                    bare_error_pages=self.bare_error_pages, gateway=gateway)

    def _choose_role(self) -> HostRole:
        """``SUPERVISE`` when ``[workers]`` asks for a supervisor and this process is neither
        one of its workers nor an OutOfProcess child; else :meth:`_serving_role`."""
        self._worker_role = self._serving_role()
        try:
            worker = current_worker()
        except ValueError as error:
            raise ConfigurationError(f"environment: {error}") from None
        is_child = CHILD_VARIABLES <= os.environ.keys()
        if self._configuration.options.workers.supervised and worker is None and not is_child:
            return HostRole.SUPERVISE
        return self._worker_role

    def _warn_unsupervised(self) -> None:
        """A single InProcess host cannot recycle or replace itself: say so for each key
        that asks it to."""
        for key in ("workers.max_requests", "workers.max_lifetime", "workers.max_memory",
                    "health.app_path"):
            source = self._configuration.source_of(key)
            if source is not None and self._configuration.get(key):
                logger.warning("%s sets %s, which a single InProcess host cannot apply to "
                               "itself: set [workers] supervise = true", source, key)

    def _serving_role(self) -> HostRole:
        """The first role a plugin's ``hostkit_host_role`` gives; without one, ``SERVE`` for
        InProcess. Raises :class:`ServerSelectionError` for another model nobody hosts."""
        role = self.plugins.hook.hostkit_host_role(configuration=self._configuration)
        if role is not None:
            return HostRole(role)
        model = self._configuration.options.hosting_model
        if model is HostingModel.IN_PROCESS:
            return HostRole.SERVE
        raise ServerSelectionError(
            f"no plugin hosts hosting model {model.value!r} with server "
            f"{self._configuration.options.server.lower()!r} (none answered "
            f"hostkit_host_role); {self._loaded_plugins()}")

    def _loaded_plugins(self) -> str:
        autoload_off = flag_is_set(os.environ, "HOSTKIT_DISABLE_PLUGIN_AUTOLOAD")
        return (f"loaded plugins: {', '.join(self.plugins.names()) or 'none'}"
                + (" (HOSTKIT_DISABLE_PLUGIN_AUTOLOAD is set)" if autoload_off else ""))

    def _add_authentication(self) -> Authenticator | None:
        """The configured server authentication, and its pipeline layer where this process
        runs the pipeline: ``SERVE`` runs the schemes, ``CHILD`` takes the principal its front
        forwarded. A ``FRONT`` runs the schemes itself, outside any pipeline."""
        contributed = [scheme for schemes in self.plugins.hook.hostkit_add_authentication_schemes(
            configuration=self._configuration) for scheme in schemes or ()]
        authenticator = build_authenticator(self._configuration, contributed)
        assert self.role is not None
        if authenticator is not None and self.role.runs_pipeline:
            self.pipeline.use_asgi_middleware(
                AuthenticationMiddleware, Stage.AUTHENTICATION, authenticator=authenticator,
                automatic=self._configuration.options.authentication.automatic_authentication,
                forwarded=self.role is HostRole.CHILD)
        return authenticator

    def _create_server(self, role: HostRole, authenticator: Authenticator | None,
                       gateway: Gateway) -> Server:
        options = self._configuration.options
        name = options.server.lower()
        declared = declared_servers(self.plugins)
        if role is HostRole.SUPERVISE:
            # Checked here, so a server the workers cannot run is one error, not a crash loop.
            if self._worker_role.runs_pipeline:
                check_server_choice(self._configuration, declared, role=self._worker_role)
            return Supervisor(self._configuration, worker_role=self._worker_role,
                              rules=self.content_root_rules, metrics=gateway.metrics,
                              gateway=gateway)
        if role.runs_pipeline:
            check_server_choice(self._configuration, declared, role=role)
        request = ServerRequest(role, options.hosting_model, name, self._configuration,
                                authenticator, declared, gateway)
        server = self.plugins.hook.hostkit_create_server(request=request)
        if server is None:
            raise ServerSelectionError(
                f"no plugin serves hosting model {options.hosting_model.value!r} with server "
                f"{name!r} in the {role.value} role; {self._loaded_plugins()}"
                f"; declared servers: {', '.join(declared) or 'none'}")
        if not isinstance(server, Server):
            raise TypeError(f"hostkit_create_server returned {server!r}, which is not a Server")
        return server
