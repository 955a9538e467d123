"""hostkit's tests: ``pytest`` runs them all (``make test``).

- ``test_*.py``: unit and integration tests (integration tests start real programs);
- ``security/``, ``reliability/``: the hardening suites at their quick sizes;
- ``hardening/``: those suites' logic, and ``python -m tests.hardening [--full]``, which runs
  them (at full size with ``--full``) and prints every figure;
- ``support/``: the helpers tests share (test modules never import each other);
- ``programs/``: the programs the tests start.
"""
