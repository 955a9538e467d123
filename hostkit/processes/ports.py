"""A free TCP port on 127.0.0.1 for a process hostkit starts to listen on."""

from __future__ import annotations

import random
import socket
from pathlib import Path

# Ports are picked at random from here up to the start of the ephemeral range.
_FIRST_PORT = 10000
_ATTEMPTS = 50
# Linux's default, for a system that does not say.
_DEFAULT_EPHEMERAL = (32768, 60999)


def ephemeral_ports() -> range:
    """The range outgoing connections take their local ports from (Linux; a default else)."""
    try:
        low, high = map(int, Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split())
    except (OSError, ValueError):
        low, high = _DEFAULT_EPHEMERAL
    return range(low, high + 1)


def free_loopback_port() -> int:
    """A TCP port on 127.0.0.1 that is free now, outside the ephemeral range.

    A port the kernel hands out for ``bind(0)`` comes from the range every outgoing
    connection takes its local port from: while the process that is to listen on it starts,
    any outgoing connection (a client's, or its owner's own) can take it, and the process then
    fails to listen. So, like ANCM, pick random ports below that range (checking each is free
    now), and fall back to the kernel's choice only when none is.
    """
    candidates = range(_FIRST_PORT, ephemeral_ports().start)
    for _ in range(_ATTEMPTS if len(candidates) > 0 else 0):
        port = random.choice(candidates)
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            try:
                sock.bind(("127.0.0.1", port))
            except OSError:
                continue
            return port
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])
