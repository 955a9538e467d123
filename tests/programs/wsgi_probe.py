"""Plain WSGI apps (no framework) hosted by hostkit, for tests/test_wsgi.py, in both models.

The well-behaved paths run inside the stdlib's ``wsgiref.validate.validator``, with its
warnings turned into errors: a violation of PEP 3333 by hostkit (or by the app) raises
AssertionError or WSGIWarning in the app, which the request stage logs and answers 500.

- ``/environ``: the environ's str, int and bool values as JSON;
- ``/echo``: reads ``wsgi.input`` (in 1000-byte reads and lines) and answers its size and
  SHA-256;
- ``/stream?chunks=N&pause=S``: N chunks, S seconds apart, no Content-Length;
- ``/forever``: 1 KiB chunks 10 ms apart until the client goes away;
- ``/file``: :data:`FILE_SIZE` bytes through ``wsgi.file_wrapper``;
- ``/write``: the legacy ``write()`` callable, then a returned chunk;
- ``/closed``: how many response iterables were closed, and how many ``/forever`` ones;
- ``/errors``: writes a line to ``wsgi.errors``;
- the bad apps: ``/raise`` (raises before start_response), ``/twice`` (start_response twice
  without exc_info), ``/noniter`` (returns 42), ``/text`` (yields str), ``/nostart``
  (returns a body without calling start_response).
"""

from __future__ import annotations

import hashlib
import json
import sys
import threading
import time
import warnings
from collections.abc import Iterator
from typing import Any
from urllib.parse import parse_qs
from wsgiref.validate import WSGIWarning, validator

import hostkit

warnings.simplefilter("error", WSGIWarning)

FILE_SIZE = 300_000
FILE_BYTE = b"f"

_lock = threading.Lock()
closed = {"all": 0, "forever": 0}


class Body:
    """A response iterable that counts its ``close()``."""

    def __init__(self, chunks: Iterator[bytes], name: str = "all"):
        self.chunks = chunks
        self.name = name

    def __iter__(self) -> Iterator[bytes]:
        return self.chunks

    def close(self) -> None:
        with _lock:
            closed["all"] += 1
            if self.name != "all":
                closed[self.name] += 1


def _answer(start_response: Any, body: bytes, content_type: str = "application/json"
            ) -> list[bytes]:
    start_response("200 OK", [("Content-Type", content_type),
                              ("Content-Length", str(len(body)))])
    return [body]


def environ_app(environ: dict[str, Any], start_response: Any) -> Any:
    facts = {key: value for key, value in environ.items()
             if isinstance(value, (str, int, bool)) and not key.startswith("wsgi.input")}
    facts["wsgi.version"] = list(environ["wsgi.version"])
    facts["has_file_wrapper"] = callable(environ.get("wsgi.file_wrapper"))
    user = environ.get("hostkit.user")
    facts["hostkit.user"] = user.identity.name if user is not None else None
    return _answer(start_response, json.dumps(facts).encode())


def echo_app(environ: dict[str, Any], start_response: Any) -> Any:
    stream = environ["wsgi.input"]
    digest, size = hashlib.sha256(), 0
    first = stream.readline()
    digest.update(first)
    size += len(first)
    while True:
        chunk = stream.read(1000)
        if not chunk:
            break
        digest.update(chunk)
        size += len(chunk)
    return _answer(start_response, json.dumps({"size": size,
                                               "sha256": digest.hexdigest()}).encode())


def stream_app(environ: dict[str, Any], start_response: Any) -> Any:
    query = parse_qs(environ["QUERY_STRING"])
    count = int(query.get("chunks", ["5"])[0])
    pause = float(query.get("pause", ["0.05"])[0])

    def chunks() -> Iterator[bytes]:
        for index in range(count):
            yield b"chunk %d;" % index
            time.sleep(pause)

    start_response("200 OK", [("Content-Type", "text/plain")])
    return Body(chunks())


def forever_app(environ: dict[str, Any], start_response: Any) -> Any:
    def chunks() -> Iterator[bytes]:
        while True:
            yield b"x" * 1024
            time.sleep(0.01)

    start_response("200 OK", [("Content-Type", "application/octet-stream")])
    return Body(chunks(), "forever")


def file_app(environ: dict[str, Any], start_response: Any) -> Any:
    import io
    start_response("200 OK", [("Content-Type", "application/octet-stream"),
                              ("Content-Length", str(FILE_SIZE))])
    return environ["wsgi.file_wrapper"](io.BytesIO(FILE_BYTE * FILE_SIZE), 8192)


def write_app(environ: dict[str, Any], start_response: Any) -> Any:
    write = start_response("200 OK", [("Content-Type", "text/plain")])
    write(b"written;")
    return Body(iter([b"returned;"]))


def closed_app(environ: dict[str, Any], start_response: Any) -> Any:
    with _lock:
        return _answer(start_response, json.dumps(closed).encode())


def errors_app(environ: dict[str, Any], start_response: Any) -> Any:
    environ["wsgi.errors"].write("a line for wsgi.errors\n")
    return _answer(start_response, b"{}")


GOOD = {"/environ": environ_app, "/echo": echo_app, "/stream": stream_app,
        "/forever": forever_app, "/file": file_app, "/write": write_app,
        "/closed": closed_app, "/errors": errors_app}


def raise_app(environ: dict[str, Any], start_response: Any) -> Any:
    raise RuntimeError("raised before start_response")


def twice_app(environ: dict[str, Any], start_response: Any) -> Any:
    start_response("200 OK", [("Content-Type", "text/plain")])
    start_response("201 Created", [("Content-Type", "text/plain")])
    return [b"never sent"]


def noniter_app(environ: dict[str, Any], start_response: Any) -> Any:
    start_response("200 OK", [("Content-Type", "text/plain")])
    return 42


def text_app(environ: dict[str, Any], start_response: Any) -> Any:
    start_response("200 OK", [("Content-Type", "text/plain")])
    return ["a str, not bytes"]


def nostart_app(environ: dict[str, Any], start_response: Any) -> Any:
    return [b"no start_response"]


BAD = {"/raise": raise_app, "/twice": twice_app, "/noniter": noniter_app,
       "/text": text_app, "/nostart": nostart_app}
VALIDATED = {path: validator(app) for path, app in GOOD.items()}


def app(environ: dict[str, Any], start_response: Any) -> Any:
    """Route by PATH_INFO: the good apps inside the validator, the bad ones bare."""
    path = environ["PATH_INFO"]
    handler = VALIDATED.get(path) or BAD.get(path)
    if handler is None:
        return validator(environ_app)(environ, start_response)  # any other path: the environ
    return handler(environ, start_response)


if __name__ == "__main__":
    hostkit.Host.create_default_builder(sys.argv[1:]).use_app(app).build().run()
