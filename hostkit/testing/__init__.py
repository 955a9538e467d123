"""hostkit.testing: what a server plugin author needs to know the plugin is right (SPEC §7).

- the **conformance suite**: ``pytest --pyargs hostkit.testing.suite --hostkit-server=NAME``,
  or subclass :class:`hostkit.testing.conformance.ServerConformance` in your own tests and set
  its ``server``; the ``--hostkit-server`` option comes from :mod:`hostkit.testing.plugin`
  (a ``pytest11`` entry point, active wherever hostkit is installed);
- the **probe** it runs, :mod:`hostkit.testing.probe` (``python -m hostkit.testing.probe``):
  a hostkit program with one path per behaviour under test;
- :class:`Program`: a real program in a subprocess, its output lines waited for with
  timeouts, stopped at the end of a ``with`` block; :func:`python` makes its command line and
  :func:`write_settings` the ``hostkit.toml`` it reads; under a supervisor,
  :meth:`Program.wait_workers_ready` and :func:`worker_of_line`;
- raw HTTP over real sockets (:mod:`hostkit.testing.client`): :func:`connect`,
  :func:`raw_exchange`, :func:`receive_until`, :func:`status_now`.

Install the suite's dependencies with ``pip install 'hostkit[testing]'`` (pytest, httpx,
trustme). Importing this package imports none of them.
"""

from __future__ import annotations

from hostkit.testing.client import connect, raw_exchange, receive_until, status_now
from hostkit.testing.program import (
    RUNNING,
    STARTED,
    Program,
    python,
    stop_all,
    worker_of_line,
    write_settings,
)

__all__ = ["RUNNING", "STARTED", "Program", "connect", "python", "raw_exchange",
           "receive_until", "status_now", "stop_all", "worker_of_line", "write_settings"]
