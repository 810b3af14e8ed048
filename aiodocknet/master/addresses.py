"""Addresses for endpoints from the master's subnet."""

from __future__ import annotations

import ipaddress

__all__ = ["AddressPool"]


class AddressPool:
    """Hands out host addresses of a subnet; the first is the gateway.

    A released address goes to the back of the queue, so a peer that still
    talks to a dead endpoint's address meets the switch's resets rather than
    a newcomer for as long as possible.
    """

    def __init__(self, subnet: ipaddress.IPv4Network) -> None:
        if subnet.num_addresses < 4:
            raise ValueError(f"subnet {subnet} is too small for endpoints")
        self.subnet = subnet
        self.gateway = str(subnet.network_address + 1)
        self._next = int(subnet.network_address) + 2
        self._last = int(subnet.broadcast_address) - 1
        self._released: list[int] = []
        self._used: set[int] = set()

    def allocate(self, wanted: str | None = None) -> str:
        if wanted is not None:
            ip = ipaddress.IPv4Address(wanted)
            if ip not in self.subnet or str(ip) == self.gateway or int(ip) in (
                int(self.subnet.network_address),
                int(self.subnet.broadcast_address),
            ):
                raise ValueError(f"{ip} is not a host address of {self.subnet}")
            if int(ip) in self._used:
                raise ValueError(f"{ip} is already in use")
            self._used.add(int(ip))
            if int(ip) in self._released:
                self._released.remove(int(ip))
            return str(ip)
        while self._next <= self._last:
            cand = self._next
            self._next += 1
            if cand not in self._used:
                self._used.add(cand)
                return str(ipaddress.IPv4Address(cand))
        while self._released:
            cand = self._released.pop(0)
            if cand not in self._used:
                self._used.add(cand)
                return str(ipaddress.IPv4Address(cand))
        raise ValueError(f"subnet {self.subnet} has no free address")

    def release(self, ip: str) -> None:
        value = int(ipaddress.IPv4Address(ip))
        if value in self._used:
            self._used.discard(value)
            self._released.append(value)

    def in_use(self) -> int:
        return len(self._used)
