"""The master's book of peer links: frame links between two endpoints' slaves
that take the switch off the path between them (native/stack/dn_link.h).

A link is offered only where the switch would do nothing but forward: two
endpoints of one tenant, one process each, neither with an ingress limit or
faults (an egress limit the sending slave keeps itself, dn_link.h).
The rules are the control server's (it knows the endpoints); this keeps the
books: which links exist, between whom, and the counts the status shows.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any, Protocol

from ..native._lib import lib

__all__ = ["PeerLink", "PeerLinks", "MAX_PER_ENDPOINT"]

# A slave holds at most this many (dn_link.h): each costs it 2 MiB of
# shared memory once traffic has gone round the rings.
MAX_PER_ENDPOINT: int = lib.DN_PEERS_MAX


class Watch(Protocol):
    def read(self) -> tuple[int, int]: ...

    def close(self) -> None: ...


@dataclass
class PeerLink:
    id: int
    # The endpoint in the slave's place of the link memory (role 0), and
    # the one in the master's (role 1).
    a: str
    b: str
    # Bytes each way (a to b, b to a), read from the link's memory.
    watch: Watch | None = None
    made_at: float = field(default_factory=time.time)

    def traffic(self) -> tuple[int, int]:
        return self.watch.read() if self.watch is not None else (0, 0)

    def by_endpoint(self) -> tuple[tuple[str, int, int], tuple[str, int, int]]:
        """(endpoint, bytes it sent, bytes it received) for each side."""
        ab, ba = self.traffic()
        return (self.a, ab, ba), (self.b, ba, ab)


def _add(into: dict[str, list[int]], link: PeerLink) -> int:
    """Adds each side's [sent, received] into into; the link's bytes, both
    ways, from the same read."""
    total = 0
    for name, sent, received in link.by_endpoint():
        t = into.setdefault(name, [0, 0])
        t[0] += sent
        t[1] += received
        total += sent
    return total


class PeerLinks:
    def __init__(self, enabled: bool = True) -> None:
        self.enabled = enabled
        self.links: dict[int, PeerLink] = {}
        self._by_pair: dict[frozenset[str], int] = {}
        self._by_endpoint: dict[str, set[int]] = {}
        self._next = 0
        self.made = 0
        self.removed = 0
        # What links taken down carried, so the totals never go back: in
        # all, and each endpoint's [sent, received] while it is attached.
        self._bytes_removed = 0
        self._removed_by: dict[str, list[int]] = {}

    def find(self, a: str, b: str) -> PeerLink | None:
        link_id = self._by_pair.get(frozenset((a, b)))
        return None if link_id is None else self.links[link_id]

    def of(self, name: str) -> list[PeerLink]:
        return [self.links[i] for i in sorted(self._by_endpoint.get(name, ()))]

    def count(self, name: str) -> int:
        return len(self._by_endpoint.get(name, ()))

    def add(self, a: str, b: str, watch: Watch | None = None) -> PeerLink:
        if a == b or self.find(a, b) is not None:
            raise ValueError(f"a peer link between {a!r} and {b!r} cannot be made twice")
        self._next += 1
        link = PeerLink(self._next, a, b, watch)
        self.links[link.id] = link
        self._by_pair[frozenset((a, b))] = link.id
        for name in (a, b):
            self._by_endpoint.setdefault(name, set()).add(link.id)
        self.made += 1
        return link

    def remove(self, link_id: int) -> PeerLink | None:
        link = self.links.pop(link_id, None)
        if link is None:
            return None
        del self._by_pair[frozenset((link.a, link.b))]
        self._bytes_removed += _add(self._removed_by, link)
        if link.watch is not None:
            link.watch.close()
        for name in (link.a, link.b):
            ids = self._by_endpoint.get(name)
            if ids is not None:
                ids.discard(link_id)
                if not ids:
                    del self._by_endpoint[name]
        self.removed += 1
        return link

    def traffic_by_endpoint(self) -> dict[str, tuple[int, int]]:
        """endpoint -> (bytes sent, bytes received) over peer links, open
        and taken down. They are read from the ring positions the two
        slaves publish, so an endpoint's peer can make what it received
        run ahead (never back): the switch sees none of this traffic."""
        out = {name: list(t) for name, t in self._removed_by.items()}
        for link in self.links.values():
            _add(out, link)
        return {name: (t[0], t[1]) for name, t in out.items()}

    def endpoint_gone(self, name: str) -> None:
        """Its last process went (its links first): its counts go too."""
        self._removed_by.pop(name, None)

    def stats(self) -> dict[str, Any]:
        carried = self._bytes_removed + sum(sum(link.traffic()) for link in self.links.values())
        return {"enabled": self.enabled, "up": len(self.links), "made": self.made, "removed": self.removed,
                "bytes": carried}

    def close(self) -> None:
        for link in self.links.values():
            if link.watch is not None:
                link.watch.close()
                link.watch = None
