"""The HTML error pages hostkit answers with (after ANCM's numbered pages)."""

from __future__ import annotations

import html

START_FAILURE_TITLE = "500.30 In-Process Start Failure"
START_FAILURE_SUMMARY = "The application failed to start."
#: ANCM's 500.37: the app's startup outlasted ``startup_time_limit``.
START_TIME_LIMIT_TITLE = "500.37 Failed to Start Within Startup Time Limit"


def render(title: str, summary: str, detail: str | None = None) -> bytes:
    """A small self-contained HTML page; ``detail`` (e.g. a traceback) only when given."""
    detail_html = (f"<h2>Details</h2>\n<pre>{html.escape(detail)}</pre>\n" if detail else "")
    page = (
        "<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n"
        f"<title>{html.escape(title)}</title>\n"
        "<style>body{font-family:sans-serif;margin:2em;max-width:60em}"
        "pre{background:#f4f4f4;padding:1em;overflow:auto}</style>\n</head>\n<body>\n"
        f"<h1>HTTP Error {html.escape(title)}</h1>\n<p>{html.escape(summary)}</p>\n"
        f"{detail_html}</body>\n</html>\n"
    )
    return page.encode("utf-8")


def start_failure_page(detail: str | None, title: str = START_FAILURE_TITLE,
                       summary: str = START_FAILURE_SUMMARY) -> bytes:
    """The "500.30 In-Process Start Failure" page (or another ``title``, the 500.37 one,
    with its ``summary``); ``detail`` only in Development."""
    return render(
        title,
        f"{summary} Its error was logged by the host"
        + ("." if detail is None else "; the details follow (shown in Development only)."),
        detail,
    )
