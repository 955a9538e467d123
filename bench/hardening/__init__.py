"""Hardening suites for OutOfProcess hosting: security and reliability, with figures.

Each module is one suite, used both by the quick CI tests (``tests/security``,
``tests/reliability``) and by the full run, ``python -m bench.hardening --full``, which
prints every figure. Everything talks to 127.0.0.1 only, and every wait has a timeout.

Security: :mod:`smuggling` (hand-written :mod:`corpus` and generated :mod:`mutations`, read
back with the two parsers of :mod:`wire`), :mod:`spoof`, :mod:`direct`.
Reliability: :mod:`crash`, :mod:`front_kill`, :mod:`graceful`, :mod:`slow_clients`,
:mod:`logging_stall`, :mod:`startup`.
Shared: :mod:`fronts` (starting fronts), :mod:`client` and :mod:`load` (HTTP clients), and
the programs in ``programs/`` (the hardening app and the recording child).
"""
