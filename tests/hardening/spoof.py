"""The spoof matrix: every reserved or forwarding header, in every spelling a client can try.

Each case is one request carrying a unique marker value in a header the client must not be
able to set (``hostkit-*``, ``X-Forwarded-*``, ``Forwarded``, ``X-Real-IP``), written in one
of the variants below. A case is **accepted** when the marker reaches the child, or the child
sees any value for those names other than the module's own (``X-Forwarded-For`` = the
client's address, ``X-Forwarded-Proto`` = ``http``, exactly one correct ``Hostkit-Token``).
It is checked twice: in the exact bytes a recording child receives, and in what a hostkit
app sees (client address, scheme, host, headers) behind the integration layer.

Then once more against servers with ``[forwarded_headers]`` whose known proxies are not the
matrix's client (:data:`FORWARDED_HEADERS`), in both models: InProcess the headers reach the
app as sent, but the client address, scheme and host it is given must be the connection's;
OutOfProcess as above. The controls (:data:`CONTROLS`), sent to those same servers from a
known proxy's address, show the setting is live: there, forwarded values are believed.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import socket
import tempfile
from collections.abc import Iterator
from pathlib import Path

from hostkit.testing import Program, python, write_settings
from tests.hardening.corpus import Vector
from tests.hardening.fronts import APP, START_TIMEOUT, Front
from tests.hardening.smuggling import RecordingFront, exchange
from tests.hardening.wire import Answer, read_h11, read_llhttp, split_responses
from tests.support.processes import LOOPBACK, free_port

RESERVED = (b"Hostkit-Token", b"Hostkit-Identity", b"Hostkit-Client-Cert", b"Hostkit-Anything",
            b"X-Forwarded-For", b"X-Forwarded-Proto", b"X-Forwarded-Host", b"X-Forwarded-Port",
            b"X-Forwarded-Prefix", b"Forwarded", b"X-Real-IP")
#: what the child may see for these names: the module's own values only (and its
#: ``Hostkit-Client-Port``: one decimal port, the client's).
MODULE_VALUES = {b"x-forwarded-for": [b"127.0.0.1"], b"x-forwarded-proto": [b"http"],
                 b"hostkit-http-version": [b"1.1"]}
CLIENT_PORT_HEADER = b"hostkit-client-port"
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


def cases(names: tuple[bytes, ...] = RESERVED) -> Iterator[Case]:
    """Every reserved name (or those of ``names``) × every variant."""
    for index, name in enumerate(RESERVED):
        if name not in names:
            continue
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
        port = seen.pop(CLIENT_PORT_HEADER, None)
        if port is not None and (len(port) != 1 or not port[0].isdigit()):
            problems.append(f"the child saw {CLIENT_PORT_HEADER.decode()}: {port}")
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


def _first_answer(url: str, case: Case) -> Answer | None:
    """The server's answer to the case's request, or None when it gave none."""
    sent = read_h11(case.data)
    answers, _ = split_responses(exchange(url, case.data, sent), [b"GET"])
    return answers[0] if answers else None


def check_app(url: str, case: Case) -> Result:
    """The case through a front whose child is the hostkit app (``/whoami``)."""
    answer = _first_answer(url, case)
    if answer is None:
        return Result(case, 0, ["no answer"])
    problems = []
    if answer.status == 200:
        seen = json.loads(answer.body)
        if case.marker.decode() in answer.body.decode():
            problems.append("the marker reached the app")
        problems += _origin_problems(seen, CLIENT, "http", "a")
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
                f"({len({r.case.name for r in self.results})} names x {len(VARIANTS)} "
                f"variants), {len(accepted)} accepted; "
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


# -- with [forwarded_headers]: known proxies, none of them the matrix's client ----------------
#
# The same matrix against servers that believe some proxies (SPEC §9): the client the matrix
# sends from (127.0.0.1) is not one of them, so every spoofed value must still be ignored, in
# both models. The controls prove the setting is live on those very servers: sent from
# PROXY_SOURCE, another loopback address inside ``known_networks``, forwarded values are
# believed (InProcess by the server, OutOfProcess by the front, which forwards them on).

#: The ``[forwarded_headers]`` of the servers below.
FORWARDED_HEADERS: dict[str, object] = {
    "known_proxies": ["10.9.9.9"], "known_networks": ["127.0.0.2/31"], "forward_limit": 2}
#: The names ``[forwarded_headers]`` is about (the hostkit- ones are the front's alone).
FORWARDING = tuple(name for name in RESERVED if not name.startswith(b"Hostkit-"))
#: A known proxy (inside ``known_networks``) the controls connect from.
PROXY_SOURCE = "127.0.0.2"
MODELS = ("InProcess", "OutOfProcess")
CLIENT = "127.0.0.1"
_CONTROL_TIMEOUT = 10.0


def _origin_problems(seen: dict[str, object], remote_ip: str, scheme: str,
                     host: str) -> list[str]:
    """What differs between the origin the app saw and the one expected."""
    got = (seen["remote_ip"], seen["scheme"], seen["host"])
    if got != (remote_ip, scheme, host):
        return [f"the app saw client {got[0]} over {got[1]} for host {got[2]!r}"]
    return []


def check_app_in_process(url: str, case: Case) -> Result:
    """The case sent straight to an InProcess hostkit app (``/whoami``): the headers reach
    the app as they came (as with Kestrel), but the client address, scheme and host the app
    is given must be the connection's own."""
    answer = _first_answer(url, case)
    if answer is None:
        return Result(case, 0, ["no answer"])
    problems = []
    if answer.status == 200:
        problems += _origin_problems(json.loads(answer.body), CLIENT, "http", "a")
    elif answer.status < 400:
        problems.append(f"answered {answer.status}")
    return Result(case, answer.status, problems)


def run_app_forwarding(model: str, backend: str, url: str) -> Figures:
    """The forwarding names of the matrix against a server with :data:`FORWARDED_HEADERS`
    (from :func:`serving`)."""
    check = check_app_in_process if model == "InProcess" else check_app
    return Figures(backend, f"hostkit app, {model}, known proxies that are not the client",
                   [check(url, case) for case in cases(FORWARDING)])


@dataclasses.dataclass(frozen=True)
class Control:
    """What a known proxy sends (header lines) and what the app must then see."""

    name: str
    lines: tuple[bytes, ...]
    remote_ip: str
    scheme: str = "http"
    host: str = "a"


CONTROLS = (
    Control("X-Forwarded-For, -Proto and -Host",
            (b"X-Forwarded-For: 203.0.113.7", b"X-Forwarded-Proto: https",
             b"X-Forwarded-Host: shop.example"), "203.0.113.7", "https", "shop.example"),
    Control("RFC 7239 Forwarded",
            (b'Forwarded: for="[2001:db8::7]:4711";proto=https;host=shop.example',),
            "2001:db8::7", "https", "shop.example"),
    Control("two known hops", (b"X-Forwarded-For: 203.0.113.7, 127.0.0.3",), "203.0.113.7"),
    Control("no more than forward_limit hops",
            (b"X-Forwarded-For: 203.0.113.7, 127.0.0.3, 127.0.0.2",), "127.0.0.3"),
    Control("the first address that is not a known proxy is the client",
            (b"X-Forwarded-For: 6.6.6.6, 203.0.113.7",), "203.0.113.7"),
    Control("X-Forwarded-* win over a Forwarded the proxy passed through",
            (b"Forwarded: for=6.6.6.6;proto=https;host=evil.example",
             b"X-Forwarded-For: 203.0.113.7"), "203.0.113.7"),
    Control("malformed values are ignored",
            (b"X-Forwarded-For: not-an-address", b"X-Forwarded-Proto: gopher",
             b"X-Forwarded-Host: bad host/"), PROXY_SOURCE),
    Control("an obfuscated Forwarded for= stops the reading",
            (b"Forwarded: for=_hidden;proto=https",), PROXY_SOURCE),
)


def _ask_from(source: str, url: str, lines: tuple[bytes, ...]) -> tuple[int, bytes] | None:
    """``GET /whoami`` with ``lines`` on a connection from ``source``; the status and body,
    or None when no answer came."""
    host, port = url.removeprefix("http://").split(":")
    data = b"\r\n".join((b"GET /whoami HTTP/1.1", b"Host: a", *lines,
                         b"Connection: close")) + b"\r\n\r\n"
    received = b""
    with socket.create_connection((host, int(port)), timeout=_CONTROL_TIMEOUT,
                                  source_address=(source, 0)) as sock:
        sock.sendall(data)
        while chunk := sock.recv(65536):
            received += chunk
    answers, _ = split_responses(received, [b"GET"])
    return (answers[0].status, answers[0].body) if answers else None


def check_control(url: str, control: Control) -> list[str]:
    """The problems of one control (none: the app saw what the known proxy forwarded)."""
    answer = _ask_from(PROXY_SOURCE, url, control.lines)
    if answer is None:
        return ["no answer"]
    status, body = answer
    if status != 200:
        return [f"answered {status}"]
    return _origin_problems(json.loads(body), control.remote_ip, control.scheme, control.host)


@dataclasses.dataclass
class ControlFigures:
    backend: str
    model: str
    results: list[tuple[Control, list[str]]]

    def lines(self) -> list[str]:
        wrong = [(control, problems) for control, problems in self.results if problems]
        return [f"forwarded headers from a known proxy ({self.model}, {self.backend}): "
                f"{len(self.results) - len(wrong)} of {len(self.results)} controls as "
                "expected",
                *(f"  WRONG {control.name}: {problems}" for control, problems in wrong)]

    def problems(self) -> list[str]:
        return [f"{self.model} {control.name}: {problems}"
                for control, problems in self.results if problems]


def run_controls(model: str, backend: str, url: str) -> ControlFigures:
    return ControlFigures(backend, model,
                          [(control, check_control(url, control)) for control in CONTROLS])


@contextlib.contextmanager
def serving(model: str, backend: str) -> Iterator[str]:
    """``hardening_app.py`` in ``model`` with :data:`FORWARDED_HEADERS`, listening on
    127.0.0.1; yields its URL and stops it at the end of the ``with`` block."""
    tables = {"forwarded_headers": FORWARDED_HEADERS}
    if model == "OutOfProcess":
        front = Front(backend, tables=tables)
        with front:
            yield front.url
        return
    with tempfile.TemporaryDirectory(prefix="hostkit-spoof-") as folder:
        root = Path(folder)
        write_settings(root, {"hosting_model": "InProcess", "shutdown_timeout": 5, **tables})
        url = f"http://{LOOPBACK}:{free_port()}"
        with Program(python(str(APP), f"--urls={url}", f"--async_backend={backend}"), root,
                     name=f"InProcess app ({backend})") as program:
            program.wait_started(START_TIMEOUT)
            yield url


def run_forwarding(backend: str) -> Iterator[Figures | ControlFigures]:
    """The matrix and the controls against a server with :data:`FORWARDED_HEADERS`, in
    each model."""
    for model in MODELS:
        with serving(model, backend) as url:
            yield run_app_forwarding(model, backend, url)
            yield run_controls(model, backend, url)
