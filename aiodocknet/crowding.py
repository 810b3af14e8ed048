"""Whether the host's CPUs are contended: a spinning poller's question.

Spinning for an answer pays while a core would otherwise idle; on a host
where tasks wait for a CPU (a mesh of Python services on two cores) the
spin takes the core from the very service it waits for. The runnable count
of ``/proc/loadavg`` against the cores says which. (The kernel's pressure
stall counters were tried: on this kind of VM they move in bursts tens of
milliseconds apart, too coarse for a look every few milliseconds.)
"""

from __future__ import annotations

import os

__all__ = ["HostCrowding"]

# Runnable tasks beyond the cores before the host counts as crowded (a
# master's switch thread and two pollers on two cores is still a fair
# fight).
RUNNABLE_SLACK = 1


class HostCrowding:
    def __init__(self, interval: float) -> None:
        self.interval = interval
        self._limit = len(os.sched_getaffinity(0)) + RUNNABLE_SLACK
        self._checked = 0.0
        self._crowded = False

    def crowded(self, now: float) -> bool:
        """Looked up at most every interval seconds (now: time.monotonic())."""
        if now < self._checked + self.interval:
            return self._crowded
        self._checked = now
        try:
            with open("/proc/loadavg", "rb") as f:
                runnable = int(f.read().split()[3].split(b"/")[0])
        except (OSError, ValueError, IndexError):
            runnable = 0
        self._crowded = runnable > self._limit
        return self._crowded
