"""Processes and ports on this machine, for tests, the hardening suites and the benchmarks.

The process functions read Linux ``/proc``: what a test checks after a kill or a stop (alive,
a zombie, gone), and what a benchmark counts (CPU time, children, leftovers).
"""

from __future__ import annotations

import ctypes
import os
import socket
from pathlib import Path

LOOPBACK = "127.0.0.1"
_PR_SET_CHILD_SUBREAPER = 36


def free_port() -> int:
    """A TCP port on 127.0.0.1 that is free right now (the kernel picks it)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((LOOPBACK, 0))
        return int(sock.getsockname()[1])


def process_state(pid: int) -> str | None:
    """The state letter of a process (``Z`` for a zombie), or ``None`` when it is gone."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return None


def process_alive(pid: int) -> bool:
    """Whether a process exists and has not exited (a zombie has)."""
    return process_state(pid) not in (None, "Z")


def process_cmdline(pid: int) -> list[str] | None:
    """The command line of a live (not zombie) process, or ``None`` when there is none."""
    if not process_alive(pid):
        return None
    try:
        raw = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return None
    return [part.decode("utf-8", "replace") for part in raw.split(b"\0") if part]


def processes_matching(*needles: str) -> dict[int, list[str]]:
    """Live processes (other than this one) whose command line contains every ``needle``."""
    found = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        argv = process_cmdline(int(entry.name))
        if argv is None:
            continue
        text = " ".join(argv)
        if all(needle in text for needle in needles):
            found[int(entry.name)] = argv
    return found


def cpu_seconds(pid: int) -> float:
    """User + system CPU time the process has used so far; 0.0 once it is gone."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def child_pids(parent: int) -> list[int]:
    """The pids of ``parent``'s live children."""
    children = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
        except (OSError, IndexError):
            continue
        if fields[0] != "Z" and int(fields[1]) == parent:
            children.append(int(entry.name))
    return children


class Subreaper:
    """While active, orphaned descendants of this process are re-parented to it (Linux), so a
    test can tell a zombie nobody reaps from a process that is gone."""

    def __enter__(self) -> Subreaper:
        self._libc = ctypes.CDLL(None, use_errno=True)
        self._libc.prctl(_PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0)
        return self

    def __exit__(self, *exc_info: object) -> None:
        self._libc.prctl(_PR_SET_CHILD_SUBREAPER, 0, 0, 0, 0)
