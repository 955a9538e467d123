"""The hint for an app that fails on trio because it uses an asyncio-only library.

Django's async views, asgiref's ``sync_to_async`` / ``async_to_sync`` and any library that
calls ``asyncio.get_running_loop()`` or awaits an asyncio future fail under
``async_backend = "trio"`` with errors that do not say why: ``RuntimeError: no running event
loop``, ``TypeError: trio.run received unrecognized yield message <Future pending>``. The
request stage (and the host, for a start failure) asks :meth:`BackendHints.first_hint` about
every exception it logs; the first time a cause is seen it gets one line to log, naming it.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator

import sniffio

#: What asyncio-only code raises when it runs under trio (a part of the message).
_ASYNCIO_ONLY_MESSAGES = (
    "unrecognized yield message",  # an asyncio future awaited inside trio.run
    "no running event loop",        # asyncio.get_running_loop() and what calls it
    "There is no current event loop",
)
# Exceptions chained deeper than this are not looked at.
_CHAIN_LIMIT = 16


def _chain(error: BaseException) -> Iterator[BaseException]:
    """``error``, what caused it (``__cause__``, ``__context__``) and the members of
    exception groups, breadth first, each once, at most :data:`_CHAIN_LIMIT`."""
    seen: set[int] = set()
    queue = [error]
    while queue and len(seen) < _CHAIN_LIMIT:
        current = queue.pop(0)
        if id(current) in seen:
            continue
        seen.add(id(current))
        yield current
        if isinstance(current, BaseExceptionGroup):
            queue.extend(current.exceptions)
        for linked in (current.__cause__, current.__context__):
            if linked is not None:
                queue.append(linked)


def _first_sentence(text: str) -> str:
    """The first line of ``text`` up to its first ". " (trio's message goes on to advice)."""
    return text.splitlines()[0].partition(". ")[0][:300] if text else text


def asyncio_only_cause(error: BaseException) -> tuple[str, str] | None:
    """The error in ``error``'s chain that asyncio-only code raises under trio: the cause
    (``"Type: the known part of its message"``, the same for every request that fails so)
    and the error itself (``"Type: the first line of its message"``); None when there is
    none. Looks at the messages only: the caller checks that trio runs."""
    for current in _chain(error):
        text = str(current)
        for part in _ASYNCIO_ONLY_MESSAGES:
            if part in text:
                name = type(current).__name__
                return f"{name}: {part}", f"{name}: {_first_sentence(text)}"
    return None


def running_trio() -> bool:
    """Whether this thread runs trio now (the app's requests run in the host's loop)."""
    try:
        return sniffio.current_async_library() == "trio"
    except sniffio.AsyncLibraryNotFoundError:
        return False


class BackendHints:
    """Which asyncio-only causes were already named, so each is named once however many
    requests fail with it (one line per distinct cause)."""

    def __init__(self) -> None:
        self._named: set[str] = set()
        self._lock = threading.Lock()  # WSGI apps fail in worker threads too

    def first_hint(self, error: BaseException, *, trio: bool | None = None) -> str | None:
        """The line to log for ``error``, raised by the app under trio (``trio``: whether
        trio runs; None: ask sniffio), the first time its cause is seen; None otherwise (not
        trio, not an asyncio-only cause, or already named)."""
        found = asyncio_only_cause(error)
        if found is None or not (running_trio() if trio is None else trio):
            return None
        cause, text = found
        with self._lock:
            if cause in self._named:
                return None
            self._named.add(cause)
        return (f"the app uses an asyncio-only library on trio (asgiref's sync_to_async, "
                f"Django's async views, asyncio calls); set async_backend = \"asyncio\". "
                f"The error: {text}")
