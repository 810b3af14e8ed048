"""IPv6 through a real switch in this process, whose endpoints' links this
process maps itself (as tests/switch_links_probe.py does), writing raw
frames into the rings and reading what comes out.

Run by tests/test_switch6.py as ``python switch6_probe.py``: every check
runs in this one process (one EAL, one switch) and its outcome is printed
as one JSON object {check: {"ok": bool, "error": str, ...}}, so that a
failing check does not hide the others.

Frames coming back are read by parse6() below, which decodes the bytes
field by field and checks the upper-layer checksum over the pseudo-header
as a receiver does; nothing is compared with what tests/frames.py builds.
"""

from __future__ import annotations

import errno
import ipaddress
import json
import random
import struct
import subprocess
import sys
import time
import traceback
from collections.abc import Callable
from typing import Any

import frames
from aiodocknet.master.switch import Switch
from aiodocknet.native._lib import ffi, lib
from aiodocknet.native.eal import init_eal
from frames import ACK, RST, SYN
from switch_links_probe import Link, new_fds

SUBNET = ipaddress.IPv4Network("10.77.0.0/16")
PREFIX = ipaddress.IPv6Network("fd77:d0c::/64")
GATEWAY = "10.77.0.1"
# name: (IPv4, tenant)
ENDPOINTS = {"a": ("10.77.0.10", 0), "b": ("10.77.0.20", 0), "c": ("10.77.1.30", 1), "d": ("10.77.0.40", 0)}
ABSENT = "10.77.0.99"  # in the range, no endpoint
PORT = 8080


def v6(ip4: str) -> str:
    """The IPv6 address of an IPv4 one (IPV6.md "Addressing")."""
    host = int(ipaddress.IPv4Address(ip4)) & ~int(SUBNET.netmask) & 0xFFFFFFFF
    return str(ipaddress.IPv6Address(int(PREFIX.network_address) | host))


def parse6(frame: bytes) -> dict[str, Any]:
    """An Ethernet/IPv6 frame decoded as a receiver would, with the
    checksum of its TCP, UDP or ICMPv6 payload verified."""
    assert len(frame) >= 54, f"short frame {frame.hex()}"
    dst_mac, src_mac, ethertype = frame[:6], frame[6:12], struct.unpack("!H", frame[12:14])[0]
    assert ethertype == 0x86DD, hex(ethertype)
    vtc, plen, nh, hop = struct.unpack("!IHBB", frame[14:22])
    assert vtc >> 28 == 6, vtc
    src, dst = ipaddress.IPv6Address(frame[22:38]), ipaddress.IPv6Address(frame[38:54])
    payload = frame[54:54 + plen]
    assert len(payload) == plen, (plen, len(payload))
    pseudo = src.packed + dst.packed + struct.pack("!IxxxB", plen, nh)
    out: dict[str, Any] = {"dst_mac": dst_mac.hex(":"), "src_mac": src_mac.hex(":"), "src": str(src),
                           "dst": str(dst), "nh": nh, "hop": hop, "plen": plen,
                           "checksum_ok": frames.checksum(pseudo + payload) == 0}
    if nh == 6:
        sport, dport, seq, ack, off, flags = struct.unpack("!HHIIBB", payload[:14])
        out.update(sport=sport, dport=dport, seq=seq, ack=ack, doff=off >> 4, flags=flags)
    elif nh == 17:
        out.update(sport=struct.unpack("!H", payload[:2])[0], dport=struct.unpack("!H", payload[2:4])[0])
    elif nh == 58:
        out.update(type=payload[0], code=payload[1], tail=payload[4:8].hex())
        if payload[0] in (135, 136):
            out.update(flags=payload[4], target=str(ipaddress.IPv6Address(payload[8:24])))
            opts, i = {}, 24
            while i + 2 <= len(payload):
                t, n = payload[i], payload[i + 1] * 8
                assert n > 0, "option of length 0"
                opts[t] = payload[i + 2:i + n]
                i += n
            out["options"] = {t: v.hex(":") for t, v in opts.items()}
    return out


class Bench:
    def __init__(self) -> None:
        self.sw = Switch(SUBNET, GATEWAY, mtu=1500, n_mbufs=8191, max_endpoints=8, spin_us=0, prefix6=PREFIX)
        self.slot: dict[str, int] = {}
        self.link: dict[str, Link] = {}
        for name, (ip, tenant) in ENDPOINTS.items():
            fd, wake = new_fds()
            self.slot[name] = self.sw.add(ip=ip, link_fd=fd, slave_wake_fd=wake, tenant=tenant)
            self.link[name] = Link(self.sw, f"p6-{name}", fd, wake)
        fd, wake = new_fds()
        k = self.sw.join(self.slot["d"], fd, wake)
        self.link["d1"] = Link(self.sw, f"p6-d{k}", fd, wake)
        assert k == 1

    def ip(self, name: str) -> str:
        return ENDPOINTS[name][0]

    def send(self, name: str, frame: bytes) -> None:
        self.link[name].send(frame)

    def collect(self, names: list[str], expect: int, timeout: float = 3.0) -> dict[str, list[bytes]]:
        """What the links got until expect frames came (or timeout), plus
        whatever the switch had done by then (quiet()). expect 0: only
        what the switch did with what was sent, no waiting."""
        got: dict[str, list[bytes]] = {n: [] for n in names}
        deadline = time.monotonic() + timeout
        while expect > 0:
            for n in names:
                got[n].extend(self.link[n].recv_all())
            if sum(map(len, got.values())) >= expect or time.monotonic() > deadline:
                break
            time.sleep(0.001)
        self.quiet()
        for n in names:
            got[n].extend(self.link[n].recv_all())
        return got

    def quiet(self) -> None:
        """Returns once the switch has read everything written to it: each
        control call is a round trip through the switch thread's loop, so
        each is one more pass over the rings; done when a pass reads
        nothing new (frames held by a limiter excepted: collect waits for
        those by count)."""
        def seen() -> int:
            return sum(self.sw.port_counters(s)["rx_frames"] for s in self.slot.values())

        last = -1
        for _ in range(200):
            self.sw.set_faults(self.slot["a"], None)  # a no-op, through the thread
            now = seen()
            if now == last:
                return
            last = now

    def counters(self, name: str) -> dict[str, int]:
        return self.sw.port_counters(self.slot[name])

    def close(self) -> None:
        for link in self.link.values():
            link.close()
        self.sw.close()


def eth6(src: str, dst: str, packet: bytes) -> bytes:
    return frames.ethernet6(src, dst, packet)


def delta(before: dict[str, int], after: dict[str, int]) -> dict[str, int]:
    return {k: after[k] - before[k] for k in after if after[k] != before[k]}


# ---- checks ----

def forwarding(b: Bench) -> dict[str, Any]:
    """TCP, UDP and ICMPv6 between two endpoints arrive as they were sent;
    IPv4 alongside as before."""
    a, bb = b.ip("a"), b.ip("b")
    sent = [eth6(a, bb, frames.tcp6(v6(a), v6(bb), 40000, PORT, SYN)),
            eth6(a, bb, frames.tcp6(v6(a), v6(bb), 40000, PORT, ACK, payload=b"x" * 1000)),
            eth6(a, bb, frames.udp6(v6(a), v6(bb), 5353, 53, b"q" * 100)),
            eth6(a, bb, frames.echo6(v6(a), v6(bb), 7, 1)),
            frames.ethernet(a, bb, frames.tcp(a, bb, 40000, PORT, SYN))]
    for f in sent:
        b.send("a", f)
    got = b.collect(["b"], len(sent))["b"]
    assert got == sent, [g.hex() for g in got]
    p = parse6(got[0])
    assert p["src"] == "fd77:d0c::a" and p["dst"] == "fd77:d0c::14" and p["checksum_ok"], p
    return {"delivered": len(got)}


def spoofed(b: Bench) -> dict[str, Any]:
    """A source other than the endpoint's own derived address is dropped
    and counted as spoofed, whatever form it has."""
    a, bb = b.ip("a"), b.ip("b")
    sources = [v6(bb), "fd77:d0c::1:0:0:a", "fd77:d0c:0:1::a", "fe80::200:aff:fe4d:a", "::", "fd00::a",
               "fd77:d0c::1:a", "::ffff:10.77.0.10"]
    before = b.counters("a")
    for src in sources:
        b.send("a", eth6(a, bb, frames.tcp6(src, v6(bb), 40001, PORT, SYN)))
    got = b.collect(["b"], 0)["b"]
    d = delta(before, b.counters("a"))
    assert got == [] and d.get("drop_spoofed") == len(sources), (d, got)
    return {"spoofed": d["drop_spoofed"]}


def next_header(b: Bench) -> dict[str, Any]:
    """Anything but TCP, UDP and ICMPv6 right after the fixed header
    (extension headers included) is malformed."""
    a, bb = b.ip("a"), b.ip("b")
    seg = frames.tcp6(v6(a), v6(bb), 40002, PORT, SYN)[40:]
    kinds = [0, 43, 44, 50, 51, 59, 60, 1, 4, 41, 132, 255]
    before = b.counters("a")
    for nh in kinds:
        b.send("a", eth6(a, bb, frames.ipv6(v6(a), v6(bb), nh, seg)))
    got = b.collect(["b"], 0)["b"]
    d = delta(before, b.counters("a"))
    assert got == [] and d.get("drop_malformed") == len(kinds), (d, got)
    return {"malformed": d["drop_malformed"]}


def lying_lengths(b: Bench) -> dict[str, Any]:
    """Truncated frames and payload lengths that lie are dropped as
    malformed; thousands of random ones cost nothing but themselves."""
    a, bb = b.ip("a"), b.ip("b")
    good = frames.tcp6(v6(a), v6(bb), 40003, PORT, SYN)
    head = frames.mac_of(bb) + frames.mac_of(a) + b"\x86\xdd"
    bad = [head + good[:39],                                      # shorter than the fixed header
           head,                                                  # no IPv6 header at all
           head + good[:20] + b"\0",
           head + frames.ipv6(v6(a), v6(bb), 6, good[40:], payload_len=21),    # more than the frame
           head + frames.ipv6(v6(a), v6(bb), 6, good[40:], payload_len=65535),
           head + frames.ipv6(v6(a), v6(bb), 6, good[40:], payload_len=19),    # TCP header cut
           head + frames.ipv6(v6(a), v6(bb), 6, good[40:60], payload_len=0),
           head + frames.ipv6(v6(a), v6(bb), 17, b"\0" * 7),                   # UDP header cut
           head + frames.ipv6(v6(a), v6(bb), 58, b"\x80\0\0"),                 # ICMPv6 cut
           head + b"\x45" + good[1:],                                          # version 4
           ]
    # Data offsets below 5 words and past the payload.
    for off in (0, 4, 6, 15):
        seg = bytearray(good[40:])
        seg[12] = off << 4
        bad.append(head + frames.ipv6(v6(a), v6(bb), 6, bytes(seg)))
    before = b.counters("a")
    for f in bad:
        b.send("a", f)
    got = b.collect(["b"], 0)["b"]
    d = delta(before, b.counters("a"))
    assert got == [] and d.get("drop_malformed") == len(bad), (d, len(bad), got)
    # Random bytes behind an IPv6 ethertype, half of them with a plausible
    # header: whatever they say, nothing reaches anyone.
    rng = random.Random(6)
    before, before_b = b.counters("a"), b.counters("b")
    n = 2000
    for i in range(n):
        if i % 2:
            body = bytes(rng.getrandbits(8) for _ in range(rng.randrange(0, 120)))
        else:
            body = bytearray(good)
            for _ in range(4):
                body[rng.randrange(0, 8)] = rng.getrandbits(8)
            body[0] = 0x60 | (body[0] & 0x0F)
            body = bytes(body[:rng.randrange(0, len(body) + 1)])
        while True:
            try:
                b.send("a", head + body)
                break
            except OSError:
                time.sleep(0.001)
        if i % 256 == 0:
            b.link["b"].recv_all()
    b.quiet()
    b.link["b"].recv_all()
    d = delta(before, b.counters("a"))
    db = delta(before_b, b.counters("b"))
    # A mutated header may still be a true one (a shorter payload length,
    # another flow label, UDP or ICMPv6 for TCP): those reach b. Each
    # frame is accounted for exactly once.
    reached = db.get("tx_frames", 0) + db.get("drop_ring_full", 0)
    assert d["rx_frames"] == n, d
    assert d.get("drop_malformed", 0) + d.get("drop_spoofed", 0) + d.get("drop_no_route", 0) + reached == n, (d, db)
    # And the link still works.
    b.send("a", eth6(a, bb, good))
    assert len(b.collect(["b"], 1)["b"]) == 1
    return {"crafted": len(bad), "random": n, "reached": reached, "counters": d}


def neighbour_solicitation(b: Bench) -> dict[str, Any]:
    """NS for any address of the prefix is answered with the MAC of its
    IPv4 twin; the answer is a valid NA to the asker."""
    a = b.ip("a")
    amac = frames.mac_of(a)
    answered = {b.ip("b"): "solicited", ABSENT: "solicited", GATEWAY: "solicited",
                b.ip("c"): "unicast"}
    results = {}
    for target, how in answered.items():
        dst = v6(target) if how == "unicast" else None
        before = b.counters("a")
        asked = eth6(a, target, frames.ns(v6(a), v6(target), amac, dst=dst))
        b.send("a", asked)
        got = b.collect(["a"], 1)["a"]
        assert len(got) == 1, (target, got)
        p = parse6(got[0])
        mac = frames.mac_of(target).hex(":")
        assert p["checksum_ok"], p
        assert (p["dst_mac"], p["src_mac"], p["src"], p["dst"]) == (amac.hex(":"), mac, v6(target), v6(a)), p
        assert (p["nh"], p["hop"], p["type"], p["code"], p["target"]) == (58, 255, 136, 0, v6(target)), p
        assert p["flags"] & 0x40 and p["flags"] & 0x20, p  # solicited, override
        assert p["options"] == {2: mac}, p
        assert delta(before, b.counters("a")) == {"rx_frames": 1, "rx_bytes": len(asked),
                                                  "tx_frames": 1, "tx_bytes": len(got[0]),
                                                  "nd_replies": 1}, delta(before, b.counters("a"))
        results[target] = p["options"][2]
    # Not answered: a forwarded one (hop limit), a target off the prefix
    # or of no twin, the wrong group, a truncated one, an unknown code.
    ignored = [frames.ns(v6(a), v6(b.ip("b")), amac, hop_limit=64),
               frames.ns(v6(a), "fd00::14", amac),
               frames.ns(v6(a), "fd77:d0c::1:0:14", amac),
               frames.ns(v6(a), v6(b.ip("b")), amac, dst=frames.solicited_node(v6(ABSENT))),
               frames.icmp6(v6(a), frames.solicited_node(v6(b.ip("b"))), 135, 0, b"\0" * 10, hop_limit=255),
               frames.icmp6(v6(a), frames.solicited_node(v6(b.ip("b"))), 135, 1,
                            b"\0" * 4 + ipaddress.IPv6Address(v6(b.ip("b"))).packed, hop_limit=255),
               frames.icmp6(v6(a), v6(b.ip("b")), 136, 0, b"\0" * 20, hop_limit=255),  # an NA: no answer
               frames.icmp6(v6(a), "ff02::2", 133, 0, b"\0" * 4, hop_limit=255)]       # an RS: no router
    before = b.counters("a")
    for f in ignored:
        b.send("a", eth6(a, b.ip("b"), f))
    got = b.collect(["a", "b"], 0)
    assert got == {"a": [], "b": []}, got
    assert "nd_replies" not in delta(before, b.counters("a"))
    # The reply goes to the link that asked.
    d = b.ip("d")
    b.send("d1", eth6(d, a, frames.ns(v6(d), v6(a), frames.mac_of(d))))
    got = b.collect(["d", "d1"], 1)
    assert len(got["d1"]) == 1 and got["d"] == [] and parse6(got["d1"][0])["type"] == 136, got
    return {"answered": results}


def reset_for_absent(b: Bench) -> dict[str, Any]:
    """TCP to an address of the range with no endpoint gets a reset."""
    a = b.ip("a")
    b.send("a", eth6(a, ABSENT, frames.tcp6(v6(a), v6(ABSENT), 41000, 80, SYN, seq=5000)))
    b.send("a", eth6(a, ABSENT, frames.tcp6(v6(a), v6(ABSENT), 41001, 80, ACK, seq=7, ack=9000,
                                            payload=b"hello")))
    b.send("a", eth6(a, ABSENT, frames.tcp6(v6(a), v6(ABSENT), 41002, 80, RST)))  # none for a reset
    b.send("a", eth6(a, ABSENT, frames.udp6(v6(a), v6(ABSENT), 41003, 80, b"x")))  # nor for UDP
    got = b.collect(["a"], 2)["a"]
    assert len(got) == 2, got
    syn, ack = (parse6(f) for f in got)
    for p, sport in ((syn, 41000), (ack, 41001)):
        assert p["checksum_ok"] and p["src"] == v6(ABSENT) and p["dst"] == v6(a), p
        assert (p["sport"], p["dport"], p["doff"], p["plen"]) == (80, sport, 5, 20), p
        assert p["src_mac"] == frames.mac_of(ABSENT).hex(":") and p["dst_mac"] == frames.mac_of(a).hex(":")
    assert syn["flags"] == RST | ACK and syn["ack"] == 5001 and syn["seq"] == 0, syn
    assert ack["flags"] == RST and ack["seq"] == 9000, ack
    return {"resets": len(got)}


def policy(b: Bench) -> dict[str, Any]:
    """Tenant isolation judges IPv6 as IPv4: the same frames get the same
    verdicts in both families."""
    a, c = b.ip("a"), b.ip("c")

    def verdicts() -> dict[str, list[int]]:
        out = {}
        for fam in ("v4", "v6"):
            sent = []
            for dport, flags in ((80, SYN), (81, SYN), (81, ACK)):
                if fam == "v4":
                    sent.append(frames.ethernet(a, c, frames.tcp(a, c, 42000, dport, flags)))
                else:
                    sent.append(eth6(a, c, frames.tcp6(v6(a), v6(c), 42000, dport, flags)))
            sent.append(eth6(a, c, frames.echo6(v6(a), v6(c), 1, 1)) if fam == "v6" else
                        frames.ethernet(a, c, frames.ipv4(a, c, 1, b"\x08\0\0\0\0\1\0\1")))
            row = []
            for f in sent:
                before = b.counters("a")["drop_policy"]
                b.send("a", f)
                got = b.collect(["c"], 0)["c"]
                row.append(len(got) if got == [f] or got == [] else -1)
                assert b.counters("a")["drop_policy"] - before == 1 - row[-1]
            out[fam] = row
        return out

    denied = verdicts()
    assert denied["v6"] == denied["v4"] == [0, 0, 0, 0], denied
    b.sw.set_policy(0, 1, 80, True)
    port80 = verdicts()
    assert port80["v6"] == port80["v4"] and port80["v6"][:2] == [1, 0], port80
    b.sw.set_policy(0, 1, 0, True)
    anyport = verdicts()
    assert anyport["v6"] == anyport["v4"] == [1, 1, 1, 1], anyport
    b.sw.set_policy(0, 1, 0, False)
    b.sw.set_policy(0, 1, 80, False)
    return {"denied": denied, "port80": port80, "any": anyport}


def rate_limit(b: Bench) -> dict[str, Any]:
    """An egress packet rate holds IPv6 back as it holds IPv4."""
    a, bb = b.ip("a"), b.ip("b")
    out = {}
    b.sw.set_limit(b.slot["a"], "egress", 0, 2000, 0)
    try:
        for fam in ("v4", "v6"):
            if fam == "v4":
                sent = [frames.ethernet(a, bb, frames.udp(a, bb, 43000 + i, 53, b"r")) for i in range(100)]
            else:
                sent = [eth6(a, bb, frames.udp6(v6(a), v6(bb), 43000 + i, 53, b"r")) for i in range(100)]
            before = b.counters("a")
            t0 = time.monotonic()
            for f in sent:
                b.send("a", f)
            got = b.collect(["b"], len(sent))["b"]
            took = time.monotonic() - t0
            assert got == sent, len(got)
            out[fam] = {"delayed": b.counters("a")["egress_delayed"] - before["egress_delayed"],
                        "seconds": round(took, 3)}
    finally:
        b.sw.set_limit(b.slot["a"], "egress", 0, 0, 0)
    # 100 packets at 2,000/s with a 10 ms burst: most wait, ~40 ms in all.
    assert out["v6"]["delayed"] >= 50 and out["v4"]["delayed"] >= 50, out
    assert abs(out["v6"]["delayed"] - out["v4"]["delayed"]) <= 20, out
    assert out["v6"]["seconds"] >= 0.03, out
    return out


def faults(b: Bench) -> dict[str, Any]:
    """Fault injection on the way to an endpoint applies to IPv6."""
    a, bb = b.ip("a"), b.ip("b")
    b.sw.set_faults(b.slot["b"], None)
    from aiodocknet.master.faults import Faults
    b.sw.set_faults(b.slot["b"], Faults(0, 0, 0, 0, 3, 1))
    sent = [eth6(a, bb, frames.udp6(v6(a), v6(bb), 44000 + i, 53, b"f")) for i in range(5)]
    for f in sent:
        b.send("a", f)
    got = b.collect(["b"], 2)["b"]
    b.sw.set_faults(b.slot["b"], None)
    assert got == sent[3:], len(got)
    assert b.counters("b")["fault_dropped"] >= 3
    return {"dropped": 3}


def steering(b: Bench) -> dict[str, Any]:
    """An endpoint with two processes: new IPv6 connections spread over
    its listening links and stay; an IPv4 connection with the same ports is
    another key; when a link leaves, its IPv6 connections' peers get a
    valid IPv6 reset."""
    a, d = b.ip("a"), b.ip("d")
    for k in (0, 1):
        b.sw.listen(b.slot["d"], k, PORT, True)
    sports = list(range(20000, 20200))
    for p in sports:
        b.send("a", eth6(a, d, frames.tcp6(v6(a), v6(d), p, PORT, SYN)))
    got = b.collect(["d", "d1"], len(sports))
    first = {struct.unpack("!H", f[54:56])[0]: k for k, fs in got.items() for f in fs}
    assert sorted(first) == sports and min(len(v) for v in got.values()) >= 40, {k: len(v) for k, v in got.items()}
    for p in sports:
        b.send("a", eth6(a, d, frames.tcp6(v6(a), v6(d), p, PORT, ACK, ack=700000 + p)))
    got = b.collect(["d", "d1"], len(sports))
    assert {struct.unpack("!H", f[54:56])[0]: k for k, fs in got.items() for f in fs} == first
    # IPv4 SYNs from the same ports are new connections of their own: they
    # are spread by their own hash, and the IPv6 ones stay where they were.
    for p in sports:
        b.send("a", frames.ethernet(a, d, frames.tcp(a, d, p, PORT, SYN)))
    got4 = b.collect(["d", "d1"], len(sports))
    moved = sum(1 for k, fs in got4.items() for f in fs if first[struct.unpack("!H", f[34:36])[0]] != k)
    for p in sports:
        b.send("a", eth6(a, d, frames.tcp6(v6(a), v6(d), p, PORT, ACK, ack=700000 + p)))
    got = b.collect(["d", "d1"], len(sports))
    assert {struct.unpack("!H", f[54:56])[0]: k for k, fs in got.items() for f in fs} == first
    # Link 1 goes: a reset for each of its IPv6 connections (and its IPv4 ones).
    b.link["a"].recv_all()
    b.sw.leave(b.slot["d"], 1)
    b.link.pop("d1").close()
    want = sorted(p for p in sports if first[p] == "d1")
    assert moved > 0, moved
    resets = b.collect(["a"], len(want), timeout=3)["a"]
    r6 = [parse6(f) for f in resets if f[12:14] == b"\x86\xdd"]
    assert sorted(p["dport"] for p in r6) == want, (len(r6), len(want))
    for p in r6:
        assert p["checksum_ok"] and p["flags"] == RST and p["seq"] == 700000 + p["dport"], p
        assert p["src"] == v6(d) and p["dst"] == v6(a) and p["sport"] == PORT, p
    return {"spread": {k: list(first.values()).count(k) for k in ("d", "d1")}, "v4_elsewhere": moved,
            "resets6": len(r6)}


def lwip_neighbour(b: Bench) -> dict[str, Any]:
    """A real lwIP stack (the endpoints' own) behind the switch answers an
    IPv6 echo: to send its reply it solicits the asker's address, and takes
    the switch's advertisement."""
    ip = "10.77.0.50"
    fd, wake = new_fds()
    slot = b.sw.add(ip=ip, link_fd=fd, slave_wake_fd=wake)
    cfg = ffi.new("struct dn_stack_config *")
    cfg.ip = int(ipaddress.IPv4Address(ip))
    cfg.netmask = int(SUBNET.netmask)
    cfg.gateway = int(ipaddress.IPv4Address(GATEWAY))
    cfg.ip6 = list(ipaddress.IPv6Address(v6(ip)).packed)
    cfg.prefix6_len = PREFIX.prefixlen
    cfg.mac = list(frames.mac_of(ip))
    cfg.mtu, cfg.n_mbufs, cfg.max_conns = 1500, 2047, 4
    cfg.link_fd, cfg.wake_fd, cfg.master_wake_fd = fd, wake, b.sw.wake_fd
    out = ffi.new("struct dn_stack **")
    ret = lib.dn_stack_open(cfg, out)
    assert ret == 0, ffi.string(lib.dn_last_error()).decode()
    st, ev = out[0], ffi.new("struct dn_event[16]")
    a = b.ip("a")
    try:
        b.send("a", eth6(a, ip, frames.echo6(v6(a), v6(ip), 99, 1, b"lwip")))
        deadline, reply = time.monotonic() + 5, None
        while reply is None and time.monotonic() < deadline:
            lib.dn_stack_poll(st, ev, 16)
            for f in b.link["a"].recv_all():
                p = parse6(f)
                if p["nh"] == 58 and p["type"] == 129:
                    reply = p
            time.sleep(0.001)
        assert reply is not None, b.sw.port_counters(slot)
        assert reply["checksum_ok"] and reply["src"] == v6(ip) and reply["dst"] == v6(a), reply
        c = b.sw.port_counters(slot)
        assert c["nd_replies"] >= 1 and c["drop_malformed"] == 0 and c["drop_spoofed"] == 0, c
        return {"nd_replies": c["nd_replies"]}
    finally:
        lib.dn_stack_close(st)
        b.sw.remove(slot)


def config(b: Bench) -> dict[str, Any]:
    """Prefixes the switch refuses at create (EINVAL, with a message)."""
    refused = {}
    for text, length in (("fd77:d0c::", 63), ("fd77:d0c::", 97), ("fd77:d0c::", 128), ("fd77:d0c::", 1),
                         ("fd77:d0c::1", 64), ("fd77:d0c::1:0:0", 64), ("fd77:d0c::1:0", 96),
                         ("fd77:d0c::", 0)):
        cfg = ffi.new("struct dn_switch_config *")
        cfg.subnet, cfg.netmask = int(SUBNET.network_address), int(SUBNET.netmask)
        cfg.gateway, cfg.mtu, cfg.n_mbufs, cfg.max_endpoints = int(ipaddress.IPv4Address(GATEWAY)), 1500, 255, 2
        cfg.wake_fd = b.sw.wake_fd
        cfg.prefix6 = list(ipaddress.IPv6Address(text).packed)
        cfg.prefix6_len = length
        out = ffi.new("struct dn_switch **")
        ret = lib.dn_switch_create(cfg, out)
        if ret == 0:
            lib.dn_switch_destroy(out[0])
        refused[f"{text}/{length}"] = ret
    assert all(r == -errno.EINVAL for r in refused.values()), refused
    return {"refused": refused}


CHECKS: dict[str, Callable[[Bench], dict[str, Any]]] = {
    "config": config, "forwarding": forwarding, "spoofed": spoofed, "next_header": next_header,
    "lying_lengths": lying_lengths, "neighbour_solicitation": neighbour_solicitation,
    "reset_for_absent": reset_for_absent, "policy": policy, "rate_limit": rate_limit, "faults": faults,
    "steering": steering, "lwip_neighbour": lwip_neighbour}


# ---- the uplink (run inside a namespace whose veth0 leads to a kernel) ----

LOCAL_RANGE = ipaddress.IPv4Network("10.77.1.0/24")
ENDPOINT = "10.77.1.5"
KERNEL = "10.77.200.1"  # the twin of the kernel namespace's IPv6 address


# Raw frames onto the kernel namespace's veth0, as a hostile host on the
# segment would write them (argv: hex frames).
WIRE_SENDER = """
import socket, sys
s = socket.socket(socket.AF_PACKET, socket.SOCK_RAW)
s.bind(("veth0", 0))
for h in sys.argv[1:]:
    s.send(bytes.fromhex(h))
"""


def wire_hostile(kernel_ns: str, me: str, kernel: str) -> list[bytes]:
    """IPv6 from the wire that the uplink must drop without answering:
    lengths that lie, a version that is not 6, neighbour discovery that
    fails RFC 4861's checks, duplicate address detection for an endpoint's
    address, a source no reply could reach."""
    mac = b"\x02\xee\0\0\0\x01"
    gw = b"\xff" * 6  # the uplink is promiscuous
    good = frames.echo6(kernel, me, 5, 5)
    ns_ok = frames.ns(kernel, me, mac)
    out = [gw + mac + b"\x86\xdd" + good[:45],                                  # cut in the header
           gw + mac + b"\x86\xdd" + frames.ipv6(kernel, me, 58, good[40:], payload_len=200),
           gw + mac + b"\x86\xdd" + b"\x45" + good[1:],                        # version 4
           gw + mac + b"\x86\xdd" + ns_ok[:4] + struct.pack("!H", 20) + ns_ok[6:60],  # NS cut
           gw + mac + b"\x86\xdd" + frames.ns(kernel, me, mac, hop_limit=64),  # forwarded NS
           gw + mac + b"\x86\xdd" + frames.echo6("fd77:d0c::1:0:c801", me, 5, 6),  # no twin
           ]
    bad_sum = bytearray(ns_ok)
    bad_sum[42] ^= 1
    out.append(gw + mac + b"\x86\xdd" + bytes(bad_sum))                     # NS with a wrong checksum
    # Duplicate address detection (no source, no option) for the
    # endpoint's address: a conflict no answer settles, so none, and no
    # count either.
    out.append(gw + mac + b"\x86\xdd" + frames.icmp6("::", frames.solicited_node(me), frames.ICMP6_NS, 0,
                                                      b"\0" * 4 + ipaddress.IPv6Address(me).packed,
                                                      hop_limit=255))
    subprocess.run(["ip", "netns", "exec", kernel_ns, sys.executable, "-c", WIRE_SENDER, *(f.hex() for f in out)],
                   check=True, timeout=30)
    return out


def uplink(kernel_ns: str) -> dict[str, Any]:
    """An endpoint and a kernel neighbour over net_af_packet: the uplink
    asks for the kernel's address and answers for the endpoint's, fills in
    the checksums the endpoint left empty (the kernel answers only what
    checks), and carries a kernel `ping -6` to the endpoint, answered here
    as the endpoint's stack would."""
    sw = Switch(SUBNET, GATEWAY, mtu=1500, n_mbufs=8191, max_endpoints=4, spin_us=0, local_range=LOCAL_RANGE,
                uplink="net_af_packet0,iface=veth0", prefix6=PREFIX)
    fd, wake = new_fds()
    slot = sw.add(ip=ENDPOINT, link_fd=fd, slave_wake_fd=wake)
    link = Link(sw, "p6-up", fd, wake)
    me, kernel = v6(ENDPOINT), v6(KERNEL)
    out: dict[str, Any] = {}

    def expect(pred: Callable[[dict[str, Any]], bool], timeout: float = 5.0) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for f in link.recv_all():
                if f[12:14] == b"\x86\xdd":
                    p = parse6(f)
                    if pred(p):
                        return p
            time.sleep(0.001)
        raise AssertionError(f"nothing came: {sw.uplink()}")

    try:
        # Checksums left empty, as the internal links leave them: what the
        # kernel answers, it found valid.
        link.send(eth6(ENDPOINT, KERNEL, frames.echo6(me, kernel, 77, 1, b"x" * 56, checksum_ok=False)))
        echo = expect(lambda p: p["nh"] == 58 and p["type"] == 129)
        assert echo["checksum_ok"] and echo["src"] == kernel and echo["dst"] == me, echo
        link.send(eth6(ENDPOINT, KERNEL, frames.tcp6(me, kernel, 45000, 9, SYN, checksum_ok=False)))
        rst = expect(lambda p: p["nh"] == 6)
        assert rst["checksum_ok"] and rst["flags"] & RST and rst["dport"] == 45000, rst
        link.send(eth6(ENDPOINT, KERNEL, frames.udp6(me, kernel, 45001, 9, b"u", checksum_ok=False)))
        unreach = expect(lambda p: p["nh"] == 58 and p["type"] == 1)
        assert unreach["checksum_ok"] and unreach["code"] == 4, unreach
        out["from_endpoint"] = {"echo": True, "tcp_reset": True, "udp_unreachable": True}
        # The kernel pings the endpoint.
        ping = subprocess.Popen(["ip", "netns", "exec", kernel_ns, "ping", "-6", "-c", "3", "-i", "0.2", "-W", "2",
                                 me], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        answered = 0
        while ping.poll() is None:
            for f in link.recv_all():
                if f[12:14] != b"\x86\xdd":
                    continue
                p = parse6(f)
                if p["nh"] == 58 and p["type"] == 128 and p["dst"] == me:
                    assert p["checksum_ok"], p
                    body = f[54 + 4:54 + p["plen"]]
                    link.send(eth6(ENDPOINT, KERNEL, frames.icmp6(me, p["src"], 129, 0, body)))
                    answered += 1
            time.sleep(0.001)
        text = ping.stdout.read() if ping.stdout else ""
        assert ping.returncode == 0 and " 0% packet loss" in text, text
        # Hostile frames from the wire: dropped and counted, none answered,
        # none reaching the endpoint; the path still works after.
        before = sw.uplink() or {}
        link.recv_all()
        sent = wire_hostile(kernel_ns, me, kernel)
        link.send(eth6(ENDPOINT, KERNEL, frames.echo6(me, kernel, 77, 2, checksum_ok=False)))
        echo = expect(lambda p: p["nh"] == 58 and p["type"] == 129 and p["dst"] == me)
        got = [f for f in link.recv_all() if f[12:14] == b"\x86\xdd"]
        after = sw.uplink() or {}
        assert got == [] and echo["checksum_ok"], got
        assert after["drop_other"] - before["drop_other"] >= len(sent) - 1, (before, after)
        assert after["nd_adverts_sent"] == before["nd_adverts_sent"], (before, after)
        out["wire_hostile"] = {"sent": len(sent), "drop_other": after["drop_other"] - before["drop_other"]}
        # Uplink faults take IPv6 as IPv4: the next frame out is lost and
        # every later one doubled (so the faults stay on and each frame
        # leaves through the fault path), then the same coming in.
        from aiodocknet.master.faults import Faults
        for direction, seqs in (("egress", (3, 4)), ("ingress", (5, 6))):
            sw.set_uplink_faults(direction, Faults(dup_ppm=1_000_000, drop_next=1, seed=1))
            for seq in seqs:
                link.send(eth6(ENDPOINT, KERNEL, frames.echo6(me, kernel, 77, seq, checksum_ok=False)))
            echo = expect(lambda p: p["nh"] == 58 and p["type"] == 129)
            seq_seen = struct.unpack("!H", bytes.fromhex(echo["tail"])[2:4])[0]
            assert seq_seen == seqs[1], (direction, seq_seen)
            sw.set_uplink_faults(direction, None)
        up = sw.uplink() or {}
        assert up["tx_fault_dropped"] == 1 and up["rx_fault_dropped"] == 1, up
        assert up["tx_fault_duplicated"] >= 1 and up["rx_fault_duplicated"] >= 1, up
        out["uplink_faults"] = {"tx_dropped": 1, "rx_dropped": 1}
        up = sw.uplink() or {}
        assert up["nd_solicits_sent"] >= 1 and up["nd_adverts_sent"] >= 1, up
        assert sw.port_counters(slot)["drop_malformed"] == 0
        out.update(ping_answered=answered, ping=text.strip().splitlines()[-2:],
                   uplink={k: v for k, v in up.items() if v and k != "wake_fd"})
    finally:
        link.close()
        sw.close()
    return out


def main() -> int:
    if sys.argv[1:2] == ["uplink"]:
        init_eal("probe6up", 256)
        print(json.dumps(uplink(sys.argv[2])), flush=True)
        return 0
    init_eal("probe6", 256)
    b = Bench()
    results: dict[str, Any] = {}
    try:
        for name, fn in CHECKS.items():
            t0 = time.monotonic()
            try:
                results[name] = {"ok": True, **fn(b)}
            except Exception as exc:  # reported per check; the others still run
                results[name] = {"ok": False, "error": f"{type(exc).__name__}: {exc}",
                                 "trace": traceback.format_exc()}
            results[name]["seconds"] = round(time.monotonic() - t0, 3)
            for link in b.link.values():
                link.recv_all()
    finally:
        b.close()
    print(json.dumps(results), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
