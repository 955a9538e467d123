"""Which event loop a host's process runs: what ``async_backend`` and ``event_loop`` decide.

``async_backend`` picks the async library (asyncio or trio); with asyncio, ``event_loop``
picks its loop, as uvicorn's ``--loop`` does: ``asyncio`` is the standard library's,
``uvloop`` is uvloop, ``auto`` is uvloop when it can be imported and the standard library's
otherwise. trio has one loop of its own: ``auto`` and ``asyncio`` mean trio, ``uvloop`` is an
error.

:func:`choose_event_loop` is the one place that decides. The configuration loader asks it
as it reads the settings, so a pair that cannot run is a :class:`ConfigurationError` naming
its source before anything starts; :meth:`hostkit.Host.run` asks it which loop to start.
Every process that runs a loop is a host reading the same settings (an InProcess host, an
OutOfProcess front and its child, a supervisor and its workers), so each starts its own loop
the same way.
"""

from __future__ import annotations

import dataclasses
import importlib
from typing import Any

import sniffio

AUTO = "auto"
ASYNCIO = "asyncio"
UVLOOP = "uvloop"
#: The values of the ``event_loop`` setting.
EVENT_LOOPS = (AUTO, ASYNCIO, UVLOOP)
#: What to do when ``event_loop = "uvloop"`` and uvloop is not installed.
INSTALL_UVLOOP = "install uvloop: pip install 'hostkit[uvloop]'"


class EventLoopError(ValueError):
    """The settings ask for a loop this process cannot run; the message says why (the
    loader adds where the values came from)."""


@dataclasses.dataclass(frozen=True)
class EventLoop:
    """The loop to start: ``backend`` is anyio's (``"asyncio"`` or ``"trio"``); ``uvloop``
    whether asyncio runs on uvloop's loop."""

    backend: str
    uvloop: bool = False

    @property
    def backend_options(self) -> dict[str, Any]:
        """What ``anyio.run`` takes as ``backend_options`` to start this loop."""
        return {"use_uvloop": True} if self.uvloop else {}


def choose_event_loop(async_backend: str, event_loop: str) -> EventLoop:
    """The loop a host runs with these two settings (their validated values).

    Called by the configuration loader for every configuration it reads, and by
    :meth:`hostkit.Host.run`. Raises :class:`EventLoopError` for ``uvloop`` with trio, and
    for ``uvloop`` when it cannot be imported.
    """
    if async_backend == "trio":
        if event_loop == UVLOOP:
            raise EventLoopError("uvloop is an asyncio event loop, not trio's")
        return EventLoop("trio")
    if event_loop == ASYNCIO:
        return EventLoop(ASYNCIO)
    installed = uvloop_installed()
    if event_loop == UVLOOP and not installed:
        raise EventLoopError(f"uvloop cannot be imported; {INSTALL_UVLOOP}")
    return EventLoop(ASYNCIO, uvloop=installed)


def uvloop_installed() -> bool:
    """Whether uvloop can be imported here (importing it once; later calls find it
    imported). What ``event_loop = "auto"`` goes by."""
    try:
        importlib.import_module(UVLOOP)
    except ImportError:
        return False
    return True


def running_event_loop() -> str:
    """The loop the calling task runs on, as the host logs it: ``"trio"``, ``"asyncio"``,
    or ``"asyncio (uvloop)"``. Called from a task."""
    library = sniffio.current_async_library()
    if library == ASYNCIO:
        import asyncio  # imported already: it runs

        module = type(asyncio.get_running_loop()).__module__
        if module.partition(".")[0] == UVLOOP:
            return f"{ASYNCIO} ({UVLOOP})"
    return library
