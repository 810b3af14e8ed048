"""Datagram endpoints under uvloop and DockNetLoop."""

from __future__ import annotations

import asyncio
import os
import time

import pytest

from conformance_util import Peer, loop_kind

# Every test with a peer runs on its IPv4 and IPv6 addresses (conftest.py).
pytestmark = pytest.mark.ipv6

UDP = 6


class Collect(asyncio.DatagramProtocol):
    def __init__(self) -> None:
        self.got: dict[int, bytes] = {}
        self.errors: list[Exception] = []
        self.made = False
        self.lost = asyncio.get_running_loop().create_future()

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.made = True

    def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:
        self.addr = addr
        self.got[int.from_bytes(data[:4], "little")] = data

    def error_received(self, exc: Exception) -> None:
        self.errors.append(exc)

    def connection_lost(self, exc: BaseException | None) -> None:
        self.lost.set_result(exc)


async def test_udp_echo_connected_and_unconnected(peer: Peer, local_host: str) -> None:
    loop = asyncio.get_running_loop()
    t, p = await loop.create_datagram_endpoint(Collect, remote_addr=(peer.host, peer.port(UDP)))
    assert p.made
    assert t.get_extra_info("peername") == peer.sockaddr(UDP)
    if loop_kind() == "docknet":
        assert type(t).__name__ == "DockNetDatagramTransport"
    sent = {}
    for i in range(40):
        sent[i] = i.to_bytes(4, "little") + os.urandom([10, 500, 1400, 4000][i % 4])
        t.sendto(sent[i])
        if i % 8 == 7:
            await asyncio.sleep(0.01)
    for _ in range(200):
        if len(p.got) == len(sent):
            break
        await asyncio.sleep(0.01)
    assert p.got == sent
    assert p.addr == peer.sockaddr(UDP)
    t.close()
    assert await asyncio.wait_for(p.lost, 5) is None

    t2, p2 = await loop.create_datagram_endpoint(Collect, local_addr=(local_host, 0))
    assert t2.get_extra_info("sockname")[0] == local_host
    t2.sendto(b"\x07\0\0\0hello", (peer.host, peer.port(UDP)))
    for _ in range(200):
        if p2.got:
            break
        await asyncio.sleep(0.01)
    assert p2.got == {7: b"\x07\0\0\0hello"}
    t2.close()


async def test_datagram_received_error_is_reported_and_the_rest_arrive(peer: Peer,
                                                                      request: pytest.FixtureRequest) -> None:
    """The protocol raises on the first datagram: the loop's exception
    handler gets that error once, the endpoint stays open, and the
    datagrams after it are still delivered."""
    loop = asyncio.get_running_loop()
    reported: list[dict[str, object]] = []
    loop.set_exception_handler(lambda _loop, ctx: reported.append(ctx))

    class FailsOnce(Collect):
        def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:
            super().datagram_received(data, addr)
            if len(self.got) == 1:
                raise ValueError("a bug in the protocol")

    t, p = await loop.create_datagram_endpoint(FailsOnce, remote_addr=(peer.host, peer.port(UDP)))
    for i in range(3):
        t.sendto(i.to_bytes(4, "little") + b"x")
    # Block the loop while the echoes come back, so that all three wait
    # together and reach the protocol in one batch of events.
    time.sleep(0.3)
    for _ in range(500):
        if len(p.got) == 3:
            break
        await asyncio.sleep(0.01)
    assert sorted(p.got) == [0, 1, 2]
    assert [type(c.get("exception")) for c in reported] == [ValueError]
    assert not t.is_closing()
    t.close()
    assert await asyncio.wait_for(p.lost, 5) is None
