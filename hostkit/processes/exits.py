"""How a process's exit status reads in a log line or an error page."""

from __future__ import annotations

import signal


def describe_exit(returncode: int | None) -> str:
    """``"exited with code 3"``, or ``"killed by SIGSEGV"`` for a negative ``returncode``
    (``subprocess``'s way of saying a signal ended the process); SIGKILL adds a hint, since
    the kernel's out-of-memory killer sends it. ``None`` (not reaped yet) reads as code None.
    """
    if returncode is not None and returncode < 0:
        number = -returncode
        try:
            name = signal.Signals(number).name
        except ValueError:  # a real-time signal, or one this platform does not name
            name = str(number)
        hint = " (perhaps out of memory?)" if number == signal.SIGKILL else ""
        return f"killed by {name}{hint}"
    return f"exited with code {returncode}"
