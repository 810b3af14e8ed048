"""A switch in this process, with endpoints whose links this process maps
itself (as their slaves would), to see where the switch sends each frame
when an endpoint has several links (dn_switch_join).

Run by tests/test_switch_links.py as ``python switch_links_probe.py
SCENARIO``; prints one JSON object; a failed check raises (exit status 1
with the traceback).
"""

from __future__ import annotations

import errno
import ipaddress
import json
import os
import random
import struct
import sys
import time
from typing import Any

import frames
from aiodocknet.master.switch import Switch
from aiodocknet.native._lib import ffi, lib
from aiodocknet.native.eal import init_eal
from aiodocknet.native.errors import check
from frames import ACK, RST, SYN

SUBNET = ipaddress.IPv4Network("10.77.0.0/24")
SERVER = "10.77.0.10"
CLIENT = "10.77.0.20"
PORT = 8080



def tcp_frame(src: str, dst: str, sport: int, dport: int, flags: int, payload: bytes = b"", ack: int = 0) -> bytes:
    return frames.ethernet(src, dst, frames.tcp(src, dst, sport, dport, flags, ack=ack, payload=payload))


def udp_frame(src: str, dst: str, sport: int, dport: int) -> bytes:
    return frames.ethernet(src, dst, frames.udp(src, dst, sport, dport, b"ping"))


def arp_request(src: str, target: str) -> bytes:
    arp = struct.pack("!HHBBH6s4s6s4s", 1, 0x0800, 6, 4, 1, frames.mac_of(src), ipaddress.IPv4Address(src).packed,
                      b"\0" * 6, ipaddress.IPv4Address(target).packed)
    return b"\xff" * 6 + frames.mac_of(src) + b"\x08\x06" + arp


class Link:
    """One link's slave side, mapped here."""

    def __init__(self, switch: Switch, name: str, fd: int, wake: int) -> None:
        self.fd, self.wake = fd, wake
        cfg = ffi.new("struct dn_link_config *")
        self._name = ffi.new("char[]", name.encode())
        cfg.name = self._name
        cfg.mtu = 1500
        cfg.n_mbufs = 2047
        cfg.shm_fd, cfg.wake_fd, cfg.peer_wake_fd = fd, wake, switch.wake_fd
        cfg.small = 1
        out = ffi.new("struct dn_link **")
        check(lib.dn_link_open(cfg, out))
        self.link = out[0]
        self._seg = ffi.new("struct dn_rxseg *")
        self._iov = ffi.new("struct dn_iov *")

    def send(self, frame: bytes) -> None:
        buf = ffi.from_buffer(frame)
        self._iov.base, self._iov.len = buf, len(frame)
        if lib.dn_link_tx(self.link, self._iov, 1) < 0:
            raise OSError(errno.ENOBUFS, "link ring full")
        lib.dn_link_tx_flush(self.link)

    def recv_all(self) -> list[bytes]:
        out = []
        while lib.dn_link_rx(self.link, self._seg) == 1:
            out.append(bytes(ffi.buffer(self._seg.data, self._seg.len)))
            lib.dn_link_free_seg(self._seg.seg)
        return out

    def close(self) -> None:
        lib.dn_link_close(self.link)
        os.close(self.fd)
        os.close(self.wake)


def new_fds() -> tuple[int, int]:
    return (os.memfd_create("probe-link", os.MFD_CLOEXEC | os.MFD_ALLOW_SEALING),
            os.eventfd(0, os.EFD_NONBLOCK | os.EFD_CLOEXEC))


class Bench:
    """A switch, a server endpoint with n links and a client endpoint."""

    def __init__(self, n_links: int) -> None:
        self.sw = Switch(SUBNET, "10.77.0.1", mtu=1500, n_mbufs=8191, max_endpoints=8, spin_us=0)
        fd, wake = new_fds()
        self.slot = self.sw.add(ip=SERVER, link_fd=fd, slave_wake_fd=wake)
        self.links: dict[int, Link] = {0: Link(self.sw, "s0", fd, wake)}
        for _ in range(n_links - 1):
            self.join()
        fd, wake = new_fds()
        self.cslot = self.sw.add(ip=CLIENT, link_fd=fd, slave_wake_fd=wake)
        self.client = Link(self.sw, "c", fd, wake)

    def join(self) -> int:
        fd, wake = new_fds()
        k = self.sw.join(self.slot, fd, wake)
        self.links[k] = Link(self.sw, f"s{k}-{time.monotonic_ns()}", fd, wake)
        return k

    def leave(self, k: int) -> None:
        self.sw.leave(self.slot, k)
        self.links.pop(k).close()

    def deliver(self, frames: list[bytes], expect: int | None = None, timeout: float = 5.0) -> dict[int, list[bytes]]:
        """Sends frames from the client (in ring-sized batches) and returns
        what each server link got."""
        got: dict[int, list[bytes]] = {k: [] for k in self.links}
        for i in range(0, len(frames), 64):
            for f in frames[i:i + 64]:
                self.client.send(f)
            self._collect(got, None, 0.002)
        self._collect(got, len(frames) if expect is None else expect, timeout)
        return got

    def _collect(self, got: dict[int, list[bytes]], expect: int | None, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while True:
            for k, link in self.links.items():
                got.setdefault(k, []).extend(link.recv_all())
            if expect is None or sum(map(len, got.values())) >= expect or time.monotonic() > deadline:
                return
            time.sleep(0.001)

    def close(self) -> None:
        for link in self.links.values():
            link.close()
        self.client.close()
        self.sw.close()


def dport_of(frame: bytes) -> int:
    return int(struct.unpack("!H", frame[36:38])[0])


def sport_of(frame: bytes) -> int:
    return int(struct.unpack("!H", frame[34:36])[0])


def link_of(got: dict[int, list[bytes]]) -> dict[int, int]:
    """Client source port -> the server link its frame reached."""
    return {sport_of(f): k for k, frames in got.items() for f in frames}


def spread(b: Bench) -> dict[str, Any]:
    for k in b.links:
        b.sw.listen(b.slot, k, PORT, True)
    sports = random.sample(range(1024, 65535), 400)
    got = b.deliver([tcp_frame(CLIENT, SERVER, p, PORT, SYN) for p in sports])
    counts = {k: len(v) for k, v in got.items()}
    assert sum(counts.values()) == 400, counts
    assert all(c >= 40 for c in counts.values()), counts
    first = link_of(got)
    # The rest of each connection follows its SYN, whatever its flags.
    got = b.deliver([tcp_frame(CLIENT, SERVER, p, PORT, ACK, b"x" * 10) for p in sports])
    assert link_of(got) == first
    # A retransmitted SYN goes where the first went.
    got = b.deliver([tcp_frame(CLIENT, SERVER, p, PORT, SYN) for p in sports[:50]])
    assert link_of(got) == {p: first[p] for p in sports[:50]}
    return {"syns": counts}


def listeners_only(b: Bench) -> dict[str, Any]:
    """New connections go only to the links that listen on their port."""
    b.sw.listen(b.slot, 1, PORT, True)
    b.sw.listen(b.slot, 3, PORT, True)
    b.sw.listen(b.slot, 2, PORT + 1, True)
    got = b.deliver([tcp_frame(CLIENT, SERVER, p, PORT, SYN) for p in range(2000, 2200)])
    counts = {k: len(v) for k, v in got.items()}
    assert counts[0] == counts[2] == 0 and counts[1] > 40 and counts[3] > 40, counts
    got = b.deliver([tcp_frame(CLIENT, SERVER, p, PORT + 1, SYN) for p in range(2000, 2050)])
    assert {k: len(v) for k, v in got.items()} == {0: 0, 1: 0, 2: 50, 3: 0}
    # Link 3 stops listening: new connections go to link 1 only.
    b.sw.listen(b.slot, 3, PORT, False)
    got = b.deliver([tcp_frame(CLIENT, SERVER, p, PORT, SYN) for p in range(3000, 3100)])
    assert {k: len(v) for k, v in got.items()} == {0: 0, 1: 100, 2: 0, 3: 0}
    # No listener at all: the lowest link, whose stack answers with a reset.
    got = b.deliver([tcp_frame(CLIENT, SERVER, p, 9999, SYN) for p in range(3000, 3010)])
    assert {k: len(v) for k, v in got.items()} == {0: 10, 1: 0, 2: 0, 3: 0}
    return {"ok": True}


def own_ports(b: Bench) -> dict[str, Any]:
    """Replies to connections a process opened reach it by its port range,
    and connections it opens outside its range by what it sent."""
    ranges = {k: b.sw.link_ports(b.slot, k) for k in b.links}
    assert ranges[0] == (49152, 65535) and ranges[1] == (32768, 33791), ranges
    frames, want = [], {}
    for k, (lo, hi) in ranges.items():
        for port in (lo, hi, (lo + hi) // 2):
            frames.append(tcp_frame(CLIENT, SERVER, 9000, port, SYN | ACK))
            want[port] = k
    got = b.deliver(frames)
    assert {dport_of(f): k for k, fs in got.items() for f in fs} == want
    # UDP by range as well.
    got = b.deliver([udp_frame(CLIENT, SERVER, 53, ranges[2][0] + 7), udp_frame(CLIENT, SERVER, 53, 50000)])
    assert {k: len(v) for k, v in got.items()} == {0: 1, 1: 0, 2: 1, 3: 0}
    # Link 3 opens a connection from port 20000 (nobody's range): its SYN
    # out teaches the switch where the answer goes.
    b.links[3].send(tcp_frame(SERVER, CLIENT, 20000, 9000, SYN))
    deadline = time.monotonic() + 5
    syn = []
    while not syn and time.monotonic() < deadline:
        syn = b.client.recv_all()
        time.sleep(0.001)
    assert len(syn) == 1 and sport_of(syn[0]) == 20000
    got = b.deliver([tcp_frame(CLIENT, SERVER, 9000, 20000, SYN | ACK)])
    assert {k: len(v) for k, v in got.items()} == {0: 0, 1: 0, 2: 0, 3: 1}
    return {"ranges": ranges}


def reset_and_leave(b: Bench) -> dict[str, Any]:
    for k in b.links:
        b.sw.listen(b.slot, k, PORT, True)
    sports = list(range(5000, 5400))
    first = link_of(b.deliver([tcp_frame(CLIENT, SERVER, p, PORT, SYN) for p in sports]))
    # A reset ends a connection: its next segment is nobody's (link 0).
    victims = [p for p in sports if first[p] == 2][:10]
    got = b.deliver([tcp_frame(CLIENT, SERVER, p, PORT, RST) for p in victims])
    assert {k: len(v) for k, v in got.items()}[2] == 10
    got = b.deliver([tcp_frame(CLIENT, SERVER, p, PORT, ACK) for p in victims])
    assert {k: len(v) for k, v in got.items()}[0] == 10
    def link_3_resets(owner: int) -> dict[int, int]:
        """Link 3 resets 5 connections of owner's; where their next
        segments go."""
        ports = [p for p in sports if first[p] == owner][:5]
        for p in ports:
            b.links[3].send(tcp_frame(SERVER, CLIENT, PORT, p, RST | ACK))
        time.sleep(0.2)
        b.client.recv_all()
        got = b.deliver([tcp_frame(CLIENT, SERVER, p, PORT, ACK) for p in ports])
        mine.extend(ports if owner == 3 else [])
        return {k: len(v) for k, v in got.items()}

    mine: list[int] = []
    # A reset sent by the process that has the connection ends it too ...
    assert link_3_resets(3)[0] == 5
    # ... but not a reset by another process of the endpoint.
    assert link_3_resets(1)[1] == 5
    # Link 1 leaves (its process died): the peers of its connections get a
    # reset at once, at the sequence number they last acknowledged; its
    # connections' later segments fall to the lowest link, the others'
    # stay where they were.
    rest = [p for p in sports if p not in victims and p not in mine]
    b.deliver([tcp_frame(CLIENT, SERVER, p, PORT, ACK, ack=900000 + p) for p in rest])
    b.leave(1)
    resets = []
    deadline = time.monotonic() + 5
    want = sorted(p for p in rest if first[p] == 1)
    while len(resets) < len(want) and time.monotonic() < deadline:
        resets += b.client.recv_all()
        time.sleep(0.001)
    time.sleep(0.1)
    resets += b.client.recv_all()
    assert sorted(dport_of(f) for f in resets) == want
    for f in resets:
        seq = struct.unpack("!I", f[38:42])[0]
        assert f[47] == RST and sport_of(f) == PORT and seq == 900000 + dport_of(f), f.hex()
    got = link_of(b.deliver([tcp_frame(CLIENT, SERVER, p, PORT, ACK) for p in rest]))
    assert got == {p: (0 if first[p] == 1 else first[p]) for p in rest}
    # Link 0 leaves too: the lowest link is now 2; a new process takes
    # index 0 again, with link 0's range.
    b.leave(0)
    got = b.deliver([tcp_frame(CLIENT, SERVER, 7777, 9999, SYN)])
    assert {k: len(v) for k, v in got.items()} == {2: 1, 3: 0}
    assert b.join() == 0
    return {"ok": True}


def arp(b: Bench) -> dict[str, Any]:
    """The switch's ARP reply goes to the process that asked."""
    for k in (2, 1, 3, 0):
        b.links[k].send(arp_request(SERVER, CLIENT))
        deadline = time.monotonic() + 5
        got: dict[int, list[bytes]] = {j: [] for j in b.links}
        while sum(map(len, got.values())) == 0 and time.monotonic() < deadline:
            for j, link in b.links.items():
                got[j].extend(link.recv_all())
            time.sleep(0.001)
        time.sleep(0.05)
        for j, link in b.links.items():
            got[j].extend(link.recv_all())
        assert {j: len(v) for j, v in got.items()} == {j: int(j == k) for j in b.links}, (k, got)
        assert got[k][0][12:14] == b"\x08\x06"
    return {"ok": True}


def hostile(b: Bench) -> dict[str, Any]:
    """Bad indexes are refused with the right error and change nothing; a
    link writing garbage into its ring costs only its own frames."""
    tried = []

    def refused(code: int, fn: Any, *args: Any) -> None:
        try:
            fn(*args)
        except OSError as exc:
            assert exc.errno == code, (fn.__name__, args, exc)
            tried.append(f"{fn.__name__}{args}: {exc.strerror}")
            return
        raise AssertionError(f"{fn.__name__}{args} was accepted")

    fd, wake = new_fds()
    refused(errno.ENOENT, b.sw.join, 7, fd, wake)
    refused(errno.ENOENT, b.sw.join, -1, fd, wake)
    refused(errno.ENOENT, b.sw.join, 1 << 30, fd, wake)
    os.close(fd)
    os.close(wake)
    refused(errno.EINVAL, b.sw.leave, b.slot, 16)
    refused(errno.EINVAL, b.sw.leave, b.slot, -1)
    refused(errno.ENOENT, b.sw.leave, b.slot, 9)
    refused(errno.EBUSY, b.sw.leave, b.cslot, 0)
    refused(errno.ENOENT, b.sw.listen, b.cslot, 1, PORT, True)
    refused(errno.EINVAL, b.sw.listen, b.slot, 1, 0, True)
    refused(errno.EINVAL, b.sw.listen, b.slot, 1, 65536, True)
    refused(errno.EINVAL, b.sw.link_ports, b.slot, 16)
    # All 16 links, then no more.
    while len(b.links) < 16:
        b.join()
    fd, wake = new_fds()
    refused(errno.ENOSPC, b.sw.join, b.slot, fd, wake)
    os.close(fd)
    os.close(wake)
    for k in b.links:
        b.sw.listen(b.slot, k, PORT, True)
    # Link 5 floods its ring with garbage and with SYNs out of nobody's
    # range (each held in the table only until it would have been answered).
    rng = random.Random(7)
    for i in range(3000):
        try:
            if i % 2:
                b.links[5].send(bytes(rng.getrandbits(8) for _ in range(rng.randrange(1, 200))))
            else:
                b.links[5].send(tcp_frame(SERVER, CLIENT, rng.randrange(1024, 32768), 9000, SYN))
        except OSError:
            time.sleep(0.001)
        if i % 200 == 0:
            b.client.recv_all()
    time.sleep(0.2)
    b.client.recv_all()
    got = b.deliver([tcp_frame(CLIENT, SERVER, p, PORT, SYN) for p in range(40000, 41600)])
    counts = {k: len(v) for k, v in got.items()}
    assert sum(counts.values()) == 1600 and min(counts.values()) >= 40, counts
    c = b.sw.port_counters(b.slot)
    assert c["links"] == 16 and c["drop_malformed"] > 0, c
    return {"tried": tried, "links": c["links"], "malformed": c["drop_malformed"]}


def full_table(b: Bench) -> dict[str, Any]:
    """More new connections than the flow table holds: the excess SYNs are
    dropped and counted (as by a full SYN queue), none is misdelivered."""
    for k in b.links:
        b.sw.listen(b.slot, k, PORT, True)
        b.sw.listen(b.slot, k, PORT + 1, True)
    frames = [tcp_frame(CLIENT, SERVER, p, PORT + i, SYN)
              for i in range(2) for p in range(1024, 1024 + 18000)]
    got = b.deliver(frames, expect=len(frames), timeout=2.0)
    delivered = sum(map(len, got.values()))
    dropped = b.sw.port_counters(b.slot)["steer_dropped"]
    assert dropped > 0 and delivered + dropped == len(frames), (delivered, dropped)
    return {"sent": len(frames), "delivered": delivered, "dropped": dropped}


def single(b: Bench) -> dict[str, Any]:
    """One link: as before (everything to it, whatever the port)."""
    got = b.deliver([tcp_frame(CLIENT, SERVER, p, PORT, SYN) for p in range(100, 200)]
                    + [tcp_frame(CLIENT, SERVER, 80, p, ACK) for p in range(33000, 33100)])
    assert {k: len(v) for k, v in got.items()} == {0: 200}
    c = b.sw.port_counters(b.slot)
    assert c["links"] == 1 and c["steer_dropped"] == 0
    return {"ok": True}


SCENARIOS = {"spread": (spread, 4), "listeners": (listeners_only, 4), "own_ports": (own_ports, 4),
             "reset_and_leave": (reset_and_leave, 4), "arp": (arp, 4), "hostile": (hostile, 4),
             "full_table": (full_table, 2),
             "single": (single, 1)}


def main() -> int:
    fn, n = SCENARIOS[sys.argv[1]]
    init_eal("probe", 256)
    b = Bench(n)
    try:
        print(json.dumps(fn(b)), flush=True)
    finally:
        b.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
