"""Addresses for endpoints from the master's subnet."""

from __future__ import annotations

import ipaddress
import itertools
from collections.abc import Callable

__all__ = ["AddressPool"]


class AddressPool:
    """Hands out host addresses of a subnet; the first is the gateway.

    A released address goes to the back of the queue, so a peer that still
    talks to a dead endpoint's address meets the switch's resets rather than
    a newcomer for as long as possible.
    """

    def __init__(self, subnet: ipaddress.IPv4Network, local_range: ipaddress.IPv4Network | None = None) -> None:
        """local_range: this host's share of the subnet (masters on other
        hosts hand out the rest); the whole subnet by default."""
        rng = local_range or subnet
        if not rng.subnet_of(subnet):
            raise ValueError(f"range {rng} is not inside subnet {subnet}")
        if rng.num_addresses < 4:
            raise ValueError(f"range {rng} is too small for endpoints")
        self.subnet = subnet
        self.range = rng
        self.gateway = str(rng.network_address + 1)
        self._next = int(rng.network_address) + 2
        self._last = int(rng.broadcast_address) - 1
        self._released: list[int] = []
        self._used: set[int] = set()
        # Addresses registrations hold for endpoints not attached yet (the
        # master sets this): an address handed out to anyone else would be
        # missing when its endpoint attaches.
        self.claimed: Callable[[], set[str]] = set

    def _taken(self) -> set[int]:
        return self._used | {int(ipaddress.IPv4Address(ip)) for ip in self.claimed()}

    def unclaimed(self) -> str:
        """The address allocate() would hand out next, for a registration
        to claim; nothing is taken here."""
        taken = self._taken()
        for cand in itertools.chain(range(self._next, self._last + 1), self._released):
            if cand not in taken:
                return str(ipaddress.IPv4Address(cand))
        raise ValueError(f"range {self.range} has no free address")

    def allocate(self, wanted: str | None = None) -> str:
        if wanted is not None:
            ip = ipaddress.IPv4Address(wanted)
            if ip not in self.range or str(ip) == self.gateway or int(ip) in (
                int(self.range.network_address),
                int(self.range.broadcast_address),
            ):
                raise ValueError(f"{ip} is not a host address of this master's range {self.range}")
            if int(ip) in self._used:
                raise ValueError(f"{ip} is already in use")
            self._used.add(int(ip))
            if int(ip) in self._released:
                self._released.remove(int(ip))
            return str(ip)
        taken = self._taken()
        while self._next <= self._last:
            cand = self._next
            self._next += 1
            if cand not in taken:
                self._used.add(cand)
                return str(ipaddress.IPv4Address(cand))
            if cand not in self._used:
                self._released.append(cand)  # claimed: back in the queue for when it is not
        for cand in list(self._released):
            if cand not in taken:
                self._released.remove(cand)
                self._used.add(cand)
                return str(ipaddress.IPv4Address(cand))
        raise ValueError(f"range {self.range} has no free address")

    def release(self, ip: str) -> None:
        value = int(ipaddress.IPv4Address(ip))
        if value in self._used:
            self._used.discard(value)
            self._released.append(value)

    def in_use(self) -> int:
        return len(self._used)
