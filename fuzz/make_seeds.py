"""Writes the seed inputs of fuzz/corpus/<harness>/seed-* (committed; run
again only when an input format changes). Regression inputs (crash-*,
found by fuzzing) live beside them and are never rewritten here.

Seeds give the fuzzer a start it would take long to find: an ARP request,
a whole TCP exchange with the listener, a connection out, UDP and ICMP for
the stack; well-formed rings for the ring; each control message kind for
the master.
"""

from __future__ import annotations

import json
import struct
from pathlib import Path

HERE = Path(__file__).resolve().parent
CORPUS = HERE / "corpus"

# fuzz_stack.c's addresses and ports.
STACK_IP = bytes([10, 77, 0, 2])
PEER_IP = bytes([10, 77, 0, 3])
STACK_MAC = bytes([2, 0, 10, 77, 0, 2])
PEER_MAC = bytes([2, 0, 10, 77, 0, 3])
TCP_PORT, UDP_PORT = 80, 53
FOLLOW, POOL_LOW = 0x01, 0x02
OP_NONE, OP_SEND, OP_SHUTDOWN, OP_CLOSE, OP_ABORT, OP_SENDTO, OP_CONNECT, OP_MISC = range(8)

SYN, ACK, FIN, RST, PSH = 0x02, 0x10, 0x01, 0x04, 0x08


def csum(data: bytes) -> int:
    if len(data) % 2:
        data += b"\0"
    s = sum(struct.unpack(f"!{len(data) // 2}H", data))
    while s >> 16:
        s = (s & 0xFFFF) + (s >> 16)
    return ~s & 0xFFFF


def eth(payload: bytes, kind: int = 0x0800, dst: bytes = STACK_MAC) -> bytes:
    return dst + PEER_MAC + struct.pack("!H", kind) + payload


def ipv4(proto: int, payload: bytes) -> bytes:
    hdr = struct.pack("!BBHHHBBH4s4s", 0x45, 0, 20 + len(payload), 1, 0, 64, proto, 0, PEER_IP, STACK_IP)
    return hdr[:10] + struct.pack("!H", csum(hdr)) + hdr[12:] + payload


def tcp(sport: int, dport: int, seq: int, ack: int, flags: int, data: bytes = b"", opts: bytes = b"") -> bytes:
    off = (20 + len(opts)) // 4
    return ipv4(6, struct.pack("!HHIIBBHHH", sport, dport, seq, ack, off << 4, flags, 65535, 0, 0) + opts + data)


def udp(sport: int, dport: int, data: bytes) -> bytes:
    return ipv4(17, struct.pack("!HHHH", sport, dport, 8 + len(data), 0) + data)


def icmp_echo(ident: int, seq: int, data: bytes) -> bytes:
    body = struct.pack("!BBHHH", 8, 0, 0, ident, seq) + data
    return ipv4(1, body[:2] + struct.pack("!H", csum(body)) + body[4:])


def arp_request() -> bytes:
    arp = struct.pack("!HHBBH6s4s6s4s", 1, 0x0800, 6, 4, 1, PEER_MAC, PEER_IP, b"\0" * 6, STACK_IP)
    return eth(arp, 0x0806, b"\xff" * 6)


def rec(frame: bytes, flags: int = 0, delay: int = 0, op: int = OP_NONE, arg: int = 0) -> bytes:
    return struct.pack("<HBBB", len(frame), flags, delay, op | arg << 3) + frame


STACK_IP6 = bytes([0xFD, 0x77, 0x0D, 0x0C]) + bytes(11) + b"\x02"
PEER_IP6 = bytes([0xFD, 0x77, 0x0D, 0x0C]) + bytes(11) + b"\x03"


def ipv6(nh: int, payload: bytes, dst: bytes = STACK_IP6) -> bytes:
    """With the upper layer's checksum filled when nh is ICMPv6 (which
    the stack checks; TCP and UDP it does not on the link)."""
    if nh == 58:
        pseudo = PEER_IP6 + dst + struct.pack("!IxxxB", len(payload), nh)
        payload = payload[:2] + struct.pack("!H", csum(pseudo + payload)) + payload[4:]
    return struct.pack("!IHBB", 6 << 28, len(payload), nh, 255) + PEER_IP6 + dst + payload


def eth6(payload: bytes, dst: bytes = STACK_MAC) -> bytes:
    return eth(payload, 0x86DD, dst)


def neighbour_solicitation() -> bytes:
    # To the stack's solicited-node group, with the source's link-layer address.
    group = bytes([0xFF, 0x02]) + bytes(9) + b"\x01\xff" + STACK_IP6[13:]
    ns = struct.pack("!BBHI", 135, 0, 0, 0) + STACK_IP6 + bytes([1, 1]) + PEER_MAC
    return eth6(ipv6(58, ns, group), b"\x33\x33\xff" + STACK_IP6[13:])


MSS_WS = b"\x02\x04\x05\xb4\x01\x03\x03\x07"  # MSS 1460, NOP, window scale 7


def tcp6_seg(sport: int, dport: int, seq: int, ack: int, flags: int, data: bytes = b"", opts: bytes = b"") -> bytes:
    off = (20 + len(opts)) // 4
    return struct.pack("!HHIIBBHHH", sport, dport, seq, ack, off << 4, flags, 65535, 0, 0) + opts + data


def tcp6(*args: object, **kw: object) -> bytes:
    return eth6(ipv6(6, tcp6_seg(*args, **kw)))  # type: ignore[arg-type]


def neighbour_advertisement() -> bytes:
    # Solicited, override, with the target's link-layer address: the
    # answer to the stack's solicitation for the peer.
    na = struct.pack("!BBHI", 136, 0, 0, 0x60000000) + PEER_IP6 + bytes([2, 1]) + PEER_MAC
    return eth6(ipv6(58, na))


def router_advertisement(hop_by_hop: bool = False) -> bytes:
    # From a link-local source (as RFC 4861 wants) with an on-link,
    # autonomous prefix: what the stack must not learn from another tenant.
    # hop_by_hop: behind a hop-by-hop header (padding only), where a look
    # at the IPv6 header's next header alone does not see ICMPv6.
    ra = struct.pack("!BBHBBHII", 134, 0, 0, 64, 0, 1800, 0, 0) + bytes([1, 1]) + PEER_MAC
    prefix = struct.pack("!BBBBIII", 3, 4, 64, 0xC0, 86400, 14400, 0) + bytes([0x20, 0x01, 0x0D, 0xB8]) + bytes(12)
    body = ra + prefix
    src = bytes([0xFE, 0x80]) + bytes(13) + b"\x03"
    pseudo = src + b"\xff\x02" + bytes(13) + b"\x01" + struct.pack("!IxxxB", len(body), 58)
    body = body[:2] + struct.pack("!H", csum(pseudo + body)) + body[4:]
    ext, nh = (bytes([58, 0, 1, 4, 0, 0, 0, 0]), 0) if hop_by_hop else (b"", 58)
    hdr = struct.pack("!IHBB", 6 << 28, len(ext) + len(body), nh, 255) + src + b"\xff\x02" + bytes(13) + b"\x01"
    return eth6(hdr + ext + body, b"\x33\x33\x00\x00\x00\x01")


def redirect() -> bytes:
    # "For the peer, go through fd77:d0c::9": a first hop of the sender's choosing.
    other = PEER_IP6[:15] + b"\x09"
    rd = struct.pack("!BBHI", 137, 0, 0, 0) + other + PEER_IP6 + bytes([2, 1]) + b"\x02\x00\x0a\x4d\x00\x09"
    return eth6(ipv6(58, rd))


def ipv6_runt(payload_len: int, nh: int, payload: bytes) -> bytes:
    """An IPv6 header whose payload length says what the frame does not hold."""
    return eth6(struct.pack("!IHBB", 6 << 28, payload_len, nh, 64) + PEER_IP6 + STACK_IP6 + payload)


def stack_seeds() -> dict[str, bytes]:
    syn = eth(tcp(40000, TCP_PORT, 1000, 0, SYN, opts=MSS_WS))
    ack = eth(tcp(0, 0, 0, 0, ACK))
    data = eth(tcp(0, 0, 0, 0, ACK | PSH, b"GET / HTTP/1.0\r\n\r\n"))
    fin = eth(tcp(0, 0, 0, 0, ACK | FIN))
    synack = eth(tcp(8000, 0, 5000, 0, SYN | ACK, opts=MSS_WS))
    return {
        "arp": rec(arp_request()),
        "tcp-exchange": (rec(syn) + rec(ack, FOLLOW) + rec(data, FOLLOW, 5, OP_SEND, 3)
                         + rec(ack, FOLLOW, 30) + rec(fin, FOLLOW, 2, OP_CLOSE) + rec(ack, FOLLOW, 200)),
        "tcp-paused": (rec(syn) + rec(ack, FOLLOW, 0, OP_MISC, 1) + rec(data, FOLLOW | POOL_LOW, 1)
                       + rec(data, 0, 100) + rec(eth(tcp(40000, TCP_PORT, 1, 1, RST)), 0, 130)),
        "tcp-connect": (rec(b"", 0, 0, OP_CONNECT) + rec(synack, FOLLOW, 1) + rec(data, FOLLOW, 1, OP_SHUTDOWN, 1)
                        + rec(fin, FOLLOW, 20) + rec(ack, FOLLOW, 240)),
        "udp": rec(eth(udp(5353, UDP_PORT, b"query")), 0, 0, OP_SENDTO, 4) + rec(eth(udp(5353, 9, b"x")), 0, 3),
        "icmp": rec(icmp_echo(7, 1, b"ping" * 8), 0, 0, OP_MISC, 8),
        "ip6-nd": rec(neighbour_solicitation()),
        "ip6-echo": rec(eth6(ipv6(58, struct.pack("!BBHHH", 128, 0, 0, 7, 1) + b"ping" * 8))),
        # No IPv6 listener yet: the stack resets; then one behind a
        # hop-by-hop header (padding only), and a truncated header.
        "ip6-tcp": (rec(eth6(ipv6(6, struct.pack("!HHIIBBHHH", 40000, TCP_PORT, 1000, 0, 5 << 4, SYN, 65535, 0, 0))))
                    + rec(eth6(ipv6(0, bytes([6, 0, 1, 4, 0, 0, 0, 0])
                                    + struct.pack("!HHIIBBHHH", 40001, TCP_PORT, 1, 0, 5 << 4, SYN, 65535, 0, 0))))
                    + rec(eth6(ipv6(6, b""))[:40])),
        "ip6-udp": rec(eth6(ipv6(17, struct.pack("!HHHH", 5353, UDP_PORT, 13, 0) + b"query")))
        + rec(b"", 0, 0, OP_SENDTO, 16 | 4),
        # The peer's solicitation teaches the stack its MAC; then a whole
        # exchange with the IPv6 listener.
        "ip6-tcp-exchange": (rec(neighbour_solicitation())
                             + rec(tcp6(40000, TCP_PORT, 1000, 0, SYN, opts=MSS_WS))
                             + rec(tcp6(0, 0, 0, 0, ACK), FOLLOW, 0, OP_MISC, 16)
                             + rec(tcp6(0, 0, 0, 0, ACK | PSH, b"GET / HTTP/1.0\r\n\r\n"), FOLLOW, 5, OP_SEND, 3)
                             + rec(tcp6(0, 0, 0, 0, ACK), FOLLOW, 30)
                             + rec(tcp6(0, 0, 0, 0, ACK | FIN), FOLLOW, 2, OP_CLOSE)
                             + rec(tcp6(0, 0, 0, 0, ACK), FOLLOW, 200)),
        # Out: the stack solicits the peer, the advertisement releases the
        # queued SYN, then the handshake and a half-close; the peer dies.
        "ip6-connect": (rec(b"", 0, 0, OP_CONNECT, 16) + rec(neighbour_advertisement(), 0, 1)
                        + rec(tcp6(8000, 0, 5000, 0, SYN | ACK, opts=MSS_WS), FOLLOW, 1)
                        + rec(tcp6(0, 0, 0, 0, ACK | PSH, b"hello"), FOLLOW, 1, OP_SHUTDOWN, 1)
                        + rec(tcp6(0, 0, 0, 0, ACK | FIN), FOLLOW, 20, OP_ABORT, 5)
                        + rec(b"", 0, 0, OP_MISC, 24)),
        # Extension headers before TCP and UDP: hop-by-hop with an unknown
        # option that asks for an ICMPv6 error, destination options, a
        # routing header, a fragment header (reassembly is off), no next
        # header; then options running past their header.
        "ip6-ext-headers": (rec(eth6(ipv6(0, bytes([60, 0, 0x81, 2, 0, 0, 1, 0]) + bytes([6, 0, 1, 4, 0, 0, 0, 0])
                                          + tcp6_seg(40002, TCP_PORT, 1, 0, SYN))))
                            + rec(eth6(ipv6(43, bytes([17, 2, 0, 1, 0, 0, 0, 0]) + STACK_IP6
                                            + struct.pack("!HHHH", 5353, UDP_PORT, 9, 0) + b"x")))
                            + rec(eth6(ipv6(44, bytes([17, 0, 0, 1, 0, 0, 0, 7])
                                            + struct.pack("!HHHH", 5353, UDP_PORT, 9, 0) + b"y")))
                            + rec(eth6(ipv6(59, b"nothing follows")))
                            + rec(eth6(ipv6(0, bytes([6, 200, 1, 250]) + bytes(4))))),
        # Shorter than they say: the IPv6 payload, an ICMPv6 header, a
        # solicitation without its target, TCP and UDP headers cut short.
        "ip6-runts": (rec(ipv6_runt(1000, 6, tcp6_seg(40003, TCP_PORT, 1, 0, SYN)[:8]))
                      + rec(ipv6_runt(2, 58, b"\x87"))
                      + rec(ipv6_runt(8, 58, struct.pack("!BBHI", 135, 0, 0, 0)))
                      + rec(ipv6_runt(10, 6, tcp6_seg(40004, TCP_PORT, 1, 0, SYN)[:10]))
                      + rec(ipv6_runt(4, 17, b"\x14\xe9\x00\x35"))
                      + rec(ipv6_runt(0, 0, b""))),
        # What only routers send: the stack takes none of it.
        "ip6-router": (rec(router_advertisement()) + rec(redirect()) + rec(b"", 0, 0, OP_CONNECT, 16)
                       + rec(b"", 0, 50, OP_MISC, 24)),
    }


def ring_seeds() -> dict[str, bytes]:
    # fuzz_framering.c: ring size code, max frame (u16), start flag, then ops.
    write, head, head_near, tail, tail_near, consume, produce, record = range(8)
    base = bytes([0]) + struct.pack("<H", 1514) + bytes([0])  # 64-byte ring
    big = bytes([10]) + struct.pack("<H", 9000) + bytes([1]) + struct.pack("<Q", 2**64 - 48)
    return {
        "produce-consume": base + bytes([produce]) + struct.pack("<H", 20) + bytes([consume, 4]) * 3
        + (bytes([produce]) + struct.pack("<H", 30)) * 2 + bytes([consume, 8]),
        "hostile-head": base + bytes([record]) + struct.pack("<H", 24) + bytes([consume, 2, head])
        + struct.pack("<Q", 2**63) + bytes([consume, 2, head_near]) + struct.pack("<h", 17) + bytes([consume, 1]),
        "hostile-tail": big + (bytes([produce]) + struct.pack("<H", 4000)) * 4 + bytes([tail])
        + struct.pack("<Q", 0) + bytes([tail_near]) + struct.pack("<h", -32000)
        + bytes([produce]) + struct.pack("<H", 100) + bytes([consume, 10]),
        "wrap-mark": base + bytes([write]) + struct.pack("<H", 48) + bytes([8]) + b"\xff" * 8
        + bytes([head_near]) + struct.pack("<h", 64) + bytes([consume, 3]),
    }


def control_seeds() -> dict[str, bytes]:
    # fuzz_control.py: each message is a length byte pair then its bytes.
    def msgs(*objs: object) -> bytes:
        out = b""
        for o in objs:
            data = o if isinstance(o, bytes) else json.dumps(o).encode()
            out += struct.pack("<H", len(data)) + data
        return out

    return {
        "attach": msgs({"op": "attach", "endpoint": "shop"}, {"op": "status"}, {"op": "resolve", "name": "shop"}),
        "attach-secret": msgs({"op": "attach", "endpoint": "db", "secret": "x" * 32}, {"op": "ping"}),
        "fast-channel": msgs({"op": "attach", "endpoint": "a"}, {"op": "fc_connect", "req": 1,
                             "address": "10.77.0.2", "port": 80},
                             {"event": "listen", "port": 80, "on": True}, {"event": "fc_closed", "id": 1}),
        "events": msgs({"event": "connections", "req": 3, "conns": []}, {"event": "limits"}, {"op": 7}),
        "garbage": msgs(b"[1,2]", b"{\"op\":", b"\xff\xfe", b"{}"),
    }


def main() -> None:
    for harness, seeds in (("stack", stack_seeds()), ("framering", ring_seeds()), ("control", control_seeds())):
        d = CORPUS / harness
        d.mkdir(parents=True, exist_ok=True)
        for name, data in seeds.items():
            (d / f"seed-{name}").write_bytes(data)
        print(f"{harness}: {len(seeds)} seeds in {d}")


if __name__ == "__main__":
    main()
