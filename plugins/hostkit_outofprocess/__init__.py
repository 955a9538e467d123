"""hostkit's built-in OutOfProcess hosting: the module (front) and the child integration.

- In the front (``hosting_model = "OutOfProcess"``, no child contract in the environment) it
  answers ``hostkit_create_server`` with the :class:`ModuleServer`.
- In a child (all of ``HOSTKIT_PORT``, ``HOSTKIT_TOKEN``, ``HOSTKIT_PATH_BASE`` present) it
  switches the builder into the child role: listen on ``127.0.0.1:$HOSTKIT_PORT`` only, and
  put the integration middleware outermost in the pipeline.

Registered through the ``hostkit`` entry-point group like any third-party plugin, and uses only
public hostkit names.
"""

from __future__ import annotations

import os

import hostkit
from hostkit import HostingModel, Stage
from hostkit.authentication import Authenticator
from hostkit.child_contract import TOKEN_VARIABLE, ChildContract

from hostkit_outofprocess.integration import IntegrationMiddleware
from hostkit_outofprocess.module import ModuleServer

__version__ = hostkit.__version__


@hostkit.hookimpl
def hostkit_configure_builder(builder: hostkit.HostBuilder) -> None:
    """Turn the child role on when the module's whole contract is in the environment."""
    try:
        contract = ChildContract.from_environ(os.environ)
    except ValueError as error:
        raise hostkit.ConfigurationError(f"environment: {error}") from None
    if contract is None:
        return
    # The app must not see the token: the integration layer has it, nothing else needs it.
    os.environ.pop(TOKEN_VARIABLE, None)
    builder.behind_module = True
    builder.set_configuration({"urls": [f"http://127.0.0.1:{contract.port}"]},
                              f"the module (HOSTKIT_PORT={contract.port})")
    builder.pipeline.use_asgi_middleware(
        IntegrationMiddleware, Stage.INTEGRATION, contract=contract,
        forward_client_certificate=(
            builder.configuration.options.integration.forward_client_certificate))


@hostkit.hookimpl
def hostkit_create_server(hosting_model: HostingModel, server_name: str,
                          configuration: hostkit.Configuration, behind_module: bool,
                          authenticator: Authenticator | None) -> hostkit.Server | None:
    """The module serves the public side of OutOfProcess, whatever the child's server."""
    if hosting_model is HostingModel.OUT_OF_PROCESS and not behind_module:
        return ModuleServer(configuration, authenticator)
    return None
