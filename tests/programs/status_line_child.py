"""A child that is not hostkit and writes the status line it is asked for: ``GET /201/`` is
answered ``HTTP/1.1 201 `` (no reason phrase), ``GET /200/All%20good`` ``HTTP/1.1 200 All
good`` (a phrase the app's server chose), each with the body ``ok``.
"""

from __future__ import annotations

import os
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import unquote


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def do_GET(self) -> None:  # noqa: N802 - the stdlib's name
        _, status, reason = self.path.split("/", 2)
        self.wfile.write(b"HTTP/1.1 %s %s\r\nContent-Length: 2\r\n\r\nok"
                         % (status.encode("ascii"), unquote(reason).encode("latin-1")))

    def log_message(self, format: str, *args: object) -> None:
        pass


if __name__ == "__main__":
    ThreadingHTTPServer(("127.0.0.1", int(os.environ["HOSTKIT_PORT"])), Handler).serve_forever()
