"""Processes hostkit starts and owns: an OutOfProcess front's children, a supervisor's workers.

Small modules, one job each, shared by whoever starts programs (plugins reach them through
:mod:`hostkit.plugin`):

- :mod:`~hostkit.processes.managed`: :class:`ManagedProcess`, one program started from a
  :class:`ProcessSpec`, forked, read and reaped by a thread of its own, stopped with a grace
  period; it dies with its owner, even one killed with SIGKILL;
- :mod:`~hostkit.processes.launcher`: the parent-death launcher every such program starts
  through;
- :mod:`~hostkit.processes.command`: this program's own command line, to start it again;
- :mod:`~hostkit.processes.ports`: a free loopback port for a program to listen on;
- :mod:`~hostkit.processes.exits`: how an exit status reads in a log line;
- :mod:`~hostkit.processes.rapid_fail`: the rolling-window failure budget
  (``rapid_fails_per_minute``);
- :mod:`~hostkit.processes.recycling`: when a process that runs the app is recycled
  (``max_requests``, ``max_lifetime``, ``max_memory``);
- :mod:`~hostkit.processes.output_relay`: a process's output, line by line and prefixed with
  its pid, to the owner's stderr, never blocking the process.

What a process is *for* (a child's port and token, app_offline, a worker's sockets) is its
owner's business: nothing here knows it.
"""

from __future__ import annotations

from hostkit.processes.command import this_program
from hostkit.processes.exits import describe_exit
from hostkit.processes.managed import OUTPUT_TAIL_BYTES, ManagedProcess, ProcessSpec
from hostkit.processes.ports import ephemeral_ports, free_loopback_port
from hostkit.processes.rapid_fail import Exhausted, RapidFailBudget
from hostkit.processes.recycling import MEMORY_CHECK_INTERVAL, RecyclePolicy, resident_memory

__all__ = [
    "Exhausted", "MEMORY_CHECK_INTERVAL", "ManagedProcess", "RecyclePolicy", "resident_memory", "OUTPUT_TAIL_BYTES", "ProcessSpec", "RapidFailBudget",
    "describe_exit", "ephemeral_ports", "free_loopback_port", "this_program",
]
