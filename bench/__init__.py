"""Benchmarks for hostkit: run them from the repository root, e.g. ``python -m bench.inprocess``.

``_harness`` holds the reusable pieces (free port, start a server and wait for its ready
line, run wrk and parse its output); ``trivial_app`` is the app every benchmark serves.
"""
