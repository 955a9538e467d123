"""The parent-death launcher: every managed process starts through it, so it dies with its owner.

``python -I -S launcher.py OWNER_PID PROGRAM [ARGUMENTS...]`` (:func:`command` builds it):

1. asks the kernel for SIGKILL when its parent dies (``PR_SET_PDEATHSIG``, which ``exec``
   keeps), so even an owner killed with SIGKILL takes the process with it;
2. makes its output pipe 1 MiB when its output is a pipe, so a burst of logging rarely waits
   for the owner to read it (harmless on a file);
3. exits with :data:`OWNER_GONE` if the owner died before step 1 took effect;
4. ``exec``\\ s the program, so all this holds for programs that are not Python at all.

The kernel's "parent" is the *thread* that forked the process, not the whole owner process:
see :class:`hostkit.processes.managed.ManagedProcess` for how that is taken care of.

Run by its path, not with ``-m``: ``-S`` (no ``site``) keeps the launcher to a few
milliseconds, and without ``site`` hostkit itself is not importable (a virtualenv's
site-packages comes from ``site``), so this file uses the standard library only; ``-I`` keeps
its own folder off ``sys.path``.
"""

from __future__ import annotations

import ctypes
import fcntl
import os
import signal
import sys

TYPE_CHECKING = False  # typing itself costs the launcher milliseconds
if TYPE_CHECKING:
    from collections.abc import Sequence

#: The launcher's exit status when its owner was gone before the program could start.
OWNER_GONE = 70
_PR_SET_PDEATHSIG = 1
_PIPE_SIZE = 1 << 20


def command(argv: Sequence[str]) -> list[str]:
    """The command that runs ``argv`` through the launcher, owned by this process."""
    return [sys.executable, "-I", "-S", os.path.abspath(__file__), str(os.getpid()), *argv]


def main(arguments: list[str]) -> None:
    """Steps 1-4 of the module docstring; ``arguments`` are the owner's pid and the program."""
    owner, program = int(arguments[0]), arguments[1:]
    try:
        ctypes.CDLL(None, use_errno=True).prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
    except (OSError, AttributeError):  # not Linux
        pass
    try:
        fcntl.fcntl(1, fcntl.F_SETPIPE_SZ, _PIPE_SIZE)
    except (OSError, AttributeError):  # a file, not a pipe; or not Linux
        pass
    if os.getppid() != owner:
        os._exit(OWNER_GONE)
    os.execvp(program[0], program)


if __name__ == "__main__":
    main(sys.argv[1:])
