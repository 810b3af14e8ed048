"""Raw Ethernet/IPv4/TCP frames for the tests that write past a stack
(into a link ring or through SlaveStack.send_frame), with the checksums a
real stack would check."""

from __future__ import annotations

import ipaddress
import struct

SYN, RST, ACK, FIN = 0x02, 0x04, 0x10, 0x01


def checksum(data: bytes) -> int:
    """The Internet checksum (RFC 1071)."""
    if len(data) % 2:
        data += b"\0"
    total = sum(struct.unpack(f"!{len(data) // 2}H", data))
    while total >> 16:
        total = (total & 0xFFFF) + (total >> 16)
    return ~total & 0xFFFF


def ipv4(src: str, dst: str, proto: int, payload: bytes, ident: int = 0) -> bytes:
    hdr = struct.pack("!BBHHHBBH4s4s", 0x45, 0, 20 + len(payload), ident, 0, 64, proto, 0,
                      ipaddress.IPv4Address(src).packed, ipaddress.IPv4Address(dst).packed)
    return hdr[:10] + struct.pack("!H", checksum(hdr)) + hdr[12:] + payload


def tcp(src: str, dst: str, sport: int, dport: int, flags: int, *, seq: int = 1000, ack: int = 0,
        options: bytes = b"", payload: bytes = b"", ident: int = 0) -> bytes:
    """An IPv4 packet holding one TCP segment."""
    hdr = struct.pack("!HHIIBBHHH", sport, dport, seq, ack, (20 + len(options)) // 4 << 4, flags, 65535, 0,
                      0) + options + payload
    pseudo = (ipaddress.IPv4Address(src).packed + ipaddress.IPv4Address(dst).packed
              + struct.pack("!BBH", 0, 6, len(hdr)))
    seg = hdr[:16] + struct.pack("!H", checksum(pseudo + hdr)) + hdr[18:]
    return ipv4(src, dst, 6, seg, ident)


def udp(src: str, dst: str, sport: int, dport: int, payload: bytes) -> bytes:
    """An IPv4 packet holding one UDP datagram (no checksum: optional)."""
    return ipv4(src, dst, 17, struct.pack("!HHHH", sport, dport, 8 + len(payload), 0) + payload)


def mac_of(ip: str) -> bytes:
    """The MAC the switch gives an address: 02:00 and its four bytes."""
    return b"\x02\x00" + ipaddress.IPv4Address(ip).packed


def ethernet(src: str, dst: str, packet: bytes, ethertype: int = 0x0800) -> bytes:
    """packet from src to dst (their switch MACs)."""
    return mac_of(dst) + mac_of(src) + struct.pack("!H", ethertype) + packet


# ---- IPv6 (IPV6.md: an endpoint's IPv6 address is its IPv4 host part in
# the low 32 bits of the prefix; its MAC stays its IPv4 address's) ----

ETH_IPV6 = 0x86DD
ICMP6_ECHO_REQUEST, ICMP6_ECHO_REPLY, ICMP6_NS, ICMP6_NA = 128, 129, 135, 136


def ipv6(src: str, dst: str, next_header: int, payload: bytes, *, hop_limit: int = 64,
         payload_len: int | None = None) -> bytes:
    """An IPv6 packet; payload_len overrides the length field (to lie)."""
    plen = len(payload) if payload_len is None else payload_len
    return (struct.pack("!IHBB", 6 << 28, plen, next_header, hop_limit) + ipaddress.IPv6Address(src).packed
            + ipaddress.IPv6Address(dst).packed + payload)


def pseudo6(src: str, dst: str, next_header: int, length: int) -> bytes:
    """The IPv6 pseudo-header of the upper-layer checksums (RFC 8200 8.1)."""
    return (ipaddress.IPv6Address(src).packed + ipaddress.IPv6Address(dst).packed
            + struct.pack("!IxxxB", length, next_header))


def tcp6(src: str, dst: str, sport: int, dport: int, flags: int, *, seq: int = 1000, ack: int = 0,
         payload: bytes = b"", checksum_ok: bool = True) -> bytes:
    """An IPv6 packet holding one TCP segment (checksum 0 unless checksum_ok)."""
    hdr = struct.pack("!HHIIBBHHH", sport, dport, seq, ack, 5 << 4, flags, 65535, 0, 0) + payload
    if checksum_ok:
        hdr = hdr[:16] + struct.pack("!H", checksum(pseudo6(src, dst, 6, len(hdr)) + hdr)) + hdr[18:]
    return ipv6(src, dst, 6, hdr)


def udp6(src: str, dst: str, sport: int, dport: int, payload: bytes, *, checksum_ok: bool = True) -> bytes:
    """An IPv6 packet holding one UDP datagram (checksum 0 unless checksum_ok)."""
    dgram = struct.pack("!HHHH", sport, dport, 8 + len(payload), 0) + payload
    if checksum_ok:
        c = checksum(pseudo6(src, dst, 17, len(dgram)) + dgram) or 0xFFFF
        dgram = dgram[:6] + struct.pack("!H", c) + dgram[8:]
    return ipv6(src, dst, 17, dgram)


def icmp6(src: str, dst: str, type_: int, code: int, body: bytes, *, hop_limit: int = 64,
          checksum_ok: bool = True) -> bytes:
    msg = struct.pack("!BBH", type_, code, 0) + body
    if checksum_ok:
        msg = msg[:2] + struct.pack("!H", checksum(pseudo6(src, dst, 58, len(msg)) + msg)) + msg[4:]
    return ipv6(src, dst, 58, msg, hop_limit=hop_limit)


def echo6(src: str, dst: str, ident: int, seq: int, data: bytes = b"ping", *, reply: bool = False,
          checksum_ok: bool = True) -> bytes:
    return icmp6(src, dst, ICMP6_ECHO_REPLY if reply else ICMP6_ECHO_REQUEST, 0,
                 struct.pack("!HH", ident, seq) + data, checksum_ok=checksum_ok)


def solicited_node(target: str) -> str:
    """ff02::1:ffXX:XXXX of target."""
    low = ipaddress.IPv6Address(target).packed[13:]
    return str(ipaddress.IPv6Address(bytes.fromhex("ff02" + "00" * 9 + "01ff") + low))


def ns(src: str, target: str, src_mac: bytes, *, dst: str | None = None, hop_limit: int = 255) -> bytes:
    """A neighbour solicitation for target with a source link-layer
    option, to its solicited-node group unless dst is given."""
    body = b"\0" * 4 + ipaddress.IPv6Address(target).packed + b"\x01\x01" + src_mac
    return icmp6(src, dst or solicited_node(target), ICMP6_NS, 0, body, hop_limit=hop_limit)


def ethernet6(src: str, dst: str, packet: bytes) -> bytes:
    """An IPv6 packet between the MACs of the IPv4 addresses src and dst
    (the twins of its IPv6 addresses)."""
    return ethernet(src, dst, packet, ETH_IPV6)
