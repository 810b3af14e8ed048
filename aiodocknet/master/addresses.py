"""Addresses for endpoints from the master's subnet."""

from __future__ import annotations

import ipaddress
import itertools
from collections.abc import Callable

__all__ = ["AddressPool", "address4_of", "address6_of"]


def address6_of(ip4: str, subnet: ipaddress.IPv4Network, prefix6: ipaddress.IPv6Network) -> str:
    """The IPv6 twin of an address of subnet: its host part in the low 32
    bits of prefix6 (10.77.0.5 in 10.77.0.0/16 with fd77:d0c::/64 is
    fd77:d0c::5). One rule for endpoints, gateways and ranges alike, so the
    switch finds an IPv6 address's slot as it finds the IPv4 one's."""
    host = int(ipaddress.IPv4Address(ip4)) & int(subnet.hostmask)
    return str(ipaddress.IPv6Address(int(prefix6.network_address) | host))


def address4_of(ip6: str | ipaddress.IPv6Address, subnet: ipaddress.IPv4Network,
                prefix6: ipaddress.IPv6Network) -> str | None:
    """The IPv4 address whose twin ip6 is, or None when ip6 is no address
    of the subnet's: outside prefix6, bits set between the prefix and the
    low 32, or low bits outside the subnet's host part."""
    ip = ipaddress.IPv6Address(ip6)
    if ip.scope_id is not None or ip not in prefix6:
        return None
    host = int(ip) - int(prefix6.network_address)
    if host >> 32 or host & ~int(subnet.hostmask):
        return None
    return str(ipaddress.IPv4Address(int(subnet.network_address) | host))


class AddressPool:
    """Hands out host addresses of a subnet; the first is the gateway.

    A released address goes to the back of the queue, so a peer that still
    talks to a dead endpoint's address meets the switch's resets rather than
    a newcomer for as long as possible.
    """

    def __init__(self, subnet: ipaddress.IPv4Network, local_range: ipaddress.IPv4Network | None = None,
                 prefix6: ipaddress.IPv6Network | None = None) -> None:
        """local_range: this host's share of the subnet (masters on other
        hosts hand out the rest); the whole subnet by default. prefix6:
        the endpoints' IPv6 prefix (each address has its twin there, the
        range's share likewise); None: IPv4 only."""
        rng = local_range or subnet
        if not rng.subnet_of(subnet):
            raise ValueError(f"range {rng} is not inside subnet {subnet}")
        if rng.num_addresses < 4:
            raise ValueError(f"range {rng} is too small for endpoints")
        self.subnet = subnet
        self.range = rng
        self.gateway = str(rng.network_address + 1)
        self.prefix6 = prefix6
        self.gateway6 = self.address6(self.gateway)
        self._next = int(rng.network_address) + 2
        self._last = int(rng.broadcast_address) - 1
        self._released: list[int] = []
        self._used: set[int] = set()
        # Addresses registrations hold for endpoints not attached yet (the
        # master sets this): an address handed out to anyone else would be
        # missing when its endpoint attaches.
        self.claimed: Callable[[], set[str]] = set

    def address6(self, ip4: str) -> str | None:
        """ip4's IPv6 twin; None when this master has no IPv6 prefix."""
        return address6_of(ip4, self.subnet, self.prefix6) if self.prefix6 is not None else None

    def address4(self, ip6: str) -> str | None:
        """The IPv4 address whose twin ip6 is; None if it is no one's."""
        return address4_of(ip6, self.subnet, self.prefix6) if self.prefix6 is not None else None

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
