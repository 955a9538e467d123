"""``[health] app_path`` for the front's children: :class:`HealthCheck` and :func:`probe_child`.

A child is probed over its own port, with its token, so the probe goes through the child's
integration layer and whole pipeline as a forwarded request does: before a new child takes
requests (it must answer 2xx), and every ``app_interval`` seconds while it runs
(``app_failures`` failures in a row replace it). A child that accepts connections but never
answers fails every probe.
"""

from __future__ import annotations

import dataclasses
import urllib.parse

import anyio

import hostkit
from hostkit.plugin import TOKEN_HEADER

#: What a probe's request says it is (``User-Agent``), as the core's own probe of a worker.
PROBE_AGENT = "hostkit-health"
# Enough of an answer to read its status line; the rest is read and dropped.
_HEAD_LIMIT = 8192
_BODY_LIMIT = 65536
# Characters of app_path sent as they are; anything else is percent-encoded.
_PATH_SAFE = "/?&=%:@!$'()*+,;~-._"


@dataclasses.dataclass(frozen=True)
class HealthCheck:
    """The ``[health]`` keys a child is probed with."""

    app_path: str
    app_interval: float
    app_failures: int

    @classmethod
    def from_configuration(cls, configuration: hostkit.Configuration) -> HealthCheck | None:
        """The ``[health]`` table of ``configuration``; ``None`` without ``app_path``."""
        health = configuration.options.health
        if not health.app_path:
            return None
        return cls(health.app_path, health.app_interval, health.app_failures)


async def probe_child(port: int, token: str, path: str, timeout: float) -> str | None:
    """``GET path`` on the child at ``127.0.0.1:port`` with its ``token``.

    Returns ``None`` for a 2xx answer within ``timeout`` seconds, else why not (for a log
    line): refused, closed, no answer in time, not HTTP, or another status.
    """
    target = urllib.parse.quote(path, safe=_PATH_SAFE)
    request = (f"GET {target} HTTP/1.1\r\nHost: localhost\r\nUser-Agent: {PROBE_AGENT}\r\n"
               f"{TOKEN_HEADER.decode()}: {token}\r\nConnection: close\r\n\r\n").encode("ascii")
    received = b""
    with anyio.move_on_after(timeout) as deadline:
        try:
            async with await anyio.connect_tcp("127.0.0.1", port) as stream:
                await stream.send(request)
                while len(received) < _HEAD_LIMIT + _BODY_LIMIT:
                    received += await stream.receive()
        except (anyio.EndOfStream, anyio.BrokenResourceError):
            pass  # the answer ends with the connection
        except OSError as error:
            return f"GET {path} could not connect: {error.strerror or error}"
    status_line, found, _ = received[:_HEAD_LIMIT].partition(b"\r\n")
    if not found:
        if deadline.cancelled_caught:
            return f"GET {path} got no answer within {timeout:g} s"
        return f"GET {path}: the connection closed without an answer"
    parts = status_line.split(b" ", 2)
    if len(parts) < 2 or not parts[0].startswith(b"HTTP/1.") or not parts[1].isdigit():
        return f"GET {path} got an answer that is not HTTP/1.x"
    status = int(parts[1])
    if not 200 <= status < 300:
        return f"GET {path} answered {status}"
    return None
