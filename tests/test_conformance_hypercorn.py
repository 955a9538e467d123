"""The built-in hypercorn plugin passes the server conformance kit (``hostkit.testing``)."""

from __future__ import annotations

import pytest

from hostkit.testing.conformance import ServerConformance

pytestmark = [pytest.mark.anyio, pytest.mark.integration]


class TestHypercorn(ServerConformance):
    server = "hypercorn"
