"""A hostile endpoint: it attaches like a slave, then does to the shared
memory it was given what a buggy or malicious process could. JSON lines on
stdout, like tests/peer.py.

    python tests/hostile_peer.py link --name N [--seconds S]
        Maps its link, marks it attached, tries to shrink and grow the
        memory, punches the pages out, then scribbles random bytes over the
        ring positions and rings while ringing the master's eventfd.
    python tests/hostile_peer.py peerlink --name N --target A --port P [--seconds S]
        Asks the master for a peer link to A (as a slave sending to A
        would) and, once given one, puts frames on the link's ring, then
        waits for a line on stdin between each step: "frames" K legitimate
        UDP datagrams to A:P over each family, then the ones it may not send
        (each kind K times: another endpoint's source address, IPv4 and
        IPv6, another's hardware address, ARP, a header of neither family,
        runts, not for A); "break" tries to resize the
        memory and publishes a ring position that cannot be true.
    python tests/hostile_peer.py fastchan --name N --target A --port P [--seconds S]
        Asks the master for a fast channel to A:P (as a DockNetLoop would),
        writes the start of a proper stream to the peer, then tries to
        resize the channel's memory and scribbles over its header (ring
        size, positions, flags) and rings, ringing the peer each time.

Both print {"event": "done", ...} with what each attempt answered (an errno
name, or "allowed").
"""

from __future__ import annotations

import argparse
import ctypes
import errno
import ipaddress
import json
import mmap
import os
import random
import socket
import struct
import sys
import time
from typing import Any

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from aiodocknet.control import default_master_path, recv_message, send_message  # noqa: E402
from aiodocknet.native.stack import request_attach  # noqa: E402

PAGE = 4096
# dn_linkmem.h: the positions page follows the doorbell page; the two
# rings' positions take two cache lines each, then slave_attached.
LINK_ATTACHED = PAGE + 256
# dn_fastchan.c's region header: ring[s] starts at 64 + 256 * s with head,
# then tail one cache line on.
FC_RING = (64, 320)
FALLOC_FL_KEEP_SIZE, FALLOC_FL_PUNCH_HOLE = 0x01, 0x02


def say(event: str, **kw: Any) -> None:
    print(json.dumps({"event": event, **kw}), flush=True)


def attempt(fn: Any, *args: Any) -> str:
    try:
        fn(*args)
    except OSError as exc:
        return errno.errorcode.get(exc.errno or 0, str(exc))
    return "allowed"


def punch(fd: int, size: int) -> None:
    libc = ctypes.CDLL(None, use_errno=True)
    libc.fallocate.argtypes = [ctypes.c_int, ctypes.c_int, ctypes.c_long, ctypes.c_long]
    if libc.fallocate(fd, FALLOC_FL_KEEP_SIZE | FALLOC_FL_PUNCH_HOLE, 0, size) < 0:
        e = ctypes.get_errno()
        raise OSError(e, os.strerror(e))


def ring(efd: int) -> None:
    try:
        os.eventfd_write(efd, 1)
    except BlockingIOError:
        pass  # counter saturated: the peer is woken anyway


def scribble(mem: mmap.mmap, rng: random.Random, spots: list[int], size: int, efd: int, seconds: float) -> int:
    """Random positions and bytes until seconds have passed; returns how
    many rounds rang the peer."""
    rounds = 0
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        for off in spots:
            value = rng.choice([0, 1, 2**31, 2**32 - 1, 2**63, 2**64 - 1, rng.getrandbits(64)])
            struct.pack_into("<Q", mem, off, value)
        for _ in range(16):
            off = rng.randrange(0, size - 8)
            struct.pack_into("<Q", mem, off, rng.getrandbits(64))
        ring(efd)
        rounds += 1
        time.sleep(0.001)
    return rounds


def attack_link(args: argparse.Namespace) -> None:
    control, info, (link, _wake, master_wake) = request_attach(args.name, default_master_path())
    size = os.fstat(link).st_size
    mem = mmap.mmap(link, size)
    struct.pack_into("<I", mem, LINK_ATTACHED, 1)
    say("attached", address=info.address, size=size)
    shrink = attempt(os.ftruncate, link, 0)
    grow = attempt(os.ftruncate, link, size * 2)
    ring(master_wake)
    holes = attempt(punch, link, size)
    ring(master_wake)
    spots = [PAGE, PAGE + 64, PAGE + 128, PAGE + 192]  # both rings' head and tail
    rounds = scribble(mem, random.Random(args.seed), spots, size, master_wake, args.seconds)
    say("done", shrink=shrink, grow=grow, punch=holes, rounds=rounds)
    mem.close()
    control.close()


def attach_and_ask(name: str, ask: dict[str, Any], answer: str) -> tuple[socket.socket, Any, dict[str, Any], list[int]]:
    """Attaches as a slave, sends ask, and waits for the master's event
    answer (what comes before it is dropped): (control, attach info, the
    answer, its descriptors)."""
    control, info, (link, _wake, _master_wake) = request_attach(name, default_master_path())
    os.close(link)
    send_message(control, ask)
    control.settimeout(10)
    while True:
        msg, fds = recv_message(control)
        if msg is None:
            raise SystemExit("master closed the connection")
        if msg.get("event") == answer:
            return control, info, msg, fds
        for fd in fds:
            os.close(fd)


def attack_fastchan(args: argparse.Namespace) -> None:
    control, info, msg, fds = attach_and_ask(args.name, {"op": "fc_connect", "req": 1, "address": args.target,
                                                         "port": args.port}, "fc_result")
    if not msg.get("ok"):
        raise SystemExit(f"no fast channel: {msg}")
    memfd, _mine, peer_wake = fds
    size = os.fstat(memfd).st_size
    mem = mmap.mmap(memfd, size)
    # A proper start, so the peer's server has a connection to lose: the
    # command line of tests/fc_peer.py's echo mode, on ring 0 (side 0 is
    # the connecting side).
    hello = b"echo\nhello\n"
    data0 = PAGE
    mem[data0 : data0 + len(hello)] = hello
    struct.pack_into("<Q", mem, FC_RING[0], len(hello))
    ring(peer_wake)
    time.sleep(0.2)
    say("connected", size=size)
    shrink = attempt(os.ftruncate, memfd, 0)
    grow = attempt(os.ftruncate, memfd, size * 2)
    ring(peer_wake)
    # Everything in the header: magic, ring size, flags, both rings'
    # positions; then the rest of the page at random.
    spots = [0, FC_RING[0], FC_RING[0] + 64, FC_RING[1], FC_RING[1] + 64]
    rounds = scribble(mem, random.Random(args.seed), spots, PAGE, peer_wake, args.seconds)
    say("done", shrink=shrink, grow=grow, rounds=rounds)
    mem.close()
    control.close()


# dn_linkmem.h: the ring positions' page, then the slave->master ring (the
# one the asker, in the slave's place, writes).
PL_HEAD = PAGE  # to_master.head
PL_DATA = 2 * PAGE


def _csum(data: bytes) -> int:
    total = sum(struct.unpack(f"!{len(data) // 2}H", data))
    while total >> 16:
        total = (total & 0xFFFF) + (total >> 16)
    return ~total & 0xFFFF


def _mac(text: str) -> bytes:
    return bytes(int(b, 16) for b in text.split(":"))


def udp_frame(dst_mac: bytes, src_mac: bytes, src: str, dst: str, port: int, payload: bytes) -> bytes:
    udp = struct.pack("!HHHH", 40000, port, 8 + len(payload), 0) + payload
    ip = struct.pack("!BBHHHBBH4s4s", 0x45, 0, 20 + len(udp), 1, 0, 64, 17, 0, socket.inet_aton(src),
                     socket.inet_aton(dst))
    ip = ip[:10] + struct.pack("!H", _csum(ip)) + ip[12:]
    return dst_mac + src_mac + b"\x08\x00" + ip + udp


def udp6_frame(dst_mac: bytes, src_mac: bytes, src: str, dst: str, port: int, payload: bytes) -> bytes:
    """UDP over IPv6 with no checksum: the link does not check it
    (dn_netif.c), and the link's own check is what is under test."""
    udp = struct.pack("!HHHH", 40000, port, 8 + len(payload), 0) + payload
    ip = struct.pack("!IHBB16s16s", 6 << 28, len(udp), 17, 64, socket.inet_pton(socket.AF_INET6, src),
                     socket.inet_pton(socket.AF_INET6, dst))
    return dst_mac + src_mac + b"\x86\xdd" + ip + udp


def twin6(info: Any, ip4: str) -> str:
    """ip4's IPv6 address by the master's rule (master/addresses.py)."""
    net6 = ipaddress.IPv6Network(f"{info.address6}/{info.prefix6}", strict=False)
    host = int(ipaddress.IPv4Address(ip4)) & int(ipaddress.IPv4Network(f"{info.address}/{info.prefix}",
                                                                       strict=False).hostmask)
    return str(ipaddress.IPv6Address(int(net6.network_address) | host))


class RingWriter:
    """The producer's side of a dn_framering.h ring, in Python."""

    def __init__(self, mem: mmap.mmap, head_off: int, data_off: int, size: int) -> None:
        self.mem, self.head_off, self.data_off, self.size = mem, head_off, data_off, size
        self.pos = struct.unpack_from("<Q", mem, head_off)[0]

    def put(self, frame: bytes) -> None:
        need = (8 + len(frame) + 15) & ~15
        off = self.pos % self.size
        if self.size - off < need:
            struct.pack_into("<I", self.mem, self.data_off + off, 0xFFFFFFFF)
            self.pos += self.size - off
            off = 0
        struct.pack_into("<I", self.mem, self.data_off + off, len(frame))
        self.mem[self.data_off + off + 8 : self.data_off + off + 8 + len(frame)] = frame
        self.pos += need

    def publish(self, pos: int | None = None) -> None:
        struct.pack_into("<Q", self.mem, self.head_off, self.pos if pos is None else pos)


def attack_peerlink(args: argparse.Namespace) -> None:
    control, info, msg, fds = attach_and_ask(args.name, {"event": "peer_want", "address": args.target}, "peer_up")
    memfd, victim_wake = fds
    size = os.fstat(memfd).st_size
    ring_size = (size - 2 * PAGE) // 2
    mem = mmap.mmap(memfd, size)
    w = RingWriter(mem, PL_HEAD, PL_DATA, ring_size)
    me, victim = _mac(info.mac), _mac(msg["mac"])
    say("linked", id=msg["id"], role=msg["role"], size=size)
    k = args.count
    sys.stdin.readline()
    target6 = twin6(info, args.target)
    for i in range(k):
        w.put(udp_frame(victim, me, info.address, args.target, args.port, b"legit %d" % i))
        w.put(udp6_frame(victim, me, info.address6, target6, args.port, b"legit6 %d" % i))
    w.publish()
    ring(victim_wake)
    time.sleep(0.3)
    # Some other endpoint's address: neither the target's nor ours.
    third = next(str(a) for a in (ipaddress.IPv4Address(args.target) + k for k in (1, 2))
                 if str(a) != info.address)
    bad = {
        "source address": lambda i: udp_frame(victim, me, third, args.target, args.port, b"spoof"),
        "source mac": lambda i: udp_frame(victim, _mac("02:00:0a:4d:00:fe"), info.address, args.target,
                                          args.port, b"spoof"),
        "not for it": lambda i: udp_frame(_mac("02:00:0a:4d:00:fe"), me, info.address, args.target, args.port,
                                          b"spoof"),
        "to another address": lambda i: udp_frame(victim, me, info.address, third, args.port, b"spoof"),
        "ipv6 source address": lambda i: udp6_frame(victim, me, twin6(info, third), target6, args.port, b"spoof"),
        "to another ipv6 address": lambda i: udp6_frame(victim, me, info.address6, twin6(info, third), args.port,
                                                        b"spoof"),
        "arp": lambda i: victim + me + b"\x08\x06" + bytes(28),
        "ipv6 not version 6": lambda i: victim + me + b"\x86\xdd" + bytes(60),
        "ipv6 runt": lambda i: victim + me + b"\x86\xdd" + bytes(20),
        "runt": lambda i: victim + me + b"\x08\x00" + b"\x45",
    }
    for make in bad.values():
        for i in range(k):
            w.put(make(i))
        w.publish()
        ring(victim_wake)
        time.sleep(0.05)
    say("frames", legit=2 * k, bad=k * len(bad), kinds=sorted(bad))
    sys.stdin.readline()
    shrink = attempt(os.ftruncate, memfd, 0)
    grow = attempt(os.ftruncate, memfd, size * 2)
    w.publish(w.pos + 3)  # not a record boundary: cannot be true
    ring(victim_wake)
    time.sleep(0.2)
    rounds = scribble(mem, random.Random(args.seed), [PL_HEAD, PL_HEAD + 64, PL_HEAD + 128, PL_HEAD + 192],
                      PAGE, victim_wake, args.seconds)
    say("done", shrink=shrink, grow=grow, rounds=rounds)
    sys.stdin.readline()
    mem.close()
    control.close()


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("attack", choices=["link", "fastchan", "peerlink"])
    p.add_argument("--name", required=True)
    p.add_argument("--target")
    p.add_argument("--port", type=int, default=7000)
    p.add_argument("--seconds", type=float, default=2.0)
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--count", type=int, default=50)
    args = p.parse_args()
    socket.setdefaulttimeout(30)
    {"link": attack_link, "fastchan": attack_fastchan, "peerlink": attack_peerlink}[args.attack](args)


if __name__ == "__main__":
    main()
