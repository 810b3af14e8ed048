"""native/runtime/dn_crowding.c: the look a spinning poller (dn_spin) takes
at whether tasks wait for a core, against real busy processes."""

from __future__ import annotations

import subprocess
import sys
import time

from aiodocknet.native._lib import ffi, lib


class HostCrowding:
    """dn_crowding, as dn_spin asks it."""

    def __init__(self, interval: float) -> None:
        self._c = ffi.new("struct dn_crowding *")
        # With no /proc the host never counts as crowded.
        lib.dn_crowding_open(self._c, int(interval * 1e9))
        self.cpus: int = self._c.cpus

    def close(self) -> None:
        lib.dn_crowding_close(self._c)

    def crowded(self, now: float, slack: int) -> bool:
        return bool(lib.dn_crowding_crowded(self._c, int(now * 1e9), slack))


def _seen_within(c: HostCrowding, slack: int, want: bool, seconds: float = 10.0) -> bool:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if c.crowded(time.monotonic(), slack) == want:
            return True
        time.sleep(0.005)
    return False


def test_busy_processes_crowd_the_host_and_their_end_clears_it() -> None:
    """More CPU-bound processes than cores: crowded (at a slack of 0 and of
    1); once they are gone, not crowded again."""
    c = HostCrowding(0.0)
    busy = [subprocess.Popen([sys.executable, "-c", "while True: pass"]) for _ in range(c.cpus + 3)]
    try:
        assert _seen_within(c, 0, True)
        assert _seen_within(c, 1, True)
    finally:
        for p in busy:
            p.kill()
        for p in busy:
            p.wait()
    assert _seen_within(c, 1, False)
    c.close()


def test_a_look_is_kept_for_the_interval() -> None:
    """Within the interval the answer is the last look's, whatever the host
    does meanwhile (a look costs a read of /proc; a spin checks often)."""
    c = HostCrowding(3600.0)
    now = time.monotonic()
    first = c.crowded(now, 0)
    busy = [subprocess.Popen([sys.executable, "-c", "while True: pass"]) for _ in range(c.cpus + 3)]
    try:
        # A fresh look sees the busy processes: the host has changed...
        fresh = HostCrowding(0.0)
        assert _seen_within(fresh, 0, True)
        fresh.close()
        # ...and the kept look still gives the first answer.
        assert c.crowded(now + 1.0, 0) == first
    finally:
        for p in busy:
            p.kill()
        for p in busy:
            p.wait()
    c.close()
