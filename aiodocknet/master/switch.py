"""Python face of the native switch (native/dn_switch.h)."""

from __future__ import annotations

import ipaddress
import os
from typing import Any

from ..native.errors import check
from ..native._lib import ffi, lib
from .faults import Faults
from .uplink import pmd_of

__all__ = ["PeerWatch", "Switch", "mac_of"]


class PeerWatch:
    """The master's read-only view of a peer link's memory: bytes of ring
    records each side has sent (dn_peer_watch_read), never going back."""

    def __init__(self, fd: int) -> None:
        out = ffi.new("struct dn_peer_watch **")
        check(lib.dn_peer_watch_open(fd, out))
        self._w: Any = out[0]
        self._bytes = ffi.new("uint64_t[2]")

    def read(self) -> tuple[int, int]:
        if self._w is None:
            return 0, 0
        lib.dn_peer_watch_read(self._w, self._bytes)
        return int(self._bytes[0]), int(self._bytes[1])

    def close(self) -> None:
        if self._w is not None:
            lib.dn_peer_watch_close(self._w)
            self._w = None


def mac_of(ip: str) -> str:
    mac = ffi.new("uint8_t[6]")
    lib.dn_switch_mac_of(int(ipaddress.IPv4Address(ip)), mac)
    return ":".join(f"{b:02x}" for b in bytes(ffi.buffer(mac)))


class Switch:
    """The data-plane thread and its ports. One per master."""

    def __init__(
        self,
        subnet: ipaddress.IPv4Network,
        gateway: str,
        *,
        mtu: int,
        n_mbufs: int,
        max_endpoints: int,
        spin_us: int,
        local_range: ipaddress.IPv4Network | None = None,
        uplink: str | None = None,
        prefix6: ipaddress.IPv6Network | None = None,
        uplink_promisc_was: int = -1,
    ) -> None:
        """prefix6: the IPv6 prefix (length 64..96, low 32 bits zero) whose
        low 32 bits carry each endpoint's IPv4 host part (IPV6.md); None
        turns IPv6 off (IPv6 frames are then dropped as malformed).
        uplink_promisc_was: the uplink interface's promiscuous flag to put
        back when it closes (iface_undo.py); -1: as it is now."""
        self.wake_fd = os.eventfd(0, os.EFD_NONBLOCK | os.EFD_CLOEXEC)
        cfg = ffi.new("struct dn_switch_config *")
        cfg.subnet = int(subnet.network_address)
        cfg.netmask = int(subnet.netmask)
        cfg.gateway = int(ipaddress.IPv4Address(gateway))
        cfg.mtu = mtu
        cfg.n_mbufs = n_mbufs
        cfg.max_endpoints = max_endpoints
        cfg.spin_us = spin_us
        cfg.wake_fd = self.wake_fd
        if local_range is not None:
            cfg.range = int(local_range.network_address)
            cfg.range_mask = int(local_range.netmask)
        if prefix6 is not None:
            cfg.prefix6 = list(prefix6.network_address.packed)
            cfg.prefix6_len = prefix6.prefixlen
        # What the status says of the uplink: its port, and why an earlier
        # choice was passed over (the master's uplink.open_uplink sets it).
        self.uplink_devargs = uplink
        self.uplink_pmd = pmd_of(uplink) if uplink else None
        self.uplink_fallback: str | None = None
        keep = ffi.new("char[]", uplink.encode()) if uplink else ffi.NULL
        cfg.uplink = keep
        cfg.uplink_promisc_was = uplink_promisc_was
        for arg in (uplink or "").split(",")[1:]:
            if arg.startswith("framesz="):
                cfg.uplink_frame = int(arg.split("=", 1)[1])
        out = ffi.new("struct dn_switch **")
        try:
            check(lib.dn_switch_create(cfg, out))
        except OSError:
            os.close(self.wake_fd)
            raise
        self._sw: Any = out[0]

    def add(self, *, ip: str, link_fd: int, slave_wake_fd: int, tenant: int = 0) -> int:
        """Starts forwarding to a new endpoint whose link memory is the
        (empty) memfd link_fd; returns its slot."""
        ep = ffi.new("struct dn_endpoint_config *")
        ep.ip = int(ipaddress.IPv4Address(ip))
        ep.shm_fd = link_fd
        ep.slave_wake_fd = slave_wake_fd
        ep.tenant = tenant
        return check(lib.dn_switch_add(self._sw, ep))

    def join(self, slot: int, link_fd: int, slave_wake_fd: int) -> int:
        """Another process of the endpoint in slot: a link of its own in
        the (empty) memfd link_fd; returns the link's index."""
        return check(lib.dn_switch_join(self._sw, slot, link_fd, slave_wake_fd))

    def leave(self, slot: int, link: int) -> None:
        """That process is gone: its link and connections go, the endpoint
        stays (remove() takes the last link with the endpoint)."""
        check(lib.dn_switch_leave(self._sw, slot, link))

    def listen(self, slot: int, link: int, port: int, on: bool) -> None:
        """The link's process listens on port, or no longer does: new
        connections to a port are spread over the links listening on it."""
        check(lib.dn_switch_listen(self._sw, slot, link, port, int(on)))

    def link_ports(self, slot: int, link: int) -> tuple[int, int]:
        """The ephemeral ports (first, last) the link's stack picks from;
        the same for a link index whatever the slot."""
        lo, hi = ffi.new("uint16_t *"), ffi.new("uint16_t *")
        check(lib.dn_switch_link_ports(link, lo, hi))
        return int(lo[0]), int(hi[0])

    def set_limit(self, slot: int, direction: str, bits: int, pkts: int = 0, burst_bytes: int = 0) -> None:
        """bits/s and packets/s (0: none) and the bytes that may pass at
        once (0: 10 ms of the rate)."""
        d = lib.DN_EGRESS if direction == "egress" else lib.DN_INGRESS
        check(lib.dn_switch_set_limit(self._sw, slot, d, bits, pkts, burst_bytes, 0))

    def set_policy(self, source: int, dest: int, port: int, allow: bool) -> None:
        check(lib.dn_switch_set_policy(self._sw, source, dest, port, int(allow)))

    def set_faults(self, slot: int, faults: Faults | None) -> None:
        """Fault injection on the link towards the endpoint in slot; None
        (or all zeros) turns it off."""
        f = faults or Faults()
        check(lib.dn_switch_set_faults(self._sw, slot, f.drop_ppm, f.dup_ppm, f.reorder_ppm, f.corrupt_ppm,
                                       f.drop_next, f.seed))

    def set_uplink_faults(self, direction: str, faults: Faults | None) -> None:
        """The same on the uplink: "egress" (to the wire), "ingress" (from
        it) or "both"; with "both", corruption applies to ingress only (what
        leaves is checksummed after the switch, see dn_switch.h) and the
        two directions draw from different seeds."""
        f = faults or Faults()
        if direction in ("egress", "both"):
            out = f if direction == "egress" else Faults(f.drop_ppm, f.dup_ppm, f.reorder_ppm, 0, f.drop_next,
                                                         f.seed)
            check(lib.dn_switch_set_uplink_faults(self._sw, lib.DN_EGRESS, out.drop_ppm, out.dup_ppm,
                                                  out.reorder_ppm, out.corrupt_ppm, out.drop_next, out.seed))
        if direction in ("ingress", "both"):
            seed = f.seed if direction == "ingress" else (f.seed + 1) % (1 << 64)
            check(lib.dn_switch_set_uplink_faults(self._sw, lib.DN_INGRESS, f.drop_ppm, f.dup_ppm, f.reorder_ppm,
                                                  f.corrupt_ppm, f.drop_next, seed))
        if direction not in ("egress", "ingress", "both"):
            raise ValueError("direction must be egress, ingress or both")

    def remove(self, slot: int) -> None:
        check(lib.dn_switch_remove(self._sw, slot))

    def peer_memory(self, fd: int) -> None:
        """Lays out a peer link's memory in fd (an empty sealable memfd)."""
        check(lib.dn_switch_peer_memory(self._sw, fd))

    def port_counters(self, slot: int) -> dict[str, int]:
        c = ffi.new("struct dn_port_counters *")
        check(lib.dn_switch_port_counters(self._sw, slot, c))
        return {name: int(getattr(c, name)) for name, _ in ffi.typeof(c[0]).fields}

    def counters(self) -> dict[str, int]:
        c = ffi.new("struct dn_switch_counters *")
        lib.dn_switch_counters(self._sw, c)
        return {name: int(getattr(c, name)) for name, _ in ffi.typeof(c[0]).fields}

    def uplink(self) -> dict[str, Any] | None:
        """The uplink's counters, its pmd ("af_xdp", "af_packet" or the
        DPDK driver) and pmd_fallback (why iface: took af_packet; None)."""
        info = ffi.new("struct dn_uplink_info *")
        if lib.dn_switch_uplink(self._sw, info) < 0:
            return None
        out: dict[str, Any] = {name: int(getattr(info.port, name)) for name, _ in ffi.typeof(info.port).fields}
        out.update((name, int(getattr(info, name))) for name, _ in ffi.typeof(info[0]).fields if name != "port")
        out["pmd"] = self.uplink_pmd
        out["pmd_fallback"] = self.uplink_fallback
        return out

    def close(self) -> None:
        if self._sw is not None:
            lib.dn_switch_destroy(self._sw)
            self._sw = None
            os.close(self.wake_fd)
