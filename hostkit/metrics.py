"""Prometheus metrics of a host (SPEC §9 ``[metrics]``), with the official ``prometheus_client``.

One :class:`Metrics` per process, built by ``HostBuilder.build()`` (:func:`metrics_for`) when
``[metrics] urls`` is set, for every role but ``CHILD`` (its front counts its requests):

- the process that owns the public listener (an InProcess ``SERVE`` host, an OutOfProcess
  ``FRONT``) counts its requests: :meth:`Metrics.request_started` and
  :meth:`Metrics.request_finished` around each one, :meth:`Metrics.queued` while requests wait
  for ``max_concurrent_requests``, :meth:`Metrics.set_ready` as its readiness changes;
- the owner of app processes (the supervisor's pool, the module's child manager) counts their
  starts, exits and recycles by reason.

Who serves the values (:mod:`hostkit.metrics_listener`): a host that is not a supervisor's
worker serves its own. A supervisor serves the sum over its workers: around its run,
:meth:`Metrics.collecting_workers` makes a fresh directory, named to every worker in
``PROMETHEUS_MULTIPROC_DIR``, so each worker's ``prometheus_client`` keeps its values in files
there (its multiprocess mode, made for pre-fork servers such as gunicorn); the supervisor
reads them with its own values at each scrape. A worker's gauges go when it exits, its counts
are kept (folded into one file per kind, so the directory does not grow with recycling), and
the directory is removed when the supervisor stops. An app that uses ``prometheus_client``
itself in a worker writes there too, so its values are summed and served as well.

The calls per request are cheap (a dictionary lookup and a few value updates) and may be made
from any thread; a request's method and status are reduced to a few label values, so a
client cannot make the number of series grow.
"""

from __future__ import annotations

import contextlib
import glob
import logging
import os
import shutil
import tempfile
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING

from hostkit.worker_contract import current_worker

# prometheus_client is imported where it is used, not here: importing it takes about 0.1 s,
# which a host without metrics does not pay (this module is imported by every host).
if TYPE_CHECKING:
    from prometheus_client import CollectorRegistry, Counter
    from prometheus_client.metrics_core import Metric

    from hostkit.configuration import Configuration

logger = logging.getLogger("hostkit.metrics")

#: ``prometheus_client``'s own variable: the directory of a process's values in its
#: multiprocess mode; read when ``prometheus_client`` is imported, so it is in a worker's
#: environment from its start.
MULTIPROCESS_DIRECTORY_VARIABLE = "PROMETHEUS_MULTIPROC_DIR"

#: The method label: these, or ``OTHER``.
METHODS = ("GET", "HEAD", "POST", "PUT", "DELETE", "CONNECT", "OPTIONS", "TRACE", "PATCH")
OTHER_METHOD = "OTHER"
#: The status class label by ``status // 100``; a status outside 100..599 is ``other``.
_STATUS_CLASSES = ("other", "1xx", "2xx", "3xx", "4xx", "5xx")

#: Seconds: from a trivial request on loopback to a slow one.
DURATION_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0,
                    2.5, 5.0, 10.0, 30.0)

#: ``kind`` of :meth:`Metrics.process_started` and the others.
WORKER_PROCESS = "worker"
CHILD_PROCESS = "child"
#: Why a process exited: a crash (it exited unasked once serving), it failed to start (an
#: exit or no ready within the start limit), it was stopped (drain, offline), or it was
#: stopped because another replaced it (:data:`RECYCLE_REASONS`).
EXIT_REASONS = ("crash", "startup_failure", "stop", "recycle")
#: Why a process was replaced by a new one.
RECYCLE_REASONS = ("max_requests", "max_lifetime", "max_memory", "health", "reload")

# The kinds of value files a dead worker leaves whose values are kept (summed): a worker's
# live gauges are removed at its death instead.
_KEPT_FILE_KINDS = ("counter", "histogram", "summary")
_READY_METRIC = "hostkit_ready"


def recycle_reason(description: str) -> str:
    """The :data:`RECYCLE_REASONS` label of a recycle's description (the log line's reason,
    e.g. from :class:`hostkit.processes.recycling.RecyclePolicy`): the limit it names, a
    failed health check, else ``reload`` (the configuration or the code changed)."""
    if description in RECYCLE_REASONS:
        return description
    for limit in ("max_requests", "max_lifetime", "max_memory"):
        if limit in description:
            return limit
    return "health" if "health" in description else "reload"


def exit_reason(*, served: bool, asked_to_stop: bool, replaced: bool,
                owner_stopping: bool) -> str:
    """The :data:`EXIT_REASONS` label of a reaped app process: whether it had ``served``
    (was ready and given requests), was ``asked_to_stop`` (its owner signalled it), was
    ``replaced`` (retired by a recycle), and whether its owner is stopping as a whole."""
    if not served:
        return "stop" if owner_stopping else "startup_failure"
    if not asked_to_stop:
        return "crash"
    return "recycle" if replaced else "stop"


class Metrics:
    """This process's metrics; see the module docstring.

    ``registry`` holds this process's own values (tests read them there); :meth:`exposition`
    is what the metrics listener answers. ``serves`` is False in a supervisor's worker: its
    supervisor serves its values, summed with the other workers'.
    """

    def __init__(self) -> None:
        from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

        self.registry = CollectorRegistry(auto_describe=False)
        self.serves = current_worker() is None
        self._workers: _WorkersCollector | None = None
        registry = self.registry
        self._requests = Counter(
            "hostkit_requests", "Requests answered, by method and status class",
            ("method", "status_class"), registry=registry)
        self._duration = Histogram(
            "hostkit_request_duration_seconds",
            "Seconds from a request's head to the end of its response",
            buckets=DURATION_BUCKETS, registry=registry)
        self._in_flight = Gauge(
            "hostkit_requests_in_flight", "Requests being served now", registry=registry,
            multiprocess_mode="livesum")
        self._queued = Gauge(
            "hostkit_requests_queued", "Requests waiting for server.max_concurrent_requests",
            registry=registry, multiprocess_mode="livesum")
        # livemax: a supervisor's workers are ready when one is (a dead one's value goes).
        self._ready = Gauge(
            _READY_METRIC, "1 while the app is ready for traffic, else 0", registry=registry,
            multiprocess_mode="livemax")
        self._starts = Counter(
            "hostkit_process_starts", "App processes started, by kind (worker, child)",
            ("kind",), registry=registry)
        self._exits = Counter(
            "hostkit_process_exits", "App processes that exited, by kind and reason",
            ("kind", "reason"), registry=registry)
        self._recycles = Counter(
            "hostkit_process_recycles",
            "App processes replaced by a new one, by kind and reason", ("kind", "reason"),
            registry=registry)
        # (method, status // 100) -> its counter, for the standard methods only: bounded.
        self._request_counters: dict[tuple[str, int], Counter] = {}
        self._in_flight_inc = self._in_flight.inc
        self._in_flight_dec = self._in_flight.dec
        self._observe = self._duration.observe

    # -- per request ------------------------------------------------------------------------

    def request_started(self) -> None:
        """A request's head arrived and it will be served (not a health path): in flight +1."""
        self._in_flight_inc()

    def request_finished(self, method: str, status: int, seconds: float) -> None:
        """The request that :meth:`request_started` counted ended with ``status`` after
        ``seconds``: in flight -1, counted by method and status class, its duration
        observed."""
        self._in_flight_dec()
        counter = self._request_counters.get((method, status // 100))
        if counter is None:
            counter = self._request_counter(method, status)
        counter.inc()
        self._observe(seconds)

    def _request_counter(self, method: str, status: int) -> Counter:
        index = status // 100
        status_class = _STATUS_CLASSES[index] if 1 <= index <= 5 else _STATUS_CLASSES[0]
        label = method if method in METHODS else OTHER_METHOD
        counter = self._requests.labels(label, status_class)
        if label is method and status_class != _STATUS_CLASSES[0]:
            self._request_counters[(method, index)] = counter
        return counter

    def queued(self, delta: int) -> None:
        """``delta`` more (or, negative, fewer) requests wait for ``max_concurrent_requests``."""
        self._queued.inc(delta)

    def set_ready(self, ready: bool) -> None:
        """Whether this process's app is ready for traffic (what ``readiness_path`` says)."""
        self._ready.set(1 if ready else 0)

    # -- app processes ----------------------------------------------------------------------

    def process_started(self, kind: str) -> None:
        """A process of ``kind`` (:data:`WORKER_PROCESS`, :data:`CHILD_PROCESS`) was started."""
        self._starts.labels(kind).inc()

    def process_exited(self, kind: str, reason: str, pid: int | None = None) -> None:
        """A process of ``kind`` exited for ``reason`` (:data:`EXIT_REASONS`; anything else
        is ``other``). Called once it is reaped; with ``pid``, a supervisor drops that
        worker's gauges from the sum and folds its counts into those of the dead."""
        self._exits.labels(kind, reason if reason in EXIT_REASONS else "other").inc()
        if self._workers is not None and kind == WORKER_PROCESS and pid is not None:
            self._workers.worker_exited(pid)

    def process_recycled(self, kind: str, reason: str) -> None:
        """A process of ``kind`` was replaced by a new one, for ``reason`` (a
        :data:`RECYCLE_REASONS` label or the description it is read from,
        :func:`recycle_reason`). Called once the new one serves."""
        self._recycles.labels(kind, recycle_reason(reason)).inc()

    # -- serving ----------------------------------------------------------------------------

    @contextlib.contextmanager
    def collecting_workers(self) -> Iterator[dict[str, str]]:
        """Called by the supervisor around its run (before its first worker starts, left
        after its last is reaped): yields the variables to add to every worker's
        environment. Meanwhile :meth:`exposition` is the sum of this process's values and
        its workers'. The directory is removed on the way out."""
        directory = Path(tempfile.mkdtemp(prefix="hostkit-metrics-"))
        self._workers = _WorkersCollector(self.registry, directory)
        try:
            yield {MULTIPROCESS_DIRECTORY_VARIABLE: str(directory)}
        finally:
            self._workers = None
            shutil.rmtree(directory, ignore_errors=True)

    def exposition(self, accept: str = "") -> tuple[bytes, str]:
        """The values this process serves (its own, or a supervisor's sum over its workers)
        and their content type: the Prometheus text format, or OpenMetrics when ``accept``
        (the scraper's ``Accept`` header) asks for it. Called per scrape."""
        from prometheus_client.exposition import choose_encoder

        encode, content_type = choose_encoder(accept)
        workers = self._workers
        return encode(self.registry if workers is None else workers.served), content_type


class _WorkersCollector:
    """A supervisor's values: its own ``registry``'s, summed with its workers', read from the
    files they keep in ``directory``."""

    def __init__(self, registry: CollectorRegistry, directory: Path):
        from prometheus_client import CollectorRegistry

        self.own = registry
        self.directory = directory
        self.served = CollectorRegistry(auto_describe=False)
        self.served.register(self)

    def collect(self) -> Iterable[Metric]:
        """Called per scrape. Families of the same name are merged, samples of the same name
        and labels summed; ``hostkit_ready`` is 1 when this process and one live worker are
        ready."""
        from prometheus_client.metrics_core import Metric
        from prometheus_client.samples import Sample

        families: dict[str, Metric] = {}
        sums: dict[str, dict[tuple[str, tuple[tuple[str, str], ...]], float]] = {}
        workers_ready = 0.0
        for source, family in self._families():
            merged = families.get(family.name)
            if merged is None:
                merged = families[family.name] = Metric(family.name, family.documentation,
                                                        family.type)
                sums[family.name] = {}
            for sample in family.samples:
                if sample.name.endswith("_created"):  # a start time: nothing to sum
                    continue
                if family.name == _READY_METRIC:
                    if source == "workers":
                        workers_ready = max(workers_ready, sample.value)
                    continue
                key = (sample.name, tuple(sorted(sample.labels.items())))
                sums[family.name][key] = sums[family.name].get(key, 0.0) + sample.value
        for name, merged in families.items():
            if name == _READY_METRIC:
                own = self.own.get_sample_value(_READY_METRIC) or 0.0
                merged.samples = [Sample(name, {}, min(own, workers_ready))]
            else:
                merged.samples = [Sample(sample_name, dict(labels), value)
                                  for (sample_name, labels), value in sums[name].items()]
        return families.values()

    def _families(self) -> Iterator[tuple[str, Metric]]:
        from prometheus_client.multiprocess import MultiProcessCollector

        for family in self.own.collect():
            yield "own", family
        files = glob.glob(os.path.join(self.directory, "*.db"))
        for family in MultiProcessCollector.merge(files, accumulate=True):
            yield "workers", family

    def worker_exited(self, pid: int) -> None:
        """Called once worker ``pid`` is reaped: its live gauges leave the sum, and its kept
        values are added to the files of the dead (one per kind), so the number of files
        stays that of the live workers however many are recycled."""
        from prometheus_client.multiprocess import mark_process_dead

        mark_process_dead(pid, str(self.directory))
        for kind in _KEPT_FILE_KINDS:
            dead = self.directory / f"{kind}_{pid}.db"
            if not dead.exists():
                continue
            folded = self.directory / f"{kind}_dead.db"
            try:
                _fold(folded, dead)
            except (OSError, ValueError) as error:  # kept as it is: still summed, just slower
                logger.warning("cannot fold the metrics of worker pid %d: %s", pid, error)


def _fold(folded: Path, dead: Path) -> None:
    """Write ``folded`` + ``dead`` (value files of one kind) to ``folded`` and remove ``dead``.

    The sum is written to a file the scrape does not read (not ``*.db``) and then renamed, so
    a scrape sees either the old pair or the new file.
    """
    from prometheus_client.mmap_dict import MmapedDict, mmap_key
    from prometheus_client.multiprocess import MultiProcessCollector

    sources = [str(path) for path in (folded, dead) if path.exists()]
    merged = MultiProcessCollector.merge(sources, accumulate=False)
    writing = folded.with_suffix(".writing")
    writing.unlink(missing_ok=True)
    file = MmapedDict(str(writing))
    try:
        for family in merged:
            for sample in family.samples:
                key = mmap_key(family.name, sample.name, list(sample.labels),
                               list(sample.labels.values()), family.documentation)
                file.write_value(key, sample.value, 0.0)
    finally:
        file.close()
    os.replace(writing, folded)
    dead.unlink()


def in_multiprocess_mode() -> bool:
    """Whether ``prometheus_client`` keeps this process's values in files (it found
    :data:`MULTIPROCESS_DIRECTORY_VARIABLE` when it was imported)."""
    from prometheus_client import values

    return bool(getattr(values.ValueClass, "_multiprocess", False))


def metrics_for(configuration: Configuration) -> Metrics | None:
    """This process's :class:`Metrics`, built once by ``HostBuilder.build()`` (not for a
    ``CHILD``). ``None``: ``[metrics] urls`` is empty, or this is a worker of a supervisor
    that collects no metrics (it started the worker without a directory for them)."""
    if not configuration.options.metrics.urls:
        return None
    if current_worker() is not None and not in_multiprocess_mode():
        return None
    return Metrics()


__all__ = [
    "CHILD_PROCESS", "DURATION_BUCKETS", "EXIT_REASONS", "METHODS",
    "MULTIPROCESS_DIRECTORY_VARIABLE", "Metrics", "OTHER_METHOD", "RECYCLE_REASONS",
    "WORKER_PROCESS", "exit_reason", "in_multiprocess_mode", "metrics_for", "recycle_reason",
]
