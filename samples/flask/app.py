"""The Flask sample: an unchanged Flask app (WSGI) hosted by hostkit, in either hosting model.

hostkit serves a WSGI app in a thread pool (``[server] wsgi_threads``), on asyncio or trio;
docs/wsgi.md says what its environ holds. Run it from this folder (its hostkit.toml chooses
the hosting model)::

    python app.py
    hostkit run app:app        # the same app, with a default builder
"""

from __future__ import annotations

import sys

from flask import Flask, jsonify, request

import hostkit

app = Flask(__name__)


@app.get("/")
def index() -> str:
    return "Hello from Flask on hostkit\n"


@app.post("/echo")
def echo() -> dict[str, str]:
    return dict(request.form)


@app.get("/whoami")
def whoami():  # type: ignore[no-untyped-def]
    return jsonify({"remote_addr": request.remote_addr, "scheme": request.scheme,
                    "script_root": request.script_root,
                    "remote_user": request.environ.get("REMOTE_USER"),
                    "wsgi_multithread": request.environ["wsgi.multithread"]})


def create_host_builder(args: list[str]) -> hostkit.HostBuilder:
    return hostkit.Host.create_default_builder(args).use_app(app)


if __name__ == "__main__":
    create_host_builder(sys.argv[1:]).build().run()
