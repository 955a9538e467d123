"""Helpers the tests and the hardening suites share; test modules import from here, never from
each other.

- :mod:`~tests.support.paths`: where the programs (``tests/programs``) and samples are;
- :mod:`~tests.support.fronts`: the settings of an OutOfProcess front and its children's log;
- :mod:`~tests.support.http`: the raw HTTP/1.1 client (bytes the test chose, answers parsed);
- :mod:`~tests.support.load`: keep-alive load clients that record every request;
- :mod:`~tests.support.websocket`: a WebSocket client;
- :mod:`~tests.support.asgi`: driving an ASGI app or the request stage in memory;
- :mod:`~tests.support.probe`: the probe program on a unix socket;
- :mod:`~tests.support.processes`: free ports and processes (Linux ``/proc``);
- :mod:`~tests.support.source`: what code a measurement ran.

Programs themselves are started with :class:`hostkit.testing.Program` (a context manager), and
their ``hostkit.toml`` written with :func:`hostkit.testing.write_settings`.
"""
