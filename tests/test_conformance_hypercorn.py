"""The built-in hypercorn plugin passes the server conformance kit (``hostkit.testing``)."""

from __future__ import annotations

from hostkit.testing.conformance import ServerConformance


class TestHypercorn(ServerConformance):
    server = "hypercorn"
