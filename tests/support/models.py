"""One program served in either hosting model, for tests that compare the two.

InProcess, the program itself serves; OutOfProcess, the same program is the front and runs
again as its child (:func:`tests.support.fronts.front_settings`). Either way it listens on a
free port of 127.0.0.1, on the test's async backend.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from hostkit.testing import Program, python, write_settings
from tests.support.fronts import child_program, front_settings

MODELS = ("InProcess", "OutOfProcess")


def serve_in(model: str, program: Path, backend: str, root: Path,
             **settings: Any) -> Program:
    """Start ``program`` in ``model`` with ``root`` as its directory (its ``hostkit.toml`` is
    written there, with ``settings``: top-level keys and tables, ``module`` for a front's)
    and wait until it listens (its URL: ``urls[0]``). The caller stops it (``with``)."""
    module = settings.pop("module", {})
    if model == "InProcess":
        write_settings(root, {"hosting_model": "InProcess", "shutdown_timeout": 5, **settings})
    else:
        top = {key: value for key, value in settings.items() if key != "server"}
        write_settings(root, front_settings(module={**child_program(program), **module},
                                            server=settings.get("server"), **top))
    server = Program(python(str(program), "--urls=http://127.0.0.1:0",
                            f"--async_backend={backend}"), cwd=root)
    try:
        server.wait_started()
    except BaseException:
        server.stop()
        raise
    return server
