"""Hardening suites for OutOfProcess hosting: security and reliability, with figures.

Each module is one suite, used both by the quick tests (``tests/security``,
``tests/reliability``) and by ``python -m tests.hardening [--full]``, which runs them (at full
size with ``--full``) and prints every figure. Everything talks to 127.0.0.1 only, and every
wait has a timeout.

Security: :mod:`smuggling` (hand-written :mod:`corpus` and generated :mod:`mutations`, read
back with the two parsers of :mod:`wire`), :mod:`spoof`, :mod:`direct`.
Reliability: :mod:`crash`, :mod:`front_kill`, :mod:`graceful`, :mod:`slow_clients`,
:mod:`logging_stall`, :mod:`startup`.
Shared: :mod:`fronts` (starting fronts), :mod:`report` (figures and timing retries); the HTTP
and load clients are :mod:`tests.support.http` and :mod:`tests.support.load`, and the programs
(``hardening_app.py``, ``recorder.py``, ``flaky_start.py``, ``never_listens.py``) are in
``tests/programs``.
"""
