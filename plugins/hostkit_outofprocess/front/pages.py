"""The module's own answers: 502.5, 503 (rapid fail, app offline), 502 and 504 pages."""

from __future__ import annotations

from hostkit.plugin import render_error_page as render

from hostkit_outofprocess.children.errors import (
    AppOffline,
    ChildStartupFailure,
    ChildUnavailable,
    RapidFailLimit,
)

STARTUP_FAILURE_TITLE = "502.5 Out-Of-Process Startup Failure"
_TITLES = {
    502: ("502.3 Bad Gateway", "The module could not get an answer from the application process."),
    503: ("503 Service Unavailable", "The application is not available right now."),
    504: ("504 Gateway Timeout",
          "The application process did not answer within module.request_timeout."),
}


class ErrorPages:
    """Renders the module's pages; ``show_details`` (Development) adds the child's output,
    ``bare`` (``disable_startup_error_page``) sends status codes with empty bodies."""

    def __init__(self, *, show_details: bool, bare: bool):
        self.show_details = show_details
        self.bare = bare

    def for_status(self, status: int) -> bytes:
        if self.bare:
            return b""
        title, summary = _TITLES[status]
        return render(title, summary)

    def for_unavailable(self, error: ChildUnavailable
                        ) -> tuple[int, bytes, list[tuple[bytes, bytes]]]:
        """Status, body and extra headers for a request no child could take."""
        if isinstance(error, AppOffline):
            return 503, error.content, []  # the file's content, whatever the settings
        if isinstance(error, RapidFailLimit):
            return 503, self.for_status(503), [(b"retry-after", str(error.retry_after).encode())]
        if isinstance(error, ChildStartupFailure):
            if self.bare:
                return 502, b"", []
            detail = None
            if self.show_details:
                detail = f"{error}\n\nThe child's last output:\n{error.output or '(none)'}"
            return 502, render(STARTUP_FAILURE_TITLE,
                               "The application process failed to start.", detail), []
        return error.status, self.for_status(error.status), []
