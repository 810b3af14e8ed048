"""Whether the host's CPUs are contended: a spinning poller's question.

Spinning for an answer pays while a core would otherwise idle; on a host
where tasks wait for a CPU (a mesh of Python services on two cores) the
spin takes the core from the very service it waits for. The runnable count
of ``/proc/loadavg`` against the cores says which. The check is
``native/dn_crowding.c``, the one the master's switch thread makes too.
"""

from __future__ import annotations

from ._lib import ffi, lib

__all__ = ["HostCrowding"]


class HostCrowding:
    def __init__(self, interval: float) -> None:
        self._c = ffi.new("struct dn_crowding *")
        # With no /proc the host never counts as crowded.
        lib.dn_crowding_open(self._c, int(interval * 1e9))
        self.cpus: int = self._c.cpus

    def close(self) -> None:
        lib.dn_crowding_close(self._c)

    def crowded(self, now: float, slack: int) -> bool:
        """More than cpus + slack tasks runnable (the caller among them).
        Looked up at most every interval seconds (now: time.monotonic())."""
        return bool(lib.dn_crowding_crowded(self._c, int(now * 1e9), slack))
