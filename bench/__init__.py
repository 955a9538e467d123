"""Benchmarks for hostkit: run them from the repository root, e.g. ``python -m bench.inprocess``.

``cli`` is the skeleton the benchmarks share (options, the measured rounds, the report, the
JSON results); ``_harness`` holds the reusable pieces (start a server and wait for its ready
line, one GET, run wrk and parse its output); ``trivial_app`` is the app every benchmark
serves. The hardening suites, with their figures, are ``python -m tests.hardening``.
"""
