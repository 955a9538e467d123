"""A child that is not hostkit and misbehaves: after each response it sends a second one that
no request asked for, a moment later (so it arrives after the module took the first).

The module must never hand that second response to another request.
"""

from __future__ import annotations

import os
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

UNSOLICITED = b"HTTP/1.1 200 OK\r\nContent-Length: 11\r\n\r\nunsolicited"


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def do_GET(self) -> None:  # noqa: N802 - the stdlib's name
        self.send_response(200)
        self.send_header("Content-Length", "5")
        self.end_headers()
        self.wfile.write(b"asked")
        self.wfile.flush()
        time.sleep(0.05)
        self.wfile.write(UNSOLICITED)

    def log_message(self, format: str, *args: object) -> None:
        pass


if __name__ == "__main__":
    ThreadingHTTPServer(("127.0.0.1", int(os.environ["HOSTKIT_PORT"])), Handler).serve_forever()
