"""Why no child can take a request: raised by the child manager, answered by the front.

Each carries the status the front answers with (its page: :mod:`hostkit_outofprocess.front.pages`).
"""

from __future__ import annotations


class ChildUnavailable(Exception):
    """No child can serve right now; the front answers ``status``; ``output`` is the child's
    last output when there is one to show."""

    status = 502

    def __init__(self, message: str, output: str = ""):
        super().__init__(message)
        self.output = output


class ChildStartupFailure(ChildUnavailable):
    """The child exited while starting, or did not listen within ``startup_time_limit``
    (the "502.5 Out-Of-Process Startup Failure" page)."""

    status = 502


class RapidFailLimit(ChildUnavailable):
    """Too many failures in the rolling minute: no start until ``retry_after`` seconds pass."""

    status = 503

    def __init__(self, message: str, retry_after: int):
        super().__init__(message)
        self.retry_after = retry_after


class AppOffline(ChildUnavailable):
    """``app_offline_file`` exists: ``content`` is served with 503."""

    status = 503

    def __init__(self, content: bytes):
        super().__init__("the app is offline")
        self.content = content
