"""Every hook a hostkit plugin can implement (SPEC §7).

A plugin is a module or object with functions named like these hooks and marked with
``@hostkit.hookimpl``. It is registered from the ``hostkit`` entry-point group, from the
``plugins`` setting, or with ``HostBuilder.add_plugin``. Each host has its own plugin manager,
so plugins never leak from one host into another.

Hooks are synchronous; per-request async work belongs in pipeline layers a plugin adds
through :func:`hostkit_configure_pipeline`, not in hooks.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import pluggy

if TYPE_CHECKING:
    from hostkit.authentication import AuthenticationScheme
    from hostkit.builder import HostBuilder
    from hostkit.configuration import Configuration
    from hostkit.context import HttpContext
    from hostkit.host import Host
    from hostkit.identity import ClaimsPrincipal
    from hostkit.pipeline import Pipeline
    from hostkit.configuration.tables import SettingsTable
    from hostkit.server_contract import HostRole, Server, ServerInfo, ServerRequest

PROJECT_NAME = "hostkit"

hookspec = pluggy.HookspecMarker(PROJECT_NAME)
hookimpl = pluggy.HookimplMarker(PROJECT_NAME)


@hookspec
def hostkit_add_settings_tables() -> list[SettingsTable] | None:
    """Contribute tables of settings that belong to this plugin.

    Called once per host, when the host is built, before any other hook of this module.

    :returns: a list of :class:`hostkit.configuration.tables.SettingsTable` (``None``: none). Each
        table's keys are then validated like hostkit's own (unknown keys and bad values raise
        ``ConfigurationError`` naming the source). Read them with
        ``configuration.bind(table)``.
    """


@hookspec(firstresult=True)
def hostkit_host_role(configuration: Configuration) -> HostRole | None:
    """Say which role this process plays for the app.

    Called once by ``HostBuilder.build()``, after the settings tables are bound and before
    :func:`hostkit_configure_builder` (which can read the result as ``builder.role``). Stops
    at the first non-``None`` result.

    :param configuration: the effective configuration.
    :returns: a :class:`hostkit.server_contract.HostRole`: ``FRONT`` for a process that
        owns the public ``urls`` while the app runs elsewhere, ``CHILD`` for a process that
        runs the pipeline behind a front; ``None`` to let another plugin answer. When no
        plugin answers, the role is ``SERVE`` with ``hosting_model = "InProcess"``, and
        building fails for another model (no plugin hosts it). A process that supervises
        workers (``[workers]``) is ``SUPERVISE`` whatever the hook says: the core chooses
        that itself, and the answer is the role of its workers.
    """


@hookspec
def hostkit_configure_builder(builder: HostBuilder) -> None:
    """Adjust the builder before the host is built.

    Called once by ``HostBuilder.build()``, after settings tables are validated and before
    the server is chosen. A plugin may change configuration values with
    ``builder.set_configuration(...)`` or add pipeline layers; this is how the out-of-process
    integration sets a ``CHILD`` up (``builder.role``): its loopback address and the
    integration layer.

    :param builder: the builder being built.
    """


@hookspec
def hostkit_configure_pipeline(pipeline: Pipeline, configuration: Configuration) -> None:
    """Add layers to the shared request pipeline.

    Called once by ``HostBuilder.build()`` after :func:`hostkit_configure_builder`. Add
    layers with ``pipeline.use(middleware, stage=...)`` or
    ``pipeline.use_asgi_middleware(factory, stage=...)``; the stage (``Stage.INTEGRATION``,
    ``Stage.AUTHENTICATION``, ``Stage.APP``) fixes where a layer runs, whatever the order in
    which plugins are called.

    :param pipeline: the pipeline being built.
    :param configuration: the effective configuration.
    """


@hookspec
def hostkit_declare_servers() -> list[ServerInfo] | None:
    """Declare the servers this plugin provides and what each of them supports.

    Called once by ``HostBuilder.build()`` before :func:`hostkit_create_server`, and by
    ``hostkit plugins`` and the conformance kit (``hostkit.testing``). When the ``server``
    setting names a declared server, ``build()`` checks the configuration against the
    declaration first: a hosting model, async backend or kind of ``urls`` address it does not
    list is a ``ServerSelectionError`` naming the server, the setting, where it was set and
    what the server supports, so :func:`hostkit_create_server` is only asked for what the
    server declared.

    :returns: a list of :class:`hostkit.ServerInfo` (``None``: this plugin provides no
        server). When two plugins declare the same name, the one asked first wins.
    """


@hookspec
def hostkit_add_authentication_schemes(
        configuration: Configuration) -> list[AuthenticationScheme] | None:
    """Contribute server-level authentication schemes.

    Called once by ``HostBuilder.build()``, after :func:`hostkit_configure_pipeline`. A
    scheme runs only when its name is listed in ``[authentication] schemes``; it runs in
    the process that owns the public listener (InProcess: the server; OutOfProcess: the
    module, which forwards the principal to the child).

    :param configuration: the effective configuration (read your own settings table here).
    :returns: a list of objects following :class:`hostkit.authentication.AuthenticationScheme`
        (``None``: none). A name already taken (``basic``, ``certificate`` or another
        plugin's) is a ``ConfigurationError``.
    """


@hookspec(firstresult=True)
def hostkit_create_server(request: ServerRequest) -> Server | None:
    """Create the server that serves this host.

    Called once by ``HostBuilder.build()``, after :func:`hostkit_host_role` and the
    pipeline. Stops at the first non-``None`` result; when no plugin answers, building fails
    with an error naming the model, the role, the server name and the loaded plugins.

    :param request: a :class:`hostkit.server_contract.ServerRequest`: the host's ``role``,
        the ``hosting_model``, the ``server_name`` (lower-cased), the ``configuration``, the
        ``authenticator`` (``None`` without ``[authentication] schemes``) and the
        ``declared`` servers. An embedded server answers for its own name in the roles that
        run the pipeline (``SERVE``, ``CHILD``) and returns ``None`` for ``FRONT``; a front
        (the module) answers for ``FRONT`` and must run the authenticator on every request.
    :returns: a :class:`hostkit.server_contract.Server`, or ``None`` to let another plugin
        answer. A server declared with :func:`hostkit_declare_servers` is only asked for what
        it declared; an undeclared one that must refuse a combination (e.g. an async backend)
        raises ``hostkit.ServerSelectionError`` saying what is supported instead of returning
        None.
    """


@hookspec
def hostkit_transform_claims(principal: ClaimsPrincipal,
                             context: HttpContext) -> ClaimsPrincipal | None:
    """Transform the request's principal after authentication, once per request.

    Called for every HTTP request in the process that runs the pipeline (InProcess: the
    server; OutOfProcess: the child), before the functions given to
    ``HostBuilder.add_claims_transformation``. Implementations are called in pluggy's order
    (last registered first, ``tryfirst``/``trylast`` respected), each receiving the principal
    the previous one returned.

    :param principal: the current principal (anonymous when nobody authenticated).
    :param context: the request.
    :returns: the principal to use from now on, or ``None`` to keep ``principal``.
    """


@hookspec
def hostkit_host_started(host: Host) -> None:
    """The host listens on every address and serves requests.

    Called once, after the server reported it is ready and the app's lifespan started.
    """


@hookspec
def hostkit_host_stopping(host: Host) -> None:
    """The host was asked to stop (signal or ``Host.stop()``) and starts draining.

    Called once, before the server stops accepting connections.
    """


@hookspec
def hostkit_host_stopped(host: Host) -> None:
    """The host has drained, the app's lifespan has shut down, and ``run`` is returning."""
