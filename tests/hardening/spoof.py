"""The spoof matrix: every reserved or forwarding header, in every spelling a client can try.

Each case is one request carrying a unique marker value in a header the client must not be
able to set (``hostkit-*``, ``X-Forwarded-*``, ``Forwarded``, ``X-Real-IP``), written in one
of the variants below. A case is **accepted** when the marker reaches the child, or the child
sees any value for those names other than the module's own (``X-Forwarded-For`` = the
client's address, ``X-Forwarded-Proto`` = ``http``, exactly one correct ``Hostkit-Token``).
It is checked twice: in the exact bytes a recording child receives, and in what a hostkit
app sees (client address, scheme, headers) behind the integration layer.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Iterator

from tests.hardening.corpus import Vector
from tests.hardening.smuggling import RecordingFront, exchange
from tests.hardening.wire import read_h11, read_llhttp, split_responses

RESERVED = (b"Hostkit-Token", b"Hostkit-Identity", b"Hostkit-Client-Cert", b"Hostkit-Anything",
            b"X-Forwarded-For", b"X-Forwarded-Proto", b"X-Forwarded-Host", b"X-Forwarded-Port",
            b"X-Forwarded-Prefix", b"Forwarded", b"X-Real-IP")
#: what the child may see for these names: the module's own values only.
MODULE_VALUES = {b"x-forwarded-for": [b"127.0.0.1"], b"x-forwarded-proto": [b"http"]}
VARIANTS = ("as is", "lower case", "upper case", "mixed case", "underscores", "one underscore",
            "duplicated", "named in Connection", "trailer", "trailer named in Trailer",
            "comma list", "empty then value", "with the module's value")


@dataclasses.dataclass(frozen=True)
class Case:
    name: bytes
    variant: str
    marker: bytes
    data: bytes


def _mixed(name: bytes) -> bytes:
    return bytes(c ^ 0x20 if i % 2 and chr(c).isalpha() else c for i, c in enumerate(name))


def cases() -> Iterator[Case]:
    """Every reserved name × every variant."""
    for index, name in enumerate(RESERVED):
        for variant in VARIANTS:
            marker = b"spoofed-%d-%d" % (index, VARIANTS.index(variant))
            yield Case(name, variant, marker, _request(name, variant, marker))


def _request(name: bytes, variant: str, marker: bytes) -> bytes:
    spelled = {"lower case": name.lower(), "upper case": name.upper(),
               "mixed case": _mixed(name), "underscores": name.replace(b"-", b"_"),
               "one underscore": name.replace(b"-", b"_", 1)}.get(variant, name)
    lines = [b"GET /whoami HTTP/1.1", b"Host: a"]
    if variant == "duplicated":
        lines += [spelled + b": " + marker, spelled + b": " + marker]
    elif variant == "named in Connection":
        lines += [b"Connection: keep-alive, " + name, spelled + b": " + marker]
    elif variant == "comma list":
        lines += [spelled + b": 10.0.0.1, " + marker]
    elif variant == "empty then value":
        lines += [spelled + b":", spelled + b": " + marker]
    elif variant == "with the module's value":
        lines += [spelled + b": 127.0.0.1", spelled + b": http", spelled + b": " + marker]
    elif variant.startswith("trailer"):
        lines[0] = b"POST /whoami HTTP/1.1"
        lines.append(b"Transfer-Encoding: chunked")
        if variant == "trailer named in Trailer":
            lines.append(b"Trailer: " + name)
        return b"\r\n".join(lines) + b"\r\n\r\n1\r\nx\r\n0\r\n" + spelled + b": " + marker + \
            b"\r\n\r\n"
    else:
        lines.append(spelled + b": " + marker)
    return b"\r\n".join(lines) + b"\r\n\r\n"


@dataclasses.dataclass
class Result:
    """One case's outcome."""

    case: Case
    status: int
    problems: list[str]

    @property
    def accepted(self) -> bool:
        return bool(self.problems)


def _canonical(name: bytes) -> bytes:
    return name.lower().replace(b"_", b"-")


def _reserved(name: bytes) -> bool:
    key = _canonical(name)
    return key.startswith((b"hostkit-", b"x-forwarded-")) or key in (b"forwarded", b"x-real-ip")


def check_recorded(front: RecordingFront, case: Case) -> Result:
    """The case through a front whose child records the exact bytes."""
    outcome = front.check(Vector("spoof", f"{case.name!r} {case.variant}", case.data))
    problems = list(outcome.divergences)
    if case.marker in outcome.child_data:
        problems.append("the marker reached the child")
    for message in read_h11(outcome.child_data).messages:
        seen: dict[bytes, list[bytes]] = {}
        for header, value in message.headers:
            if _reserved(header):
                seen.setdefault(_canonical(header), []).append(value)
        token = seen.pop(b"hostkit-token", [])
        if len(token) != 1:
            problems.append(f"{len(token)} Hostkit-Token headers reached the child")
        for key, values in seen.items():
            if MODULE_VALUES.get(key) != values:
                problems.append(f"the child saw {key.decode()}: {values}")
    for answer in outcome.answers:
        if answer.header(b"x-recorder-serial") and not json.loads(answer.body)["token_ok"]:
            problems.append("the child did not get exactly the module's token")
    if read_llhttp(outcome.child_data).error and outcome.child_data:
        problems.append("the child's bytes are not strict HTTP")
    status = outcome.statuses[0] if outcome.statuses else 0
    return Result(case, status, problems)


def check_app(url: str, case: Case) -> Result:
    """The case through a front whose child is the hostkit app (``/whoami``)."""
    sent = read_h11(case.data)
    answers, _ = split_responses(exchange(url, case.data, sent), [b"GET"])
    if not answers:
        return Result(case, 0, ["no answer"])
    answer = answers[0]
    problems = []
    if answer.status == 200:
        seen = json.loads(answer.body)
        if case.marker.decode() in answer.body.decode():
            problems.append("the marker reached the app")
        if seen["remote_ip"] != "127.0.0.1" or seen["scheme"] != "http":
            problems.append(f"the app saw client {seen['remote_ip']} over {seen['scheme']}")
        names = [_canonical(name.encode()) for name, _ in seen["headers"]]
        if any(name.startswith(b"hostkit-") for name in names):
            problems.append("a hostkit- header reached the app")
    elif answer.status < 400:
        problems.append(f"answered {answer.status}")
    return Result(case, answer.status, problems)


@dataclasses.dataclass
class Figures:
    backend: str
    child: str                    # "recording child" or "hostkit app"
    results: list[Result]

    def lines(self) -> list[str]:
        accepted = [r for r in self.results if r.accepted]
        refused = sum(r.status >= 400 for r in self.results)
        return [f"spoof matrix ({self.backend}, {self.child}): {len(self.results)} cases "
                f"({len(RESERVED)} names x {len(VARIANTS)} variants), {len(accepted)} accepted; "
                f"{len(self.results) - refused - len(accepted)} stripped, {refused} refused",
                *(f"  ACCEPTED {r.case.name!r} {r.case.variant}: {r.problems}"
                  for r in accepted)]

    def problems(self) -> list[str]:
        return [f"{r.case.name!r} {r.case.variant}: {r.problems}" for r in self.results
                if r.accepted]


def run_recorded(front: RecordingFront) -> Figures:
    return Figures(front.backend, "recording child",
                   [check_recorded(front, case) for case in cases()])


def run_app(backend: str, url: str) -> Figures:
    return Figures(backend, "hostkit app", [check_app(url, case) for case in cases()])
