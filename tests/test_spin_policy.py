"""native/runtime/dn_spin.c: when a C loop's idle pass spins and when it
sleeps (dn_spin_idle), as the master's switch thread asks it."""

from __future__ import annotations

from aiodocknet.native._lib import ffi, lib

ON = 0


def _spin(spin_ns: int, misses: int = 3) -> object:
    s = ffi.new("struct dn_spin *")
    lib.dn_spin_open(s, spin_ns, misses, 0)  # the host never counts as crowded
    return s


def test_no_spin_sleeps_at_the_first_idle_pass() -> None:
    """--spin-us 0 (an operator saving CPU): the first idle pass says sleep,
    with no sched_yield passes before it; frames a rate limiter holds still
    keep the loop up (their timer is due soon)."""
    s = _spin(0)
    assert lib.dn_spin_idle(s, 0, 0) == lib.DN_SPIN_SPUN_OUT
    lib.dn_spin_close(s)
    held = _spin(0)
    assert lib.dn_spin_idle(held, 0, 1) == ON
    lib.dn_spin_close(held)


def test_a_spin_keeps_the_loop_up_until_it_runs_out() -> None:
    """spin_ns of a second: the idle passes spin (yielding) and none says
    sleep; the verdict comes from the clock, looked at every 16 passes."""
    s = _spin(1_000_000_000)
    assert all(lib.dn_spin_idle(s, 0, 0) == ON for _ in range(64))
    lib.dn_spin_close(s)
    short = _spin(1)
    verdicts = [lib.dn_spin_idle(short, 0, 0) for _ in range(16)]
    assert verdicts[0] == ON and verdicts[-1] == lib.DN_SPIN_SPUN_OUT, verdicts
    lib.dn_spin_close(short)
