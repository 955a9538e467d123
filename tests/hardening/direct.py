"""Direct to the child: requests that skip the module and try to pass the token check.

A child (the hardening app) is started by hand with the module's contract and a known token,
exactly as the module would start it. Then ``count`` requests go straight to its port, on
keep-alive connections, each with one of the token variants below: none, wrong, truncated,
extended, duplicated, case-changed, under another spelling of the name, in a comma list, in a
trailer, folded. Figures: how many were answered 400 (all must be), how many reached the app
(``/calls`` afterwards, with the right token, must say 1: itself), and how many lines of the
child's output contain the token (none may).
"""

from __future__ import annotations

import dataclasses
import secrets
import tempfile
from collections import Counter
from collections.abc import Callable
from pathlib import Path

import anyio

from hostkit.testing import Program, python, write_settings
from tests.hardening.fronts import APP
from tests.support.http import HttpConnection, RequestFailed, build, request_once
from tests.support.processes import free_port

_TIMEOUT = 10.0
#: requests per backend in CI's run and in the full run.
QUICK = 400
FULL = 10_000


def variants(token: str) -> dict[str, Callable[[str], bytes]]:
    """Every way of getting the token wrong, as a function of the path -> request bytes."""
    wrong = secrets.token_urlsafe(32)[:len(token)]

    def get(*headers: tuple[str, str]) -> Callable[[str], bytes]:
        return lambda path: build("GET", path, headers)

    return {
        "no token": get(),
        "empty": get(("Hostkit-Token", "")),
        "wrong": get(("Hostkit-Token", wrong)),
        "truncated by one": get(("Hostkit-Token", token[:-1])),
        "truncated to half": get(("Hostkit-Token", token[:len(token) // 2])),
        "extended": get(("Hostkit-Token", token + "A")),
        "duplicated": get(("Hostkit-Token", token), ("Hostkit-Token", token)),
        "right then wrong": get(("Hostkit-Token", token), ("Hostkit-Token", wrong)),
        "wrong then right": get(("Hostkit-Token", wrong), ("Hostkit-Token", token)),
        "differently cased names": get(("Hostkit-Token", token), ("hostkit-token", token)),
        "upper case": get(("Hostkit-Token", token.upper())),
        "swapped case": get(("Hostkit-Token", token.swapcase())),
        "underscore name": get(("Hostkit_Token", token)),
        "comma list": get(("Hostkit-Token", f"{token}, {token}")),
        "quoted": get(("Hostkit-Token", f'"{token}"')),
        "in a cookie": get(("Cookie", f"Hostkit-Token={token}")),
        "in the query": lambda path: build("GET", f"{path}?hostkit-token={token}"),
        "in a trailer": lambda path: build("POST", path, [("Transfer-Encoding", "chunked")])
        + f"1\r\nx\r\n0\r\nHostkit-Token: {token}\r\n\r\n".encode(),
        "folded": lambda path: (f"GET {path} HTTP/1.1\r\nHost: test\r\nHostkit-Token: "
                                f"{token[:10]}\r\n {token[10:]}\r\n\r\n").encode(),
        "with a NUL": lambda path: (f"GET {path} HTTP/1.1\r\nHost: test\r\nHostkit-Token: "
                                    f"{token}\0\r\n\r\n").encode(),
    }


@dataclasses.dataclass
class Figures:
    requests: int
    statuses: Counter[int]
    failures: Counter[str]
    nonempty_400s: int
    handler_calls: int
    token_lines: int
    output_lines: int

    backend: str = ""

    @property
    def rejected_fraction(self) -> float:
        return self.statuses.get(400, 0) / self.requests if self.requests else 0.0

    def lines(self) -> list[str]:
        others = {s: n for s, n in self.statuses.items() if s != 400}
        return [f"direct to the child ({self.backend}): {self.requests} requests with wrong "
                f"tokens, {100 * self.rejected_fraction:.1f}% answered 400 "
                f"({self.nonempty_400s} with a body; other answers {others or 'none'}, "
                f"failures {dict(self.failures) or 'none'}), {self.handler_calls} handler "
                f"calls, {self.token_lines} of {self.output_lines} output lines contain the "
                "token"]

    def problems(self) -> list[str]:
        found = []
        if self.statuses.get(400, 0) != self.requests or self.failures:
            found.append(f"not every request answered 400: {dict(self.statuses)}, "
                         f"{dict(self.failures)}")
        if self.nonempty_400s:
            found.append(f"{self.nonempty_400s} refusals had a body")
        if self.handler_calls:
            found.append(f"the app was called {self.handler_calls} times")
        if self.token_lines or not self.output_lines:
            found.append(f"{self.token_lines} output lines contain the token "
                         f"(of {self.output_lines})")
        return found


class HandStartedChild(Program):
    """The hardening app started as a child by hand, with a token the suite knows; listening
    once constructed. Its :attr:`lines` are everything it writes, stdout and stderr."""

    def __init__(self, backend: str):
        self.backend = backend
        self.port = free_port()
        self.token = secrets.token_urlsafe(32)
        self._root = tempfile.TemporaryDirectory(prefix="hostkit-direct-")
        write_settings(Path(self._root.name), {"hosting_model": "OutOfProcess"})
        super().__init__(
            python(str(APP), f"--async_backend={backend}"), self._root.name,
            {"HOSTKIT_PORT": str(self.port), "HOSTKIT_TOKEN": self.token,
             "HOSTKIT_PATH_BASE": "/"}, name=f"child ({backend})")
        try:
            self.wait_started(30)
        except AssertionError:
            self.stop()
            raise

    def stop(self, timeout: float = 10) -> int:
        code = super().stop(timeout)
        self._root.cleanup()
        return code


async def run(child: HandStartedChild, count: int, connections: int = 8) -> Figures:
    """``count`` requests with wrong tokens straight to ``child``, on ``connections``."""
    cases = list(variants(child.token).values())
    paths = ["/", "/calls", "/apply", "/whoami"]
    statuses: Counter[int] = Counter()
    failures: Counter[str] = Counter()
    nonempty = 0
    next_index = 0

    async def worker() -> None:
        nonlocal next_index, nonempty
        async with HttpConnection(child.port) as connection:
            while next_index < count:
                index, next_index = next_index, next_index + 1
                data = cases[index % len(cases)](paths[index % len(paths)])
                try:
                    response = await connection.request(data, _TIMEOUT)
                except RequestFailed as failure:
                    failures[failure.kind] += 1
                    continue
                statuses[response.status] += 1
                if response.status == 400 and response.body:
                    nonempty += 1

    async with anyio.create_task_group() as task_group:
        for _ in range(connections):
            task_group.start_soon(worker)
    answer = await request_once(child.port, build("GET", "/calls", [("Hostkit-Token",
                                                                      child.token)]), _TIMEOUT)
    calls = int(answer.body) - 1 if answer.status == 200 else -1
    lines = list(child.lines)
    return Figures(count, statuses, failures, nonempty, calls,
                   sum(child.token in line for line in lines), len(lines), child.backend)
