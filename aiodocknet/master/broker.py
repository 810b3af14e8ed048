"""The fast-channel broker: the master's side of shared-memory connections.

A slave about to connect to address:port asks; when the address is an
endpoint of this master whose DockNetLoop listens on that port and policy
allows the pair, the broker makes a channel (native/dn_fastchan.h) and the
control server hands its descriptors to both processes. An endpoint may
have several processes (members, numbered by the control server for the
master's life): listeners and channel sides are theirs, a connection goes
to one of the members listening on its port in turn, as SO_REUSEPORT
spreads them, and a member that goes takes only its own channels. The broker keeps a
read-only view of every channel it made, for the byte counts in the API,
and lets go of it (so the memory is freed) once both sides have closed or
died.
"""

from __future__ import annotations

import errno
import os
import secrets
import time
from dataclasses import dataclass, field
from typing import Any

from ..log import get_logger
from ..native.fastchan import ChannelWatch, make_region

log = get_logger("aiodocknet.master")

__all__ = ["Channel", "FastChannelBroker", "FastTraffic", "Refusal", "EPHEMERAL"]

# Ports fast channels give their connecting side, as Linux's default
# ip_local_port_range gives TCP.
EPHEMERAL = (32768, 60999)


@dataclass
class FastTraffic:
    """One endpoint's fast-channel traffic: bytes, and write calls (the
    messages its transports wrote), each way."""

    sent_bytes: int = 0
    received_bytes: int = 0
    sent_writes: int = 0
    received_writes: int = 0

    def as_tuple(self) -> tuple[int, int, int, int]:
        return self.sent_bytes, self.received_bytes, self.sent_writes, self.received_writes


def _add_channel(into: dict[str, FastTraffic], client: str, server: str, st: dict[str, Any]) -> None:
    """A channel's counts (side 0 the client, side 1 the server) added to
    both endpoints' totals."""
    for name, me in ((client, 0), (server, 1)):
        t = into.setdefault(name, FastTraffic())
        t.sent_bytes += st["bytes"][me]
        t.received_bytes += st["bytes"][1 - me]
        t.sent_writes += st["writes"][me]
        t.received_writes += st["writes"][1 - me]


class Refusal(Exception):
    """No channel. ``refuse`` True means no connection either (policy);
    False means the connection takes the network path instead."""

    def __init__(self, reason: str, refuse: bool = False) -> None:
        super().__init__(reason)
        self.reason = reason
        self.refuse = refuse


@dataclass
class Channel:
    id: int
    client: str
    server: str
    client_addr: tuple[str, int]
    server_addr: tuple[str, int]
    watch: ChannelWatch
    # The processes holding each side (member ids of the control server).
    client_member: int = 0
    server_member: int = 0
    opened_at: float = field(default_factory=time.time)
    # Sides known to be done although their flag is not set: a process
    # that died, or a notice that arrived before the flag was visible.
    done: set[int] = field(default_factory=set)

    def side_of(self, member: int) -> int | None:
        return 0 if member == self.client_member else 1 if member == self.server_member else None

    def member_of(self, side: int) -> int:
        return self.client_member if side == 0 else self.server_member

    def view(self) -> dict[str, Any]:
        st = self.watch.read()
        return {
            "id": self.id,
            "client": self.client, "server": self.server,
            "client_addr": f"{self.client_addr[0]}:{self.client_addr[1]}",
            "server_addr": f"{self.server_addr[0]}:{self.server_addr[1]}",
            "bytes_to_server": st["bytes"][0], "bytes_to_client": st["bytes"][1],
            "closed": [st["closed"][s] or s in self.done for s in (0, 1)],
            "reset": st["reset"], "ring_size": st["ring_size"],
            "memory": 4096 + 2 * st["ring_size"],
            "opened_at": self.opened_at,
        }


class FastChannelBroker:
    def __init__(self, enabled: bool = True, ring_size: int = 1 << 20) -> None:
        self.enabled = enabled
        self.ring_size = ring_size
        self.channels: dict[int, Channel] = {}
        # member -> ports its DockNetLoop serves (a count per port: a
        # wildcard server and an address-bound one may share a number)
        self.listening: dict[int, dict[int, int]] = {}
        # (endpoint, port) -> how many connections went there: the next
        # one goes to the next member listening.
        self._turn: dict[tuple[str, int], int] = {}
        self._ids = 0
        # endpoint -> the connecting ports its open channels have
        self._ports: dict[str, set[int]] = {}
        self.made = 0
        self.released = 0
        self.refused = 0
        # Bytes of channels already released, so totals survive them: in
        # all, and per endpoint (sent, received) while it is attached, as
        # its switch counters are.
        self.bytes_released = 0
        self._released_by: dict[str, FastTraffic] = {}

    # ---- listeners ----

    def listen(self, member: int, port: int, on: bool) -> None:
        ports = self.listening.setdefault(member, {})
        if on:
            ports[port] = ports.get(port, 0) + 1
        elif ports.get(port, 0) > 1:
            ports[port] -= 1
        else:
            ports.pop(port, None)
            if not ports:
                del self.listening[member]

    def is_listening(self, member: int, port: int) -> bool:
        return port in self.listening.get(member, {})

    def pick(self, endpoint: str, members: list[int], port: int) -> int | None:
        """The member of endpoint (its members in attach order) that gets
        the next connection to port: those listening, in turn; None when
        none listens."""
        serving = [m for m in members if self.is_listening(m, port)]
        if not serving:
            return None
        turn = self._turn.get((endpoint, port), 0)
        self._turn[(endpoint, port)] = turn + 1
        return serving[turn % len(serving)]

    # ---- making channels ----

    def check(self, enabled_here: bool, src: str | None, dst: str | None, port: Any, allowed: bool,
              serving: bool) -> None:
        """Raises Refusal unless a channel from src to dst:port may be made
        (serving: a member of dst listens on port)."""
        if not self.enabled or not enabled_here:
            raise Refusal("fast channels are off")
        if src is None or dst is None or not isinstance(port, int) or not 0 < port < 65536:
            raise Refusal("not an endpoint of this master")
        if not allowed:
            self.refused += 1
            raise Refusal("policy does not allow this connection", refuse=True)
        if not serving:
            raise Refusal("no DockNetLoop listens there")

    def open(self, src: str, src_address: str, dst: str, dst_address: str, port: int, *,
             client_member: int = 0, server_member: int = 0,
             ports: tuple[int, int] | None = None) -> tuple[Channel, int]:
        """A new channel and its region (a memfd), which the caller sends to
        both sides with their members' eventfds and then closes. ports: the
        connecting member's ephemeral range, when its link has one of its
        own (the channel's port is then one the switch would carry to that
        process too)."""
        memfd = make_region(self.ring_size)
        try:
            watch = ChannelWatch(memfd)
        except BaseException:
            os.close(memfd)
            raise
        try:
            local_port = self._ephemeral(src, ports or EPHEMERAL)
        except OSError:
            watch.close()
            os.close(memfd)
            raise
        self._ids += 1
        ch = Channel(self._ids, src, dst, (src_address, local_port), (dst_address, port), watch,
                     client_member, server_member)
        self.channels[ch.id] = ch
        self.made += 1
        return ch, memfd

    def _ephemeral(self, endpoint: str, ports: tuple[int, int]) -> int:
        used = self._ports.setdefault(endpoint, set())
        low, high = ports
        if sum(1 for p in used if low <= p <= high) > high - low:
            raise OSError(errno.EADDRNOTAVAIL, f"endpoint {endpoint!r} has no fast-channel port left")
        while True:
            port = low + secrets.randbelow(high - low + 1)
            if port not in used:
                used.add(port)
                return port

    # ---- letting go ----

    def closed(self, member: int, channel_id: Any) -> int | None:
        """member says it has closed its side of channel_id. A side that
        never opened the channel (its descriptors did not reach it, it
        could not map it) leaves the other waiting on a stream nobody
        serves: the channel is reset and released now, and the other
        side's member is returned for the caller to ring."""
        ch = self.channels.get(channel_id) if isinstance(channel_id, int) else None
        if ch is None:
            return None
        side = ch.side_of(member)
        if side is None:
            return None  # not its channel: ignore rather than trust it
        ch.done.add(side)
        st = ch.watch.read()
        other = 1 - side
        if not st["closed"][side] and not (st["closed"][other] or other in ch.done):
            log.info("fast channel reset: one side never opened it", channel=ch.id,
                     side=ch.client if side == 0 else ch.server)
            ch.watch.reset()
            ch.done.add(other)
            self._maybe_release(ch)
            return ch.member_of(other)
        self._maybe_release(ch)
        return None

    def member_gone(self, member: int) -> list[int]:
        """A process of an endpoint went: its channels are reset and
        released now, so their other sides stop waiting for bytes that
        cannot come; returns those sides' members for the caller to ring
        (the reset is seen when they wake). Its endpoint's other members
        and their channels are untouched."""
        self.listening.pop(member, None)
        peers = []
        for ch in list(self.channels.values()):
            side = ch.side_of(member)
            if side is not None:
                if not ch.watch.read()["closed"][1 - side]:
                    peers.append(ch.member_of(1 - side))
                ch.watch.reset()
                ch.done.update((0, 1))
                self._maybe_release(ch)
        return peers

    def endpoint_gone(self, endpoint: str) -> None:
        """Its last member has gone (member_gone first): what is kept for
        the endpoint goes too."""
        self._released_by.pop(endpoint, None)
        for key in [k for k in self._turn if k[0] == endpoint]:
            del self._turn[key]

    def abandon(self, ch: Channel) -> None:
        """A channel that never reached both sides."""
        ch.done.update((0, 1))
        self._maybe_release(ch)

    def _maybe_release(self, ch: Channel) -> None:
        st = ch.watch.read()
        if all(st["closed"][s] or s in ch.done for s in (0, 1)):
            self.bytes_released += st["bytes"][0] + st["bytes"][1]
            _add_channel(self._released_by, ch.client, ch.server, st)
            ch.watch.close()
            del self.channels[ch.id]
            ports = self._ports.get(ch.client)
            if ports is not None:
                ports.discard(ch.client_addr[1])
                if not ports:
                    del self._ports[ch.client]
            self.released += 1

    def close(self) -> None:
        for ch in list(self.channels.values()):
            ch.watch.close()
        self.channels.clear()
        self._ports.clear()

    # ---- numbers ----

    def stats(self) -> dict[str, Any]:
        views = [c.view() for c in self.channels.values()]
        return {
            "enabled": self.enabled,
            "ring_size": self.ring_size,
            "made": self.made,
            "open": len(views),
            "released": self.released,
            "refused_by_policy": self.refused,
            "memory": sum(v["memory"] for v in views),
            "bytes": self.bytes_released + sum(v["bytes_to_server"] + v["bytes_to_client"] for v in views),
        }

    def traffic_by_endpoint(self) -> dict[str, FastTraffic]:
        """endpoint -> what it sent and received over fast channels, open
        and released, in one pass over the open ones."""
        out = {name: FastTraffic(*t.as_tuple()) for name, t in self._released_by.items()}
        for c in self.channels.values():
            _add_channel(out, c.client, c.server, c.watch.read())
        return out
