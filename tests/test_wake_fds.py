"""WakeFds: the eventfds a process's fast channels share, one per endpoint."""

from __future__ import annotations

import os

from aiodocknet.native.fastchan import WakeFds


def is_open(fd: int) -> bool:
    try:
        os.fstat(fd)
    except OSError:
        return False
    return True


def test_each_offer_brings_a_copy_and_the_held_one_stays() -> None:
    wakes = WakeFds()
    first, second = os.eventfd(0), os.eventfd(0)
    held = wakes.take("self", first)
    assert wakes.take("self", second) is held and held.users == 2
    assert not is_open(second) and is_open(first)
    wakes.drop("self", held)
    assert is_open(first)
    wakes.drop("self", held)
    assert not is_open(first) and len(wakes) == 0


def test_after_the_last_channel_the_next_offer_is_kept() -> None:
    """The last channel on an eventfd closes it; a later channel must keep
    the copy its offer brought, not the closed number (which the process
    may have reused for another descriptor by then)."""
    wakes = WakeFds()
    gone = os.eventfd(0)
    wakes.drop("self", wakes.take("self", gone))
    assert not is_open(gone)
    fresh = os.eventfd(0)
    held = wakes.take("self", fresh)
    try:
        assert held.fd == fresh and is_open(fresh)
    finally:
        wakes.drop("self", held)
    assert not is_open(fresh)


def test_forget_leaves_the_holders_their_descriptor() -> None:
    """A peer endpoint gone: channels to it keep the old eventfd until they
    close; one to the next endpoint at that address gets its own."""
    key = "10.77.0.2"
    wakes = WakeFds()
    fd = os.eventfd(0)
    held = wakes.take(key, fd)
    wakes.forget(key)
    assert is_open(fd) and len(wakes) == 0
    replacement = os.eventfd(0)
    other = wakes.take(key, replacement)
    assert other is not held and other.fd == replacement
    wakes.drop(key, held)
    assert not is_open(fd) and is_open(replacement)
    wakes.drop(key, other)
    assert not is_open(replacement)
