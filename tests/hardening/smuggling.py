"""The smuggling suite: raw-byte vectors against both hosting models, each recording what
reached the app.

- **OutOfProcess** (:class:`RecordingFront`): a front whose child is the recorder
  (``tests/programs/recorder.py``), which logs the bytes the front sent it;
- **InProcess** (:class:`RecordingServer`): hostkit InProcess (hypercorn behind the gateway's
  request rules) serving ``tests/programs/recording_app.py``, whose app logs every request it
  received (method, target, headers, body): what the app got, after every parser and rule.

For every vector (one fresh client connection, one write) the OutOfProcess suite compares
three readings:

- the client's bytes, read by h11 (the module's parser): the requests the module parsed;
- the bytes the child received on its connections (from the recorder's log), read by h11
  **and** by llhttp, which must agree with each other;
- the answers the client got: those from the child carry ``x-recorder-serial``.

A **divergence** is any of: the child's two parsers disagree or refuse what the module sent;
the child completed a different number of requests than the client got answers from it; a
request reached the child different from how the module parsed it (method, target, body, a
header the client did not send and the module does not add); bytes of a request the module
refused reached the child; anything was forwarded after a refusal; a refusal that is not an
error status; or a vector whose ``expect`` was not met.

InProcess there is no second hop: the suite compares what the app received with the client's
bytes read by h11 (the server's parser) **and** by llhttp (a strict parser, reading as a proxy
in front of the server might). A divergence is any of: a request the app got differs from
either reading of the client's bytes (method, target after the absolute-form rewrite, body,
headers, Host), or the app got a request llhttp reads as not yet complete (llhttp refusing
the bytes is no divergence: a strict proxy would not forward them); the app got a different
number of requests than the client got answers from it; the app got a request after a
refusal; a refusal that is not an error status; or a vector whose ``expect`` was not met.
"""

from __future__ import annotations

import base64
import collections
import dataclasses
import json
import socket
import tempfile
import time
import urllib.parse
from collections.abc import Iterable
from pathlib import Path

from tests.hardening.corpus import Vector
from tests.hardening.fronts import RECORDER, STOP_TIMEOUT, Front
from tests.hardening.wire import (
    Answer,
    Message,
    Reading,
    read_h11,
    read_llhttp,
    split_responses,
    with_stand_in_methods,
)
from hostkit.testing import Program, python, write_settings
from tests.support.fronts import child_program
from tests.support.paths import PROGRAMS
from tests.support.processes import LOOPBACK, free_port

#: Headers the module itself puts on a forwarded request.
MODULE_HEADERS = frozenset({b"x-forwarded-for", b"x-forwarded-proto", b"hostkit-token",
                            b"content-length", b"transfer-encoding", b"connection", b"upgrade",
                            b"host", b"x-request-id", b"hostkit-client-port",
                            b"hostkit-http-version"})
_EXCHANGE_TIMEOUT = 3.0
_TAIL_WAIT = 0.1      # after the last expected answer, when the client's bytes end mid-request
_ABORT_WAIT = 2.0     # for the module to close a child connection it left mid-request
#: generated mutations per backend in CI's run and in the full run.
QUICK_MUTATIONS = 60
FULL_MUTATIONS = 3000


@dataclasses.dataclass
class Outcome:
    """What happened to one vector."""

    vector: Vector
    statuses: list[int]
    forwarded: int               # requests the child completed
    child_bytes: int             # bytes the child received for this vector
    divergences: list[str]
    input_disagreement: bool     # h11 and llhttp read the client's bytes differently
    child_data: bytes = b""      # every byte the child received for this vector
    answers: list[Answer] = dataclasses.field(default_factory=list)

    @property
    def accepted(self) -> bool:
        """At least one request of the vector reached the child."""
        return self.forwarded > 0

    @property
    def refused(self) -> bool:
        """The module refused the first request itself (an error status, nothing forwarded)."""
        return not self.accepted and bool(self.statuses) and self.statuses[0] >= 400

    def describe(self) -> str:
        return (f"[{self.vector.category}] {self.vector.name}: statuses {self.statuses}, "
                f"{self.forwarded} forwarded, {self.child_bytes} bytes to the child: "
                + "; ".join(self.divergences))


class ChildLog:
    """The recorder's log, read incrementally, with every child connection's stream."""

    def __init__(self, path: Path):
        self.path = path
        self.offset = 0
        self.streams: dict[int, bytearray] = collections.defaultdict(bytearray)
        self.consumed: dict[int, int] = collections.defaultdict(int)
        self.ended: set[int] = set()

    def read(self) -> list[tuple[int, bytes | None]]:
        """New records since the last read: (connection, data) or (connection, None) at EOF."""
        try:
            with open(self.path, "rb") as log:
                log.seek(self.offset)
                chunk = log.read()
        except FileNotFoundError:
            return []
        complete = chunk[:chunk.rfind(b"\n") + 1]
        self.offset += len(complete)
        records: list[tuple[int, bytes | None]] = []
        for line in complete.splitlines():
            record = json.loads(line)
            if record.get("eof"):
                self.ended.add(record["c"])
                records.append((record["c"], None))
            else:
                data = base64.b64decode(record["d"])
                self.streams[record["c"]] += data
                records.append((record["c"], data))
        return records

    def pending(self, connection: int) -> bytes:
        """Bytes on ``connection`` not yet part of a complete request."""
        return bytes(self.streams[connection][self.consumed[connection]:])


class RecordingFront(Front):
    """A front whose child is the recorder, started and fenced once constructed; sends vectors
    and checks each one."""

    def __init__(self, backend: str, **server: object):
        self._recorder_root = tempfile.TemporaryDirectory(prefix="hostkit-recorder-")
        root = Path(self._recorder_root.name)
        self.log = ChildLog(root / "recorder.jsonl")
        super().__init__(backend, root=root, server={"request_header_timeout": 2, **server},
                         module={**child_program(RECORDER), "stdout_log_enabled": False,
                                 "eager_start": True,
                                 "environment_variables": {"RECORDER_LOG": str(self.log.path)}})
        try:
            self._child_port = self.wait_children(1)[-1][1]
            self.fence()
        except BaseException:
            self.stop()
            raise

    @property
    def label(self) -> str:
        """What the figures call this model and backend."""
        return f"OutOfProcess {self.backend}"

    def stop(self, timeout: float = STOP_TIMEOUT) -> int:
        code = super().stop(timeout)
        self._recorder_root.cleanup()
        return code

    def fence(self) -> int:
        """Wait until the child has logged everything sent to it so far; returns its lines."""
        with socket.create_connection((LOOPBACK, self._child_port), timeout=5) as fence:
            fence.sendall(b"\0")
            answer = b""
            while not answer.endswith(b"\n"):
                data = fence.recv(64)
                if not data:
                    break
                answer += data
        return int(answer.split()[1])

    def check(self, vector: Vector) -> Outcome:
        """Send ``vector`` and compare the three readings (see the module docstring)."""
        sent = read_h11(vector.data)
        answers_raw = exchange(self.url, vector.data, sent)
        self.fence()
        records = self.log.read()
        if vector.data.startswith(HTTP2_PREFACE) and not answers_raw.startswith(b"HTTP/"):
            # The front speaks HTTP/2 by prior knowledge (tests/hardening/h2_smuggling.py
            # has its vectors): here only that nothing reached a child.
            sent_bytes = sum(len(data) for _, data in records if data)
            return Outcome(vector, [], 0, sent_bytes,
                           [f"{sent_bytes} bytes reached the child"] if sent_bytes else [],
                           _differ(sent, read_llhttp(vector.data)))
        touched = list(dict.fromkeys(connection for connection, _ in records))
        window_bytes = sum(len(data) for _, data in records if data)
        divergences: list[str] = []
        received: list[Message] = []
        deadline = time.monotonic() + _ABORT_WAIT
        for connection in touched:
            messages, problem = self._settle(connection, deadline)
            received += messages
            if problem:
                divergences.append(problem)
        methods = [m.method for m in sent.messages]
        answers, left_over = split_responses(answers_raw, methods)
        statuses = [a.status for a in answers]
        from_child = [a for a in answers if a.header(b"x-recorder-serial") is not None]
        divergences += _compare(vector, sent, received, answers, from_child, window_bytes)
        if left_over:
            divergences.append(f"unparseable bytes after the answers: {left_over[:60]!r}")
        llhttp = read_llhttp(vector.data)
        return Outcome(vector, statuses, len(received), window_bytes, divergences,
                       _differ(sent, llhttp), b"".join(data for _, data in records if data),
                       answers)

    def _settle(self, connection: int, deadline: float) -> tuple[list[Message], str | None]:
        """The complete requests on a child connection, read by both parsers."""
        while True:
            pending = self.log.pending(connection)
            by_h11, by_llhttp = read_h11(pending), read_llhttp(pending)
            # llhttp knows a fixed table of methods ("Invalid method", or "Expected space
            # after method" past a known prefix such as GET0); any token is a method, so
            # llhttp reads the rest with the method replaced.
            stand_in = bool(by_llhttp.error and "method" in by_llhttp.error
                            and not by_h11.error)
            if stand_in:
                by_llhttp = read_llhttp(with_stand_in_methods(pending, [0, *by_h11.ends]))
            if by_h11.error or by_llhttp.error:
                # Nothing after an unreadable request can be attributed: start afresh.
                self.log.consumed[connection] = len(self.log.streams[connection])
                return list(by_h11.messages), (
                    f"the child cannot read what the module sent: {by_h11.error or ''} "
                    f"{by_llhttp.error or ''} in {pending[:120]!r}")
            if _messages_differ(by_h11.messages, by_llhttp.messages, ignore_method=stand_in):
                self.log.consumed[connection] = len(self.log.streams[connection])
                return list(by_h11.messages), (
                    f"the child's parsers disagree: h11 {_show(by_h11.messages)} / llhttp "
                    f"{_show(by_llhttp.messages)}")
            if by_h11.rest == 0 or connection in self.log.ended:
                self.log.consumed[connection] += len(pending) - by_h11.rest
                if by_h11.rest:
                    # A request cut off by the module (its client left): never completed.
                    self.log.consumed[connection] = len(self.log.streams[connection])
                return list(by_h11.messages), None
            if time.monotonic() > deadline:
                self.log.consumed[connection] = len(self.log.streams[connection])
                return list(by_h11.messages), (
                    f"the module left a child connection holding {by_h11.rest} bytes of an "
                    "incomplete request")
            time.sleep(0.02)
            self.fence()
            self.log.read()


RECORDING_APP = PROGRAMS / "recording_app.py"


class RecordingServer(Program):
    """hostkit InProcess serving the recording app, listening once constructed; sends vectors
    and checks each one (see the module docstring)."""

    def __init__(self, backend: str):
        self.backend = backend
        self.port = free_port()
        self.url = f"http://{LOOPBACK}:{self.port}"
        self._root = tempfile.TemporaryDirectory(prefix="hostkit-recording-app-")
        root = Path(self._root.name)
        self.log_path = root / "recorder.jsonl"
        self._offset = 0
        write_settings(root, {"hosting_model": "InProcess", "shutdown_timeout": 5,
                              "server": {"request_header_timeout": 2},
                              "logging": {"access_log": False}})
        super().__init__(python(str(RECORDING_APP), f"--urls={self.url}",
                                f"--async_backend={backend}"), root,
                         {"RECORDER_LOG": str(self.log_path)},
                         name=f"InProcess recording app ({backend})")
        try:
            self.wait_started(30)
        except BaseException:
            self.stop()
            raise

    @property
    def label(self) -> str:
        """What the figures call this model and backend."""
        return f"InProcess {self.backend}"

    def stop(self, timeout: float = STOP_TIMEOUT) -> int:
        code = super().stop(timeout)
        self._root.cleanup()
        return code

    def fence(self) -> None:
        """Wait until every request that reached the app so far is in its log: a request to
        the fence path, answered after the requests before it."""
        with socket.create_connection((LOOPBACK, self.port), timeout=5) as fence:
            fence.sendall(b"GET /__recorder_fence__ HTTP/1.1\r\nHost: fence\r\n"
                          b"Connection: close\r\n\r\n")
            while fence.recv(4096):
                pass

    def _received(self) -> list[Message]:
        """The requests the app logged since the last call."""
        with open(self.log_path, "rb") as log:
            log.seek(self._offset)
            chunk = log.read()
        complete = chunk[:chunk.rfind(b"\n") + 1]
        self._offset += len(complete)
        messages = []
        for line in complete.splitlines():
            record = json.loads(line)
            messages.append(Message(
                record["method"].encode("latin-1"), record["target"].encode("latin-1"),
                tuple((n.encode("latin-1"), v.encode("latin-1")) for n, v in record["headers"]),
                base64.b64decode(record["body"])))
        return messages

    def check(self, vector: Vector) -> Outcome:
        """Send ``vector`` and compare what the app got with both readings of it."""
        sent = read_h11(vector.data)
        strict = read_llhttp(vector.data)
        if strict.error and "method" in strict.error and not sent.error:
            strict = read_llhttp(with_stand_in_methods(vector.data, [0, *sent.ends]))
            stand_in = True
        else:
            stand_in = False
        answers_raw = exchange(self.url, vector.data, sent)
        time.sleep(0.01)  # a request the client did not wait for (it closed) reaches the app
        self.fence()
        received = self._received()
        if vector.data.startswith(HTTP2_PREFACE) or answers_raw.startswith(b"HTTP/1.1 101 "):
            return self._switched(vector, sent, received, answers_raw)
        methods = [m.method for m in sent.messages]
        answers, left_over = split_responses(answers_raw, methods)
        from_app = [a for a in answers if a.header(b"x-recorder-serial") is not None]
        divergences = _compare(vector, sent, received, answers, from_app, 0,
                               added=_APP_ADDED, token=False, receiver="the app")
        for index, got in enumerate(received):
            if index < len(strict.messages):
                problems = _same_request(strict.messages[index], got, added=_APP_ADDED,
                                         token=False, ignore_method=stand_in)
                divergences += [f"strict parser: {problem}" for problem in problems]
            elif strict.error is None:
                divergences.append(f"the app got {got.summary()}, which a strict parser reads "
                                   "as not complete")
        if left_over:
            divergences.append(f"unparseable bytes after the answers: {left_over[:60]!r}")
        return Outcome(vector, [a.status for a in answers], len(received), len(received),
                       divergences, _differ(sent, read_llhttp(vector.data)), b"", answers)


    def _switched(self, vector: Vector, sent: Reading, received: list[Message],
                  answers_raw: bytes) -> Outcome:
        """A vector InProcess serves in HTTP/2 (the preface, or an ``Upgrade: h2c`` answered
        101: docs/protocols.md): the app may get the upgrade request, as parsed, and nothing
        of the HTTP/1.1 bytes after it (they are not HTTP/2)."""
        divergences = []
        upgraded = answers_raw.startswith(b"HTTP/1.1 101 ")
        if len(received) > int(upgraded):
            divergences.append(f"the app got {len(received)} requests from a connection "
                               "switched to HTTP/2")
        if upgraded and received:
            divergences += _same_request(sent.messages[0], received[0], added=_APP_ADDED,
                                         token=False)
        return Outcome(vector, [101] if upgraded else [], len(received), len(received),
                       divergences, _differ(sent, read_llhttp(vector.data)), b"", [])


#: The client connection preface of HTTP/2 (RFC 9113 §3.4).
HTTP2_PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"

#: Headers the app may see that the client did not send: none (the InProcess server adds
#: nothing to a request; the absolute-form Host is checked on its own).
_APP_ADDED: frozenset[bytes] = frozenset({b"host"})


def exchange(url: str, data: bytes, sent: Reading) -> bytes:
    """Send ``data`` on a fresh connection; read until the module closes it, or until the
    answers the client's bytes call for have come (then close it ourselves)."""
    host, port = url.removeprefix("http://").split(":")
    expected = len(sent.messages)
    methods = [m.method for m in sent.messages]
    received = b""
    deadline = time.monotonic() + _EXCHANGE_TIMEOUT
    with socket.create_connection((host, int(port)), timeout=_EXCHANGE_TIMEOUT) as sock:
        sock.sendall(data)
        complete_at: float | None = None
        while True:
            now = time.monotonic()
            if now >= deadline:
                break
            if sent.error is None:
                answers, _ = split_responses(received, methods)
                if len(answers) >= expected:
                    if sent.rest == 0:
                        break
                    complete_at = complete_at or now
                    if now - complete_at >= _TAIL_WAIT:
                        break
            sock.settimeout(max(0.01, min(deadline - now, _TAIL_WAIT)))
            try:
                chunk = sock.recv(65536)
            except TimeoutError:
                continue
            except ConnectionError:
                break
            if not chunk:
                break
            received += chunk
    return received


def _compare(vector: Vector, sent: Reading, received: list[Message], answers: list,
             from_child: list, window_bytes: int, *, added: frozenset[bytes] = MODULE_HEADERS,
             token: bool = True, receiver: str = "the child") -> list[str]:
    """The divergences of one vector (the module docstring); ``received`` is what
    ``receiver`` got, ``added`` the headers it may get that the client did not send, and
    ``token`` whether each request must carry one Hostkit-Token (a child's do)."""
    problems: list[str] = []
    if len(received) != len(from_child):
        problems.append(f"{receiver} completed {len(received)} requests but the client got "
                        f"{len(from_child)} answers from it")
    for index, message in enumerate(received):
        if index >= len(sent.messages):
            problems.append(f"{receiver} got a request the module never parsed: "
                            f"{message.summary()}")
            continue
        problems += _same_request(sent.messages[index], message, added=added, token=token)
    refused = [i for i, a in enumerate(answers) if a.header(b"x-recorder-serial") is None]
    if refused:
        first = refused[0]
        if answers[first].status < 400:
            problems.append(f"the module answered {answers[first].status} itself")
        if len(answers) > first + 1:
            problems.append("answers after the module refused a request")
        if len(received) > first:
            problems.append(f"requests reached {receiver} after the module refused one")
        if first == 0 and window_bytes:
            problems.append(f"{window_bytes} bytes reached {receiver} for a refused request")
    if vector.expect == "reject" and (received or not answers or answers[0].status < 400):
        problems.append("expected the module to refuse the request")
    if vector.expect == "accept" and len(from_child) != len(sent.messages):
        problems.append(f"expected all {len(sent.messages)} requests forwarded")
    return problems


def forwarded_form(message: Message) -> tuple[bytes, bytes]:
    """The target and Host a request should reach the child with (RFC 9112 §3.2.2): an
    absolute-form target becomes origin-form and its authority the Host."""
    host = next((v for n, v in message.headers if n.lower() == b"host"), b"")
    if not message.target.lower().startswith((b"http://", b"https://")):
        return message.target, host
    parts = urllib.parse.urlsplit(message.target)
    target = (parts.path or b"/") + (b"?" + parts.query if parts.query else b"")
    return target, parts.netloc


def _same_request(parsed: Message, got: Message, *, added: frozenset[bytes] = MODULE_HEADERS,
                  token: bool = True, ignore_method: bool = False) -> list[str]:
    """How ``got`` (what the child or the app received) differs from the client's request
    ``parsed``: ``added`` are headers it may get that the client did not send; with ``token``
    it must carry one Hostkit-Token; without a Host in ``parsed`` (HTTP/1.0) the app gets
    none, a child an empty one."""
    problems = []
    target, host = forwarded_form(parsed)
    method = got.method if ignore_method else parsed.method
    if (method, target, parsed.body) != (got.method, got.target, got.body):
        problems.append(f"the module parsed {parsed.summary()} but it got {got.summary()}")
    client = collections.Counter(_header_key(name, value) for name, value in parsed.headers)
    for name, value in got.headers:
        if name in added:
            continue
        if client[_header_key(name, value)] <= 0:
            problems.append(f"it got a header the client did not send: {name!r}: "
                            f"{value[:40]!r}")
        client[_header_key(name, value)] -= 1
    hosts = [value for name, value in got.headers if name == b"host"]
    sent_host = any(name.lower() == b"host" for name, _ in parsed.headers) or host
    if hosts != [host] and (token or sent_host or hosts):
        problems.append(f"it got Host {hosts}, not {host!r}")
    if token:
        tokens = [value for name, value in got.headers if name == b"hostkit-token"]
        if len(tokens) != 1:
            problems.append(f"the child got {len(tokens)} Hostkit-Token headers")
    return problems


def _header_key(name: bytes, value: bytes) -> tuple[bytes, bytes]:
    """A header as compared: the name in lower case, the value without surrounding
    whitespace (and in lower case for Transfer-Encoding, whose coding names h11 lowers)."""
    name = name.lower()
    value = value.strip(b" \t")
    return name, value.lower() if name == b"transfer-encoding" else value


def _messages_differ(first: Iterable[Message], second: Iterable[Message],
                     ignore_method: bool = False) -> bool:
    def key(messages: Iterable[Message]) -> list[tuple[object, ...]]:
        return [(b"" if ignore_method else m.method, m.target, m.body,
                 tuple((n.lower(), v.strip()) for n, v in m.headers)) for m in messages]
    return key(first) != key(second)


def _differ(by_h11: Reading, by_llhttp: Reading) -> bool:
    return _messages_differ(by_h11.messages, by_llhttp.messages) or \
        (by_h11.error is None) != (by_llhttp.error is None)


def _show(messages: Iterable[Message]) -> str:
    return "[" + ", ".join(m.summary() for m in messages) + "]"


Recording = RecordingFront | RecordingServer


def fuzz(front: Recording, examples: int,
         outcomes: list[Outcome] | None = None) -> list[Outcome]:
    """``examples`` generated mutations (:mod:`tests.hardening.mutations`) through ``front``,
    each outcome appended to ``outcomes`` (and returned).

    Raises ``AssertionError`` with the smallest vector hypothesis finds for a divergence.
    """
    from hypothesis import HealthCheck, given, settings

    from tests.hardening.mutations import mutated_requests

    outcomes = [] if outcomes is None else outcomes

    @settings(max_examples=examples, deadline=None, database=None, print_blob=True,
              suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
    @given(mutated_requests())
    def one(data: bytes) -> None:
        outcome = front.check(Vector("generated", repr(data[:80]), data))
        outcomes.append(outcome)
        assert not outcome.divergences, f"{outcome.describe()}\nvector: {data!r}"

    one()
    return outcomes


@dataclasses.dataclass
class Figures:
    """A run of vectors through one front."""

    backend: str                 # the model and backend ("InProcess trio")
    source: str                  # "corpus" or "mutations"
    outcomes: list[Outcome]
    failure: str = ""            # the divergence hypothesis stopped on, shrunk

    @property
    def divergent(self) -> list[Outcome]:
        return [o for o in self.outcomes if o.divergences]

    def lines(self) -> list[str]:
        refused = [o for o in self.outcomes if o.refused]
        statuses = collections.Counter(o.statuses[0] for o in refused)
        silent = sum(not o.statuses for o in self.outcomes)
        leaked = sum(o.child_bytes > 0 for o in refused)
        return [
            f"smuggling {self.source} ({self.backend}): {len(self.outcomes)} vectors, "
            f"{len(self.divergent) + bool(self.failure)} divergences; "
            f"{sum(o.accepted for o in self.outcomes)} forwarded, {len(refused)} refused "
            f"({', '.join(f'{n}x {s}' for s, n in sorted(statuses.items()))}) with "
            f"{leaked} bytes-to-the-child cases, {silent} waiting for more bytes when the "
            f"client stopped; {sum(o.input_disagreement for o in self.outcomes)} read "
            "differently by h11 and llhttp on the way in",
            *(f"  DIVERGENCE {o.describe()}" for o in self.divergent[:20]),
            *([f"  DIVERGENCE {self.failure}"] if self.failure else [])]

    def problems(self) -> list[str]:
        found = [o.describe() for o in self.divergent]
        return found + ([self.failure] if self.failure else [])


def run_corpus(front: Recording, vectors: list[Vector]) -> Figures:
    return Figures(front.label, "corpus", [front.check(v) for v in vectors])


def run_mutations(front: Recording, examples: int) -> Figures:
    """:func:`fuzz`, with a divergence reported instead of raised."""
    collected: list[Outcome] = []
    try:
        fuzz(front, examples, collected)
    except AssertionError as error:
        return Figures(front.label, "mutations", collected, str(error)[:2000])
    return Figures(front.label, "mutations", collected)
