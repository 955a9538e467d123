"""hostkit's built-in OutOfProcess hosting: the module (front) and the child integration.

Its hooks, in the order ``HostBuilder.build()`` calls them:

- ``hostkit_add_settings_tables``: the ``[module]`` and ``[integration]`` tables;
- ``hostkit_host_role``: ``CHILD`` when the module's whole contract is in the environment
  (``HOSTKIT_PORT``, ``HOSTKIT_TOKEN``, ``HOSTKIT_PATH_BASE``), else ``FRONT`` with
  ``hosting_model = "OutOfProcess"``; nothing for InProcess;
- ``hostkit_configure_builder``: a ``CHILD`` listens on ``127.0.0.1:$HOSTKIT_PORT`` only, with
  the integration middleware outermost in its pipeline;
- ``hostkit_create_server``: a ``FRONT`` is served by the :class:`ModuleServer`, once the
  server its children will run has been checked against its declaration; it does the
  gateway's duties (``ServerRequest.gateway``) for every request, as the owner of the public
  listener (a ``CHILD`` has no gateway: its front did them, and the child's access log and
  health paths are its front's).

Registered through the ``hostkit`` entry-point group like any third-party plugin, and imports
only ``hostkit`` and ``hostkit.plugin``.

The package, by role: ``front/`` (the module's public side), ``children/`` (the module's child
processes), ``child/`` (what runs inside a child), and at the top ``forwarded_identity`` (the
front encodes, a child decodes) and ``options`` (the settings tables).
"""

from __future__ import annotations

import logging
import os

import hostkit
from hostkit import HostingModel, Stage
from hostkit.plugin import (
    TOKEN_VARIABLE,
    ChildContract,
    HostRole,
    Server,
    ServerRequest,
    SettingsTable,
    check_server_choice,
    hookimpl,
)

from hostkit_outofprocess.child.integration import IntegrationMiddleware
from hostkit_outofprocess.children import child_configuration
from hostkit_outofprocess.front.server import ModuleServer
from hostkit_outofprocess.options import (
    INTEGRATION_TABLE,
    MODULE_TABLE,
    ModuleOptions,
    content_root_rules,
    integration_options,
    module_options,
)

__version__ = hostkit.__version__
logger = logging.getLogger("hostkit.module")


def _contract() -> ChildContract | None:
    try:
        return ChildContract.from_environ(os.environ)
    except ValueError as error:
        raise hostkit.ConfigurationError(f"environment: {error}") from None


@hookimpl
def hostkit_add_settings_tables() -> list[SettingsTable]:
    return [INTEGRATION_TABLE, MODULE_TABLE]


@hookimpl
def hostkit_host_role(configuration: hostkit.Configuration) -> HostRole | None:
    """``CHILD`` with the module's contract in the environment, ``FRONT`` for OutOfProcess."""
    if _contract() is not None:
        return HostRole.CHILD
    if configuration.options.hosting_model is HostingModel.OUT_OF_PROCESS:
        return HostRole.FRONT
    return None


# The [module] keys about the app's processes, which InProcess applies only under a supervisor.
_SUPERVISED_KEYS = ("app_offline_file", "restart_on_config_change", "processes_per_application")


def _warn_unsupervised(configuration: hostkit.Configuration, options: ModuleOptions) -> None:
    """An InProcess host without a supervisor has nobody to stop, replace or multiply its
    process: say so for each such key that was set, and for an offline file that exists."""
    for key in _SUPERVISED_KEYS:
        source = configuration.source_of(f"module.{key}")
        if source is not None:
            instead = (" (InProcess runs [workers] processes instead)"
                       if key == "processes_per_application" else "")
            logger.warning("%s sets module.%s, which an InProcess host applies only under the "
                           "supervisor: set [workers] supervise = true%s", source, key, instead)
    offline = configuration.content_root / options.app_offline_file
    if offline.exists():
        logger.warning("%s exists but an InProcess host takes itself offline only under the "
                       "supervisor ([workers] supervise = true): serving the app", offline)


@hookimpl
def hostkit_configure_builder(builder: hostkit.HostBuilder) -> None:
    """``[module]``'s error pages and content-root rules in every role (the supervisor
    applies the rules to InProcess workers; a plain InProcess host warns that it cannot);
    a ``CHILD``'s address and integration."""
    module = module_options(builder.configuration)
    builder.bare_error_pages = module.disable_startup_error_page
    builder.content_root_rules = content_root_rules(module)
    if builder.role is HostRole.SERVE and not builder.configuration.options.workers.supervised:
        _warn_unsupervised(builder.configuration, module)
    if builder.role is not HostRole.CHILD:
        return
    contract = _contract()
    assert contract is not None  # the role says it is there
    # The app must not see the token: the integration layer has it, nothing else needs it.
    os.environ.pop(TOKEN_VARIABLE, None)
    builder.set_configuration({"urls": [f"http://127.0.0.1:{contract.port}"]},
                              f"the module (HOSTKIT_PORT={contract.port})")
    builder.pipeline.use_asgi_middleware(
        IntegrationMiddleware, Stage.INTEGRATION, contract=contract,
        forward_client_certificate=(
            integration_options(builder.configuration).forward_client_certificate))


@hookimpl
def hostkit_create_server(request: ServerRequest) -> Server | None:
    """The module serves a ``FRONT``, whatever server its children run; that server is
    checked first against the configuration the children will load."""
    if request.role is not HostRole.FRONT:
        return None
    children = child_configuration(request.configuration, module_options(request.configuration))
    if children is not None:
        check_server_choice(children, request.declared, role=HostRole.CHILD)
    return ModuleServer(request.configuration, request.authenticator, request.gateway)
