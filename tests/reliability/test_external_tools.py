"""slowhttptest against both hosting models, in its four modes, with a probe client.

Each mode (``-H`` slowloris, ``-B`` slow body to a route that reads it, ``-X`` slow read of
a 10 MB response, ``-R`` range header) runs for 5 or 6 s at CI's size
(:data:`external_tools.QUICK_SLOW`: 100 connections, 300 for ``-X``) against a fresh server
InProcess, or OutOfProcess (front and child), on asyncio and trio. Every probe (a normal
request on a new connection every 0.1 s) is answered (one unanswered for 5 s is a timing
problem: the run is measured once more before the test fails), slowhttptest made its
connections (``-H``, ``-B``, ``-X``: the server holds a slow client within its timeouts;
``-R``: each is answered and closed), and no process grows more than
:meth:`SlowRun.growth_limit_mb` (about 150 KB per slow connection; a process over
:attr:`SlowRun.cap_mb` is killed). The full runs (1000 connections for 20 s, memory read 10
and 30 s after) are ``python -m tests.hardening --full --only slowhttptest``.

slowhttptest not installed is a failure that says how to install it (``make tools``).
"""

from __future__ import annotations

import anyio
import pytest

from tests.hardening import external_tools
from tests.hardening.external_tools import MODELS, QUICK_SLOW, Served, SlowFigures, SlowRun
from tests.hardening.report import measure_twice

pytestmark = pytest.mark.integration


@pytest.mark.parametrize("backend", ["asyncio", "trio"])
@pytest.mark.parametrize("model", MODELS)
@pytest.mark.parametrize("run", QUICK_SLOW, ids=[run.mode for run in QUICK_SLOW])
def test_slowhttptest_leaves_the_server_available_within_a_memory_bound(
        run: SlowRun, model: str, backend: str) -> None:
    def measure() -> SlowFigures:
        with Served(model, backend, program=run.program) as served:
            return anyio.run(external_tools.run_slow, served, run)

    figures = measure_twice(measure, SlowFigures.problems)
    assert figures.problems() == [], "\n".join(figures.lines())
    # slowhttptest made its connections (none refused): it held them to the end of the run
    # (-H, -B, -X), or the server answered and closed them (-R: a request with a Range
    # header is quick to answer)
    status = figures.tool_status
    assert int(status["connected at most"]) + int(status["closed"]) >= run.connections // 2, \
        figures.lines()
    if run.mode != "-R":
        assert "Hit test time limit" in figures.tool_exit, figures.lines()


def test_a_missing_tool_fails_and_says_how_to_install_it(
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PATH", "/nonexistent")
    with pytest.raises(external_tools.ToolMissing, match=r"make tools.*apt-get install"):
        external_tools.tool("slowhttptest")
