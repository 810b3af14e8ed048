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


class HostCrowding:
    def __init__(self, interval: float) -> None:
        self.interval = interval
        self.cpus = len(os.sched_getaffinity(0))
        self._checked = 0.0
        self._runnable = 0
        # Kept open: a pread costs 1.6 µs here, an open/read/close 12.5.
        try:
            self._fd: int | None = os.open("/proc/loadavg", os.O_RDONLY | os.O_CLOEXEC)
        except OSError:
            self._fd = None  # no /proc: never crowded, as before a look

    def close(self) -> None:
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None

    def crowded(self, now: float, slack: int) -> bool:
        """More than cpus + slack tasks runnable (the caller among them).
        Looked up at most every interval seconds (now: time.monotonic())."""
        if now >= self._checked + self.interval and self._fd is not None:
            self._checked = now
            try:
                self._runnable = int(os.pread(self._fd, 128, 0).split()[3].split(b"/")[0])
            except (OSError, ValueError, IndexError):
                self._runnable = 0
        return self._runnable > self.cpus + slack
