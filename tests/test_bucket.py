"""TokenBucket: the fast channels' rate limits, on the switch's own token
arithmetic (native/switch/dn_limit.c) refilled from the clock. No timed
assertions: every bound allows for however long the test took."""

from __future__ import annotations

import time

from aiodocknet.native.bucket import SEGMENT, TokenBucket
from aiodocknet.validate import MAX_BITS_PER_S

JUMBO = 9018


def test_no_limit_is_not_limited() -> None:
    assert not TokenBucket().limited
    assert not TokenBucket(-5, -1).limited  # nothing sane to enforce: none
    assert TokenBucket(8_000_000).limited
    assert TokenBucket(0, 100).limited


def test_a_new_bucket_holds_its_burst_and_no_more() -> None:
    """The switch's burst: 10 ms of the rate, at least two jumbo frames."""
    slow = TokenBucket(8 * 100_000)  # 100 kB/s: 1 kB in 10 ms, below the floor
    assert slow.burst_bytes == 2 * JUMBO
    assert slow.allowance(10**9) == 2 * JUMBO
    fast = TokenBucket(8 * 100_000_000)  # 100 MB/s: 1 MB in 10 ms
    assert fast.burst_bytes == 1_000_000
    time.sleep(0.02)
    # A full bucket does not grow past its burst however long it waits.
    assert fast.allowance(10**9) == 1_000_000
    assert fast.allowance(123) == 123  # asking spends nothing


def test_spent_tokens_come_back_at_the_rate() -> None:
    rate = 1_000_000  # bytes per second
    b = TokenBucket(8 * rate)
    t0 = time.monotonic()  # before the refill that read the clock last
    full = b.allowance(10**9)
    b.spend(full)
    first = b.allowance(10**9)
    elapsed = time.monotonic() - t0
    assert first <= rate * elapsed + 1, (first, elapsed)
    # Gone into debt: the debt is paid back before anything may go.
    b.spend(3 * full)
    assert b.allowance(10**9) == 0
    wait = b.delay()
    assert (SEGMENT + 3 * full) / rate - (time.monotonic() - t0) - 1e-6 <= wait <= (SEGMENT + 3 * full) / rate + 1e-6


def test_packets_count_one_per_started_segment() -> None:
    b = TokenBucket(0, 1000)  # 1000 packets/s: a burst of 10
    assert b.burst_pkts == 10
    assert b.allowance(10**9) == 10 * SEGMENT
    for _ in range(9):
        b.spend(1)  # a one-byte write is a packet all the same
    assert b.allowance(10**9) <= 2 * SEGMENT
    b.spend(SEGMENT + 1)  # two packets
    assert b.allowance(10**9) == 0
    assert b.delay() >= 0.0005


def test_delay_has_a_floor_and_says_when_a_segment_fits() -> None:
    b = TokenBucket(8 * 1_000_000)
    assert b.delay() == 0.0005  # tokens now: the floor, not zero
    t0 = time.monotonic()
    b.spend(b.allowance(10**9))
    wait = b.delay()
    # A segment's worth at 1 MB/s, less what came back meanwhile.
    assert SEGMENT / 1_000_000 - (time.monotonic() - t0) - 1e-6 <= wait <= SEGMENT / 1_000_000 + 1e-6


def test_rates_beyond_what_the_master_takes_are_capped() -> None:
    b = TokenBucket(10**30, 10**30)
    assert b.rate_bytes == MAX_BITS_PER_S // 8
    time.sleep(0.01)
    assert 0 < b.allowance(10**9) <= b.burst_bytes
