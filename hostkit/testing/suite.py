"""The conformance suite, ready to run against any installed server plugin::

    pytest --pyargs hostkit.testing.suite --hostkit-server=NAME

The tests are :class:`hostkit.testing.conformance.ServerConformance`'s; the server is the
one ``--hostkit-server`` names (default ``hypercorn``).
"""

from __future__ import annotations

from hostkit.testing.conformance import ServerConformance


class TestServerConformance(ServerConformance):
    """The suite for the server named by ``--hostkit-server``."""
