"""``STDERR_READER_PROGRAM=PROGRAM stderr_reader.py [ARGUMENTS...]``: run the Python program
``PROGRAM`` with ``ARGUMENTS``, its stdout and stderr a pipe read by another process, as a
terminal or journald would read them.

Until the program logs ``Application started.`` the pipe's bytes are copied to this program's
stdout, so whoever started it sees the start. After that, ``STDERR_READER_MODE``:

- ``unread`` (the default): the pipe is never read again (a terminal that stopped);
- ``count``: the pipe is read as fast as it fills; relayed child lines (``child: [PID] ...``)
  are counted, not copied, except the relay's ``... N lines dropped`` lines; every other line
  is copied, and after each burst of child lines (0.1 s without one) comes a line
  ``stderr reader: N child lines, M dropped`` (counts since the start).

Started in the program's place (by a ``Program`` or a hardening ``Front``: the arguments are
the program's), so the program runs as it would, its own ``sys.argv`` included: it ``exec``\\s
in this process and gets the signals sent to it. The pipe is read (or held open) by a forked
holder that dies with the program (``PR_SET_PDEATHSIG``).
"""

from __future__ import annotations

import ctypes
import os
import select
import signal
import sys

_PR_SET_PDEATHSIG = 1
_STARTED = b"Application started."
_CHILD = b"child: ["
_DROPPED = b" dropped: stderr is not read fast enough"


def copy_until_started(pipe: int) -> bytes:
    """Copy the pipe to stdout up to the start line's chunk; returns the end of that chunk
    after its last newline (the start of a line)."""
    seen = b""
    while chunk := os.read(pipe, 4096):
        seen = seen[-len(_STARTED):] + chunk
        if _STARTED in seen:
            end = chunk.rfind(b"\n") + 1
            os.write(1, chunk[:end])
            return chunk[end:]
        os.write(1, chunk)
    return b""


def count(pipe: int, pending: bytes) -> None:
    """Read the pipe until it closes, counting child lines (``count`` mode)."""
    child = dropped = said = 0
    while True:
        if not select.select([pipe], [], [], 0.1)[0]:
            if child + dropped != said:
                os.write(1, b"stderr reader: %d child lines, %d dropped\n" % (child, dropped))
                said = child + dropped
            continue
        chunk = os.read(pipe, 65536)
        if not chunk:
            return
        *lines, pending = (pending + chunk).split(b"\n")
        for line in lines:
            if line.startswith(_CHILD) and not line.endswith(_DROPPED):
                child += 1
                continue
            if line.startswith(_CHILD):
                dropped += int(line.split()[3])
            os.write(1, line + b"\n")


def hold(pipe: int, parent: int, mode: str) -> None:
    """The holder: copy the pipe until the start line, then count it or keep it unread."""
    ctypes.CDLL(None, use_errno=True).prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
    if os.getppid() != parent:
        os._exit(0)
    pending = copy_until_started(pipe)
    if mode == "count":
        count(pipe, pending)
        os._exit(0)
    while True:
        signal.pause()


def main(program: str, arguments: list[str], mode: str) -> None:
    read_end, write_end = os.pipe()
    parent = os.getpid()
    if os.fork() == 0:
        os.close(write_end)
        hold(read_end, parent, mode)
    os.close(read_end)
    os.dup2(write_end, 1)
    os.dup2(write_end, 2)
    os.close(write_end)
    os.execv(sys.executable, [sys.executable, program, *arguments])


if __name__ == "__main__":
    main(os.environ["STDERR_READER_PROGRAM"], sys.argv[1:],
         os.environ.get("STDERR_READER_MODE", "unread"))
