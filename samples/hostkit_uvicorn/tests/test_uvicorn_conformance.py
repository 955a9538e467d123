"""hostkit-uvicorn passes hostkit's server conformance kit.

The same suite runs without this file: ``pytest --pyargs hostkit.testing.suite
--hostkit-server=uvicorn``. As a subclass it runs with the plugin's own tests.
"""

from __future__ import annotations

from hostkit.testing.conformance import ServerConformance


class TestUvicornConformance(ServerConformance):
    server = "uvicorn"
