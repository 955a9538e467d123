"""One child process of the front: a managed process with its contract (port, token)."""

from __future__ import annotations

from pathlib import Path

from hostkit.plugin import OUTPUT_TAIL_BYTES, ChildContract, ManagedProcess

from hostkit_outofprocess.children.stdout_log import read_tail


class Child:
    """A started child: its :class:`~hostkit.plugin.ManagedProcess`, the contract it was
    started with, where its output goes, and what its recycling counts."""

    __slots__ = ("process", "contract", "log_path", "failure_counted", "served", "recycle_at",
                 "request_limit")

    def __init__(self, process: ManagedProcess, contract: ChildContract,
                 log_path: Path | None = None):
        self.process = process
        self.contract = contract
        #: the stdout log file when ``stdout_log_enabled``; else the output is kept in memory.
        self.log_path = log_path
        #: True once this child's failure counted against the rapid-fail budget (once only).
        self.failure_counted = False
        #: requests handed to it so far (``ChildManager.acquire``).
        self.served = 0
        #: ``workers.max_requests`` plus this child's jitter; ``None``: never recycled for it.
        self.request_limit: int | None = None
        #: the value of :attr:`served` that recycles it (``request_limit``, later again after
        #: a replacement that failed); ``None``: never.
        self.recycle_at: int | None = None

    @property
    def pid(self) -> int:
        return self.process.pid

    @property
    def port(self) -> int:
        return self.contract.port

    @property
    def running(self) -> bool:
        """Started and not reaped yet (:attr:`ManagedProcess.running`, read directly: every
        request asks)."""
        return not self.process.exited.is_set()

    def output(self) -> str:
        """The latest output of the child, up to ``OUTPUT_TAIL_BYTES``."""
        if self.log_path is not None:
            return read_tail(self.log_path, OUTPUT_TAIL_BYTES)
        return self.process.output()

    def describe_exit(self) -> str:
        return self.process.describe_exit()
