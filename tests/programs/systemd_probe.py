"""A program whose app answers every request with its process's pid and systemd's variables
as that process sees them: a socket-activated or notifying host's workers and children must
see none of them (``tests/test_systemd.py``)."""

from __future__ import annotations

import json
import os
import sys

import hostkit
from hostkit.systemd import VARIABLES


async def app(context: hostkit.HttpContext) -> None:
    context.response.headers["content-type"] = "application/json"
    await context.response.write(json.dumps({
        "pid": os.getpid(), "systemd": {name: os.environ.get(name) for name in VARIABLES}}))


if __name__ == "__main__":
    hostkit.Host.create_default_builder(sys.argv[1:]).use_app(app).build().run()
