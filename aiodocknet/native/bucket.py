"""The endpoint's rate limits where the switch cannot see the traffic.

Fast channels bypass the switch, so the process enforces the limits the
master pushes: one bucket per direction, shared by all of the endpoint's
channels, with the switch's burst rule (10 ms of the rate, at least two
jumbo frames) so an endpoint measures the same limit on either path.
"""

from __future__ import annotations

import time

__all__ = ["TokenBucket"]

# A byte stream has no packets: count one per segment lwIP would send.
SEGMENT = 8960
JUMBO = 9018


class TokenBucket:
    def __init__(self, bits_per_s: int = 0, pkts_per_s: int = 0) -> None:
        self.rate_bytes = bits_per_s / 8
        self.rate_pkts = float(pkts_per_s)
        self.burst_bytes = max(self.rate_bytes / 100, 2 * JUMBO)
        self.burst_pkts = max(self.rate_pkts / 100, 2)
        self.bytes = self.burst_bytes
        self.pkts = self.burst_pkts
        self._stamp = time.monotonic()

    @property
    def limited(self) -> bool:
        return self.rate_bytes > 0 or self.rate_pkts > 0

    def _refill(self) -> None:
        now = time.monotonic()
        dt, self._stamp = now - self._stamp, now
        if self.rate_bytes:
            self.bytes = min(self.burst_bytes, self.bytes + dt * self.rate_bytes)
        if self.rate_pkts:
            self.pkts = min(self.burst_pkts, self.pkts + dt * self.rate_pkts)

    def allowance(self, want: int) -> int:
        """How many of want bytes may go now."""
        self._refill()
        n = want
        if self.rate_bytes:
            n = min(n, int(self.bytes))
        if self.rate_pkts:
            n = min(n, int(self.pkts) * SEGMENT)
        return max(n, 0)

    def spend(self, n: int) -> None:
        if self.rate_bytes:
            self.bytes -= n
        if self.rate_pkts:
            self.pkts -= -(-n // SEGMENT)

    def delay(self) -> float:
        """Seconds until a segment's worth may go again."""
        waits = [0.0]
        if self.rate_bytes:
            waits.append((min(SEGMENT, self.burst_bytes) - self.bytes) / self.rate_bytes)
        if self.rate_pkts:
            waits.append((1 - self.pkts) / self.rate_pkts)
        return max(max(waits), 0.0005)
