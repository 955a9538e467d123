"""One program served in either hosting model, for tests that compare the two.

InProcess, the program itself serves; OutOfProcess, the same program is the front and runs
again as its child (:func:`tests.support.fronts.front_settings`). Either way it listens on a
free port of 127.0.0.1, on the test's async backend.
"""

from __future__ import annotations

from pathlib import Path

from hostkit.testing import Program, python, write_settings
from tests.support.fronts import child_program, front_settings

MODELS = ("InProcess", "OutOfProcess")


def serve_in(model: str, program: Path, backend: str, root: Path) -> Program:
    """Start ``program`` in ``model`` with ``root`` as its directory (its ``hostkit.toml`` is
    written there) and wait until it listens (its URL: ``urls[0]``). The caller stops it
    (``with``)."""
    if model == "InProcess":
        write_settings(root, {"hosting_model": "InProcess", "shutdown_timeout": 5})
    else:
        write_settings(root, front_settings(module=child_program(program)))
    server = Program(python(str(program), "--urls=http://127.0.0.1:0",
                            f"--async_backend={backend}"), cwd=root)
    try:
        server.wait_started()
    except BaseException:
        server.stop()
        raise
    return server
