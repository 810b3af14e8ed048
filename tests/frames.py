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
