"""The probe program of the conformance kit (``hostkit.testing.probe``), at the path the
integration tests start it from (and out-of-process children run it again from)."""

from __future__ import annotations

import sys

from hostkit.testing.probe import create_host_builder

if __name__ == "__main__":
    create_host_builder(sys.argv[1:]).build().run()
