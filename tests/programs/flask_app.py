"""A Flask app hosted by hostkit through WSGI, for tests/test_wsgi_frameworks.py.

- ``/form`` (POST): the form fields back as JSON;
- ``/upload`` (POST multipart): each file's name, size and SHA-256;
- ``/stream``: :data:`CHUNKS` chunks, :data:`PAUSE` seconds apart (``stream_with_context``);
- ``/boom``: the view raises; Flask answers 500 and logs "Exception on /boom [GET]";
- ``/whoami``: what the environ says of the client, the scheme, the path base and the user.
"""

from __future__ import annotations

import hashlib
import sys
import time
from collections.abc import Iterator

from flask import Flask, Response, jsonify, request, stream_with_context

import hostkit

CHUNKS = 5
PAUSE = 0.05

app = Flask(__name__)


@app.post("/form")
def form() -> Response:
    return jsonify(dict(request.form))


@app.post("/upload")
def upload() -> Response:
    return jsonify({name: {"filename": stored.filename,
                           "size": len(data := stored.read()),
                           "sha256": hashlib.sha256(data).hexdigest()}
                    for name, stored in request.files.items()})


@app.get("/stream")
def stream() -> Response:
    def chunks() -> Iterator[str]:
        for index in range(CHUNKS):
            yield f"chunk {index} of {request.path};"
            time.sleep(PAUSE)

    return Response(stream_with_context(chunks()), mimetype="text/plain")


@app.get("/boom")
def boom() -> Response:
    raise RuntimeError("boom in a Flask view")


@app.get("/whoami")
def whoami() -> Response:
    environ = request.environ
    return jsonify({"remote_addr": request.remote_addr, "scheme": request.scheme,
                    "script_root": request.script_root, "path": request.path,
                    "url": request.url, "remote_user": environ.get("REMOTE_USER"),
                    "auth_type": environ.get("AUTH_TYPE"),
                    "protocol": environ["SERVER_PROTOCOL"]})


if __name__ == "__main__":
    hostkit.Host.create_default_builder(sys.argv[1:]).use_app(app).build().run()
