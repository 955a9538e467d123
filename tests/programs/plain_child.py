"""A child that is not hostkit: the standard library's HTTP server on $HOSTKIT_PORT.

It answers every GET with what it was given: the token check, forwarded headers, environment.
"""

from __future__ import annotations

import hmac
import json
import os
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def do_GET(self) -> None:  # noqa: N802 - the stdlib's name
        tokens = self.headers.get_all("Hostkit-Token") or []
        expected = os.environ["HOSTKIT_TOKEN"]
        body = json.dumps({
            "server": "plain",
            "pid": os.getpid(),
            "token_ok": len(tokens) == 1 and hmac.compare_digest(tokens[0], expected),
            "forwarded_for": self.headers.get("X-Forwarded-For"),
            "forwarded_proto": self.headers.get("X-Forwarded-Proto"),
            "path_base": os.environ["HOSTKIT_PATH_BASE"],
        }).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: object) -> None:
        pass


if __name__ == "__main__":
    ThreadingHTTPServer(("127.0.0.1", int(os.environ["HOSTKIT_PORT"])), Handler).serve_forever()
