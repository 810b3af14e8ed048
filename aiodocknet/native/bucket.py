"""The endpoint's rate limits where the switch cannot see the traffic.

Fast channels bypass the switch, so the process enforces the limits the
master pushes: one bucket per direction, shared by all of the endpoint's
channels. The bucket is the switch's own token arithmetic
(``native/switch/dn_limit.h``: the same burst rule, 10 ms of the rate and
at least two jumbo frames), refilled from the clock instead of the
switch's tick, so an endpoint measures the same limit on either path.
"""

from __future__ import annotations

from typing import Any

from ..validate import MAX_BITS_PER_S, MAX_PKTS_PER_S
from ._lib import ffi, lib

__all__ = ["TokenBucket"]

# A byte stream has no packets: one counts per segment lwIP would send.
SEGMENT = lib.DN_LIMIT_SEGMENT


class TokenBucket:
    def __init__(self, bits_per_s: int = 0, pkts_per_s: int = 0, burst_bytes: int = 0) -> None:
        self._t = ffi.new("struct dn_tokens *")
        # The master takes no rate outside these (validate.py); the clamp
        # keeps the C arithmetic exact whatever arrives.
        bits = min(max(bits_per_s, 0), MAX_BITS_PER_S)
        pkts = min(max(pkts_per_s, 0), MAX_PKTS_PER_S)
        burst = min(max(burst_bytes, 0), MAX_BITS_PER_S // 8)
        lib.dn_tokens_configure(self._t, bits, pkts, burst, 0)
        self.limited: bool = self._t.rate_bytes != 0 or self._t.rate_pkts != 0

    @property
    def tokens(self) -> Any:
        """The C token state (struct dn_tokens *), for the stack's peer
        links to spend from the same bucket."""
        return self._t

    @property
    def rate_bytes(self) -> int:
        return int(self._t.rate_bytes)

    @property
    def rate_pkts(self) -> int:
        return int(self._t.rate_pkts)

    @property
    def burst_bytes(self) -> int:
        return int(self._t.burst_bytes)

    @property
    def burst_pkts(self) -> int:
        return int(self._t.burst_pkts)

    def allowance(self, want: int) -> int:
        """How many of want bytes may go now."""
        return int(lib.dn_tokens_allowance(self._t, min(want, 0xFFFFFFFF)))

    def spend(self, n: int) -> None:
        lib.dn_tokens_spend(self._t, n)

    def delay(self) -> float:
        """Seconds until a segment's worth may go again."""
        return float(lib.dn_tokens_delay(self._t))
