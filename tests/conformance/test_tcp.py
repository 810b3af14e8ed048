"""TCP transports, protocols, streams and servers: the asyncio contract,
under asyncio's own loop and uvloop (kernel) and DockNetLoop (through the
master)."""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import os
import signal
import socket
import ssl
import sys
from pathlib import Path
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from typing import Any

import pytest

from conformance_util import Peer, expect_transport, json_line, loop_kind
from dn_harness import Proc

TESTS = Path(__file__).resolve().parent.parent

ECHO, COUNT, RESET, SLOW, SOURCE, CONNECT_BACK, UDP, TLS, STARTTLS, DIAL = range(10)


def xfail_on(request: pytest.FixtureRequest, kind: str, reason: str) -> None:
    """Mark this test a known, strict failure under one kind of loop: it
    must fail there (a fix makes it pass and the mark has to go)."""
    if loop_kind() == kind:
        request.applymarker(pytest.mark.xfail(strict=True, reason=reason))

# Every test with a peer runs on its IPv4 and IPv6 addresses (conftest.py).
pytestmark = pytest.mark.ipv6


class Recorder(asyncio.Protocol):
    """Records callbacks in order, as asyncio documents them."""

    def __init__(self) -> None:
        self.calls: list[str] = []
        self.data = bytearray()
        self.lost: asyncio.Future[BaseException | None] = asyncio.get_running_loop().create_future()
        self.paused = 0
        self.resumed = 0
        self.keep_open = False

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.calls.append("made")
        self.transport = transport

    def data_received(self, data: bytes) -> None:
        if not self.calls or self.calls[-1] != "data":
            self.calls.append("data")
        self.data += data

    def eof_received(self) -> bool:
        self.calls.append("eof")
        return self.keep_open

    def pause_writing(self) -> None:
        self.paused += 1

    def resume_writing(self) -> None:
        self.resumed += 1

    def connection_lost(self, exc: BaseException | None) -> None:
        self.calls.append("lost")
        self.lost.set_result(exc)


async def test_stream_echo_and_names(peer: Peer) -> None:
    r, w = await asyncio.open_connection(peer.host, peer.port(ECHO))
    expect_transport(w)
    peername = w.get_extra_info("peername")
    sockname = w.get_extra_info("sockname")
    assert peername == peer.sockaddr(ECHO)
    assert isinstance(sockname[1], int) and sockname[1] > 0
    assert len(sockname) == len(peername)
    sock = w.get_extra_info("socket")
    assert sock.family == peer.family
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    assert sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY)
    assert sock.getpeername() == peername
    for size in (1, 64, 1500, 9000, 70000):
        msg = os.urandom(size)
        w.write(msg)
        assert await r.readexactly(size) == msg
    w.close()
    await w.wait_closed()


async def test_protocol_callback_order_on_peer_close(peer: Peer) -> None:
    """The peer answers and closes: made, data, eof, lost(None)."""
    loop = asyncio.get_running_loop()
    t, p = await loop.create_connection(Recorder, peer.host, peer.port(COUNT))
    t.write(b"hello")
    t.write_eof()
    assert await asyncio.wait_for(p.lost, 10) is None
    assert p.calls == ["made", "data", "eof", "lost"]
    assert json_line(bytes(p.data))["bytes"] == 5


async def test_half_close_keeps_receiving(peer: Peer) -> None:
    """write_eof() ends our side; the answer still arrives afterwards."""
    r, w = await asyncio.open_connection(peer.host, peer.port(COUNT))
    assert w.can_write_eof()
    payload = os.urandom(1 << 20)
    w.write(payload)
    w.write_eof()
    with pytest.raises(RuntimeError):
        w.transport.write(b"more")
    answer = json_line(await asyncio.wait_for(r.read(-1), 30))
    assert answer == {"bytes": len(payload), "sha256": hashlib.sha256(payload).hexdigest()}
    w.close()


@contextlib.asynccontextmanager
async def serving(factory: Callable[[], Recorder], host: str) -> AsyncIterator[tuple[int, list[Recorder]]]:
    """A server of ours on ``host``: its port and the protocols of the
    connections it accepts. On the way out (a failed assertion too) those
    connections are aborted, so that closing the server cannot wait on them."""
    loop = asyncio.get_running_loop()
    protocols: list[Recorder] = []

    def make() -> Recorder:
        protocols.append(factory())
        return protocols[-1]

    server = await loop.create_server(make, host, 0)
    try:
        yield server.sockets[0].getsockname()[1], protocols
    finally:
        for p in protocols:
            # Not once it is lost: asyncio's own abort() then fails (3.11
            # calls into the loop reference connection_lost cleared).
            if not p.lost.done():
                p.transport.abort()  # type: ignore[attr-defined]
        server.close()
        await asyncio.wait_for(server.wait_closed(), 10)


async def until(condition: Callable[[], bool], timeout: float = 10) -> None:
    """Wait for a condition that something already under way will make true."""
    async def poll() -> None:
        while not condition():
            await asyncio.sleep(0.001)

    await asyncio.wait_for(poll(), timeout)


async def accepted(protocols: list[Recorder]) -> Recorder:
    await until(lambda: bool(protocols))
    return protocols[0]


async def test_eof_received_true_keeps_write_side_open(peer: Peer, local_host: str) -> None:
    """The far end half-closes; our eof_received returns True, so the
    transport stays open for writing: a write made after eof_received has
    returned still reaches the far end, and connection_lost comes only with
    our own close()."""
    loop = asyncio.get_running_loop()

    class KeepOpen(Recorder):
        def __init__(self) -> None:
            super().__init__()
            self.keep_open = True
            self.open_after_eof: bool | None = None

        def eof_received(self) -> bool:
            loop.call_soon(self.answer)
            return super().eof_received()

        def answer(self) -> None:
            self.open_after_eof = not self.transport.is_closing()  # type: ignore[attr-defined]
            self.transport.write(b"after eof: " + bytes(self.data))  # type: ignore[attr-defined]
            self.transport.close()

    async with serving(KeepOpen, local_host) as (port, protocols):
        r, w = await asyncio.open_connection(peer.host, peer.port(CONNECT_BACK))
        w.write(b'{"host": "%s", "port": %d, "data": "hi"}\n' % (local_host.encode(), port))
        # The peer sends "hi", half-closes, and relays what it reads to EOF.
        assert await asyncio.wait_for(r.read(-1), 30) == b"after eof: hi"
        w.close()
        p = await accepted(protocols)
        assert await asyncio.wait_for(p.lost, 10) is None
        assert p.open_after_eof is True  # type: ignore[attr-defined]
        assert p.calls == ["made", "data", "eof", "lost"]


@dataclass
class Dialled:
    """The control connection to the peer's dial service."""

    r: asyncio.StreamReader
    w: asyncio.StreamWriter

    def go(self) -> None:
        """Let the peer send its bytes."""
        self.w.write(b"go\n")

    async def report(self) -> dict[str, Any]:
        return json_line(await asyncio.wait_for(self.r.readline(), 30))


@contextlib.asynccontextmanager
async def dial(peer: Peer, host: str, port: int, nbytes: int) -> AsyncIterator[Dialled]:
    """Ask the peer's dial service to connect to ``host:port``; it sends
    ``nbytes`` after ``go()``, and reports {"sent"}, then {"ended"}."""
    r, w = await asyncio.open_connection(peer.host, peer.port(DIAL))
    try:
        w.write(json.dumps({"host": host, "port": port, "bytes": nbytes}).encode() + b"\n")
        yield Dialled(r, w)
    finally:
        w.close()


async def test_abort_by_peer_is_connection_reset(peer: Peer) -> None:
    loop = asyncio.get_running_loop()
    t, p = await loop.create_connection(Recorder, peer.host, peer.port(RESET))
    exc = await asyncio.wait_for(p.lost, 10)
    if exc is None:
        # The kernel may deliver the RST as EOF if nothing was sent yet.
        assert "eof" in p.calls
    else:
        assert isinstance(exc, ConnectionResetError)
    assert t.is_closing()


async def test_abort_resets_peer(peer: Peer, local_host: str) -> None:
    """Our abort() on a connection the peer made: the peer's pending read
    fails with a reset under DockNet (lwIP aborts with RST); the kernel
    loops close the socket, which the peer reads as EOF. We see
    connection_lost(None) either way."""
    async with serving(Recorder, local_host) as (port, protocols):
        async with dial(peer, local_host, port, 5) as d:
            p = await accepted(protocols)
            d.go()
            assert await d.report() == {"sent": 5}
            await until(lambda: len(p.data) == 5)
            p.transport.abort()  # type: ignore[attr-defined]
            assert p.transport.is_closing()
            assert await asyncio.wait_for(p.lost, 10) is None
            ended = await d.report()
            assert ended == {"ended": "ConnectionResetError" if loop_kind() == "docknet" else "eof",
                             "received": 0}, ended


async def test_close_flushes_what_is_buffered(peer: Peer, local_host: str) -> None:
    """close() with 4 MiB still buffered: every byte reaches the peer, then
    its FIN; connection_lost(None) comes after that."""
    async with serving(Recorder, local_host) as (port, protocols):
        async with dial(peer, local_host, port, 0) as d:
            p = await accepted(protocols)
            d.go()
            assert await d.report() == {"sent": 0}
            p.transport.write(b"z" * (4 << 20))  # type: ignore[attr-defined]
            p.transport.close()  # type: ignore[attr-defined]
            assert await d.report() == {"ended": "eof", "received": 4 << 20}
            assert await asyncio.wait_for(p.lost, 10) is None


async def test_close_is_idempotent_and_write_after_it_is_dropped(peer: Peer, request: pytest.FixtureRequest) -> None:
    """close(), close() again, abort() and write() on a closed transport:
    none raises, and the protocol sees connection_lost once."""
    xfail_on(request, "uvloop", "uvloop raises RuntimeError ('the handler is closed') from write() once "
             "the connection is lost; asyncio drops the data")
    loop = asyncio.get_running_loop()
    t, p = await loop.create_connection(Recorder, peer.host, peer.port(ECHO))
    t.close()
    t.close()
    t.write(b"x")
    assert await asyncio.wait_for(p.lost, 10) is None
    t.close()
    t.write(b"y")
    # A round trip on another connection: the loop has run past any second
    # connection_lost it might have scheduled.
    r, w = await asyncio.open_connection(peer.host, peer.port(ECHO))
    w.write(b"!")
    assert await asyncio.wait_for(r.readexactly(1), 10) == b"!"
    w.close()
    assert p.calls == ["made", "lost"]


async def test_abort_in_connection_made(peer: Peer) -> None:
    loop = asyncio.get_running_loop()

    class Aborts(Recorder):
        def connection_made(self, transport: asyncio.BaseTransport) -> None:
            super().connection_made(transport)
            transport.abort()  # type: ignore[attr-defined]

    t, p = await loop.create_connection(Aborts, peer.host, peer.port(ECHO))
    assert await asyncio.wait_for(p.lost, 10) is None
    assert p.calls == ["made", "lost"] and t.is_closing()


async def test_write_buffer_limits_and_names_after_close(peer: Peer) -> None:
    """high below low is a ValueError; high=0 means both 0; the names stay
    readable after the connection is gone."""
    loop = asyncio.get_running_loop()
    t, p = await loop.create_connection(Recorder, peer.host, peer.port(ECHO))
    with pytest.raises(ValueError):
        t.set_write_buffer_limits(high=10, low=20)
    t.set_write_buffer_limits(high=0)
    assert t.get_write_buffer_limits() == (0, 0)
    names = t.get_extra_info("peername"), t.get_extra_info("sockname")
    t.close()
    assert await asyncio.wait_for(p.lost, 10) is None
    assert (t.get_extra_info("peername"), t.get_extra_info("sockname")) == names
    assert t.get_extra_info("no such thing", 5) == 5


async def test_write_eof_twice(peer: Peer) -> None:
    loop = asyncio.get_running_loop()
    t, p = await loop.create_connection(Recorder, peer.host, peer.port(ECHO))
    t.write(b"abc")
    t.write_eof()
    t.write_eof()
    assert await asyncio.wait_for(p.lost, 10) is None
    assert bytes(p.data) == b"abc" and p.calls == ["made", "data", "eof", "lost"]


async def test_connection_refused(peer: Peer) -> None:
    """A port nobody listens on: on the DockNet peer's endpoint one its
    services do not use; on the kernel one a socket of ours holds bound
    without listening."""
    with socket.socket(peer.family) as held:
        if peer.kind == "docknet":
            port = peer.port(ECHO) + 90
        else:
            held.bind((peer.host, 0))
            port = held.getsockname()[1]
        with pytest.raises(ConnectionRefusedError):
            await asyncio.open_connection(peer.host, port)


async def test_flow_control_slow_reader(peer: Peer) -> None:
    """Writing to a reader that takes 16 KiB every 10 ms: the writer is
    paused and resumed, and every byte arrives."""
    loop = asyncio.get_running_loop()
    t, p = await loop.create_connection(Recorder, peer.host, peer.port(SLOW))
    t.set_write_buffer_limits(high=256 * 1024)
    assert t.get_write_buffer_limits() == (64 * 1024, 256 * 1024)
    block = os.urandom(64 * 1024)
    h = hashlib.sha256()
    sent = 0
    # Write until the transport pushes back (the kernel takes a few MiB
    # into its socket buffer first).
    while not p.paused and sent < 64 << 20:
        t.write(block)
        h.update(block)
        sent += len(block)
    assert p.paused == 1
    assert t.get_write_buffer_size() > 256 * 1024
    t.write_eof()
    await asyncio.wait_for(p.lost, 120)
    assert p.resumed >= 1
    assert json_line(bytes(p.data)) == {"bytes": sent, "sha256": h.hexdigest()}


async def check_paused_then_resume(peer: Peer, p: Recorder, d: Dialled, nbytes: int) -> None:
    """``p``'s transport is paused and the peer's dial service is sending it
    ``nbytes``: check they are not delivered (the peer reports them
    written, and a round trip through the same peer made after that comes
    back while data_received has still not run); then resume reading and
    check all arrive in order."""
    echo_r, echo_w = await asyncio.open_connection(peer.host, peer.port(ECHO))
    try:
        assert await d.report() == {"sent": nbytes}
        echo_w.write(b"later")
        assert await asyncio.wait_for(echo_r.readexactly(5), 10) == b"later"
    finally:
        echo_w.close()
    assert not p.transport.is_reading()  # type: ignore[attr-defined]
    assert p.calls == ["made"] and len(p.data) == 0, "data_received ran while reading was paused"
    p.transport.resume_reading()  # type: ignore[attr-defined]
    assert p.transport.is_reading()  # type: ignore[attr-defined]
    await until(lambda: len(p.data) >= nbytes)
    assert bytes(p.data) == (bytes(range(256)) * (nbytes // 256 + 1))[:nbytes]
    p.transport.close()  # type: ignore[attr-defined]
    assert await d.report() == {"ended": "eof", "received": 0}
    assert await asyncio.wait_for(p.lost, 10) is None


async def test_pause_reading_stops_data(peer: Peer, local_host: str) -> None:
    """While reading is paused, bytes the peer has sent are not delivered;
    resume_reading lets them all through."""
    async with serving(Recorder, local_host) as (port, protocols):
        async with dial(peer, local_host, port, 64 * 1024) as d:
            p = await accepted(protocols)
            p.transport.pause_reading()  # type: ignore[attr-defined]
            d.go()
            await check_paused_then_resume(peer, p, d, 64 * 1024)


async def test_pause_reading_in_connection_made(peer: Peer, local_host: str, request: pytest.FixtureRequest) -> None:
    """A protocol may pause reading in connection_made (asyncio's own loop
    starts reading only if it is still wanted then): nothing is delivered
    until it resumes."""
    xfail_on(request, "uvloop", "uvloop starts reading after connection_made whatever the protocol asked "
             "(basetransport.pyx: _call_connection_made calls _start_reading unconditionally)")

    class PausesAtOnce(Recorder):
        def connection_made(self, transport: asyncio.BaseTransport) -> None:
            super().connection_made(transport)
            transport.pause_reading()  # type: ignore[attr-defined]

    async with serving(PausesAtOnce, local_host) as (port, protocols):
        async with dial(peer, local_host, port, 4096) as d:
            d.go()
            await check_paused_then_resume(peer, await accepted(protocols), d, 4096)


async def test_buffered_protocol(peer: Peer) -> None:
    loop = asyncio.get_running_loop()

    class Buffered(asyncio.BufferedProtocol):
        def __init__(self) -> None:
            self.buf = bytearray(65536)
            self.got = bytearray()
            self.updates = 0
            self.done = loop.create_future()

        def connection_made(self, transport: asyncio.BaseTransport) -> None:
            transport.write((3 << 20).to_bytes(8, "big"))  # type: ignore[attr-defined]

        def get_buffer(self, sizehint: int) -> bytearray:
            return self.buf

        def buffer_updated(self, nbytes: int) -> None:
            self.updates += 1
            self.got += self.buf[:nbytes]

        def eof_received(self) -> bool:
            return False

        def connection_lost(self, exc: BaseException | None) -> None:
            self.done.set_result(exc)

    t, p = await loop.create_connection(Buffered, peer.host, peer.port(SOURCE))
    assert await asyncio.wait_for(p.done, 30) is None
    assert len(p.got) == 3 << 20
    assert bytes(p.got[:512]) == bytes(range(256)) * 2
    assert p.updates >= (3 << 20) // 65536


async def test_pause_reading_inside_data_received(peer: Peer) -> None:
    """A protocol that pauses in data_received gets no call while paused,
    however much is waiting (a round trip through the same peer comes back
    meanwhile); each resume lets the next chunk through, and 4 MiB arrive
    whole and in order."""
    loop = asyncio.get_running_loop()
    echo_r, echo_w = await asyncio.open_connection(peer.host, peer.port(ECHO))

    class Pauser(Recorder):
        chunks = 0

        def data_received(self, data: bytes) -> None:
            super().data_received(data)
            self.chunks += 1
            self.transport.pause_reading()  # type: ignore[attr-defined]

    t, p = await loop.create_connection(Pauser, peer.host, peer.port(SOURCE))
    t.write((4 << 20).to_bytes(8, "big"))
    while not p.lost.done():
        seen = p.chunks
        for _ in range(3000):
            if p.chunks != seen or p.lost.done():
                break
            await asyncio.sleep(0.001)
        if p.lost.done():
            break
        assert p.chunks == seen + 1 and not t.is_reading()
        echo_w.write(b"!")
        assert await asyncio.wait_for(echo_r.readexactly(1), 10) == b"!"
        assert p.chunks == seen + 1, "data_received ran while reading was paused"
        t.resume_reading()
    echo_w.close()
    assert await p.lost is None
    assert bytes(p.data) == bytes(range(256)) * (4 << 12)


async def test_pause_inside_buffer_updated_with_bytes_left(peer: Peer) -> None:
    """A buffered protocol with a buffer smaller than what arrived, which
    pauses in each buffer_updated and resumes a moment later. The echo
    comes back as one segment, so nothing new arrives to announce the rest
    after the first pause, and every byte must still come (resume_reading
    looks for what was left)."""
    loop = asyncio.get_running_loop()
    payload = os.urandom(4096)

    class SmallPauser(asyncio.BufferedProtocol):
        def __init__(self) -> None:
            self.buf = bytearray(1024)
            self.got = bytearray()
            self.transport: Any = None
            self.whole = loop.create_future()

        def connection_made(self, transport: asyncio.BaseTransport) -> None:
            self.transport = transport

        def get_buffer(self, sizehint: int) -> bytearray:
            return self.buf

        def buffer_updated(self, nbytes: int) -> None:
            self.got += self.buf[:nbytes]
            if len(self.got) >= len(payload) and not self.whole.done():
                self.whole.set_result(None)
            self.transport.pause_reading()
            loop.call_later(0.002, self.transport.resume_reading)

    t, p = await loop.create_connection(SmallPauser, peer.host, peer.port(ECHO))
    t.write(payload)
    await asyncio.wait_for(p.whole, 20)
    assert bytes(p.got) == payload
    t.close()


async def test_set_protocol_mid_stream(peer: Peer) -> None:
    """After set_protocol() in a callback, the new protocol gets the bytes
    that follow, and the old one none of them."""
    loop = asyncio.get_running_loop()
    second = Recorder()

    class First(Recorder):
        def data_received(self, data: bytes) -> None:
            super().data_received(data)
            second.transport = self.transport
            self.transport.set_protocol(second)  # type: ignore[attr-defined]

    t, first = await loop.create_connection(First, peer.host, peer.port(ECHO))
    t.write(b"one")
    for _ in range(5000):
        if bytes(first.data) == b"one":
            break
        await asyncio.sleep(0.001)
    t.write(b"two")
    for _ in range(5000):
        if bytes(second.data) == b"two":
            break
        await asyncio.sleep(0.001)
    assert (bytes(first.data), bytes(second.data)) == (b"one", b"two")
    assert t.get_protocol() is second
    t.close()
    assert await asyncio.wait_for(second.lost, 10) is None


async def test_write_takes_bytes_likes_and_refuses_others(peer: Peer) -> None:
    """bytes, bytearray, memoryview slices and writelines arrive in order;
    a str is a TypeError and sends nothing."""
    r, w = await asyncio.open_connection(peer.host, peer.port(ECHO))
    t = w.transport
    with pytest.raises(TypeError):
        t.write("text")  # type: ignore[arg-type]
    t.write(b"by")
    t.write(bytearray(b"te"))
    t.write(memoryview(b"xxsxx")[2:3])
    t.write(b"")
    t.writelines([b"-", bytearray(b"li"), memoryview(b"nes")])
    assert await asyncio.wait_for(r.readexactly(11), 10) == b"bytes-lines"
    w.close()
    await w.wait_closed()


async def test_data_received_error_closes_and_is_reported(peer: Peer) -> None:
    """The protocol's data_received raises: the loop's exception handler
    gets the error, and connection_lost gets it too."""
    loop = asyncio.get_running_loop()
    reported: list[dict[str, Any]] = []
    loop.set_exception_handler(lambda _loop, ctx: reported.append(ctx))

    class Failing(Recorder):
        def data_received(self, data: bytes) -> None:
            super().data_received(data)
            raise ValueError("a bug in the protocol")

    t, p = await loop.create_connection(Failing, peer.host, peer.port(ECHO))
    t.write(b"boom")
    exc = await asyncio.wait_for(p.lost, 10)
    assert isinstance(exc, ValueError)
    assert [type(c.get("exception")) for c in reported] == [ValueError]
    assert t.is_closing() and p.calls == ["made", "data", "lost"]


async def test_1000_concurrent_stream_connections(peer: Peer) -> None:
    async def one(i: int) -> bool:
        r, w = await asyncio.open_connection(peer.host, peer.port(ECHO))
        msg = f"conn {i} ".encode() * 10
        w.write(msg)
        ok = await r.readexactly(len(msg)) == msg
        w.close()
        await w.wait_closed()
        return ok

    results = await asyncio.wait_for(asyncio.gather(*(one(i) for i in range(1000))), 120)
    assert all(results)


async def test_server_api_and_connect_back(peer: Peer, local_host: str) -> None:
    """A server here; the peer connects back to it through its own loop."""
    loop = asyncio.get_running_loop()
    seen: list[tuple[str, int]] = []

    async def handle(r: asyncio.StreamReader, w: asyncio.StreamWriter) -> None:
        seen.append(w.get_extra_info("peername"))
        data = await r.read(-1)
        w.write(b"server saw " + data)
        await w.drain()
        w.close()

    server = await asyncio.start_server(handle, local_host, 0)
    async with server:
        assert server.is_serving()
        assert server.get_loop() is loop
        port = server.sockets[0].getsockname()[1]
        assert server.sockets[0].getsockname()[0] == local_host
        r, w = await asyncio.open_connection(peer.host, peer.port(CONNECT_BACK))
        w.write(b'{"host": "%s", "port": %d, "data": "hi"}\n' % (local_host.encode(), port))
        assert await asyncio.wait_for(r.read(-1), 30) == b"server saw hi"
        w.close()
        assert seen and seen[0][0] == peer.host
    assert not server.is_serving()
    await server.wait_closed()


async def test_server_start_serving_later_and_close(local_host: str) -> None:
    loop = asyncio.get_running_loop()
    server = await loop.create_server(asyncio.Protocol, local_host, 0, start_serving=False)
    assert not server.is_serving()
    await server.start_serving()
    assert server.is_serving()
    server.close()
    await server.wait_closed()
    assert not server.is_serving()


async def test_tls_round_trip(peer: Peer, tls_files: tuple[str, str]) -> None:
    ctx = ssl.create_default_context(cafile=tls_files[0])
    r, w = await asyncio.open_connection(peer.host, peer.port(TLS), ssl=ctx, server_hostname="peer.test")
    assert w.get_extra_info("ssl_object") is not None
    assert w.get_extra_info("peercert")["subject"]
    for size in (10, 20000, 300000):
        msg = os.urandom(size)
        w.write(msg)
        assert await asyncio.wait_for(r.readexactly(size), 30) == msg
    w.close()


async def test_start_tls_upgrade(peer: Peer, tls_files: tuple[str, str]) -> None:
    """A plain connection upgraded in place (loop.start_tls on both ends)."""
    r, w = await asyncio.open_connection(peer.host, peer.port(STARTTLS))
    w.write(b"STARTTLS\n")
    assert await r.readline() == b"OK\n"
    ctx = ssl.create_default_context(cafile=tls_files[0])
    await w.start_tls(ctx, server_hostname="peer.test")
    assert w.get_extra_info("ssl_object") is not None
    w.write(b"secret" * 1000)
    assert await asyncio.wait_for(r.readexactly(6000), 10) == b"secret" * 1000
    w.close()


async def test_kernel_and_docknet_at_once(peer: Peer, peers: dict[str, Peer]) -> None:
    """The same loop talks to a kernel-socket server on 127.0.0.1 and to its
    own kind of peer at the same time."""
    kernel = peers["uvloop"]
    (r1, w1), (r2, w2) = await asyncio.gather(
        asyncio.open_connection(kernel.host, kernel.port(ECHO)),
        asyncio.open_connection(peer.host, peer.port(ECHO)),
    )
    assert type(w1.transport).__name__ != "DockNetTCPTransport"
    expect_transport(w2)
    w1.write(b"kernel")
    w2.write(b"docknet")
    assert await r1.readexactly(6) == b"kernel"
    assert await r2.readexactly(7) == b"docknet"
    w1.close()
    w2.close()


async def test_peer_process_killed(peers: dict[str, Peer], session_master: Any, tls_files: Any) -> None:
    """A peer process is killed with SIGKILL while one connection is idle
    and another streams to it. The streaming one is lost with a
    ConnectionError on both paths; the idle one ends too: the kernel closes
    a dead process's sockets (EOF), DockNet's master tells the survivors
    (ConnectionResetError), within two seconds, without any write."""
    kind = loop_kind()
    base = 9300 if kind == "docknet" else 0
    env = dict(session_master.env, DOCKNET_ENDPOINT=f"victim-{kind}")
    victim = Proc([sys.executable, str(TESTS / "aio_peer.py"), "--kind", kind, "--base", str(base)],
                  env, f"victim-{kind}")
    try:
        target = Peer.from_ready(kind, victim.expect("ready", timeout=60), victim)
        loop = asyncio.get_running_loop()
        t_idle, p_idle = await loop.create_connection(Recorder, target.host, target.port(ECHO))
        t_busy, p_busy = await loop.create_connection(Recorder, target.host, target.port(SLOW))
        block = b"z" * 65536
        for _ in range(16):
            t_busy.write(block)
        await asyncio.sleep(0.2)
        victim.kill(signal.SIGKILL)
        victim.wait()
        t0 = loop.time()
        idle_exc = await asyncio.wait_for(p_idle.lost, 5)
        assert loop.time() - t0 < 2.0
        if kind == "docknet":
            assert isinstance(idle_exc, ConnectionResetError), idle_exc
        else:
            assert idle_exc is None and "eof" in p_idle.calls
        while not p_busy.lost.done():
            t_busy.write(block)
            await asyncio.sleep(0.01)
        assert isinstance(p_busy.lost.result(), ConnectionError), p_busy.lost.result()
    finally:
        victim.stop()


async def test_wildcard_server_listens_on_both(peer: Peer, local_host: str, family: int) -> None:
    """A wildcard bind serves the kernel (127.0.0.1 and ::1) and, under
    DockNetLoop, the DockNet endpoint too (its IPv4 and IPv6 addresses, both
    on the kernel's IPv4 port number); serve_forever ends with a
    cancellation that closes the server."""
    loop = asyncio.get_running_loop()

    async def handle(r: asyncio.StreamReader, w: asyncio.StreamWriter) -> None:
        w.write(type(w.transport).__name__.encode() + b" " + await r.read(-1))
        await w.drain()
        w.close()

    server = await asyncio.start_server(handle, None, 0)
    names = {s.getsockname()[0]: s.getsockname()[1] for s in server.sockets}
    port = names["0.0.0.0"]
    # The kernel's IPv6 listener: with port 0 its own number, as asyncio
    # and uvloop bind each family of a wildcard.
    kernel = (("127.0.0.1", port) if family == 4 else ("::1", names["::"]))
    task = loop.create_task(server.serve_forever())
    await asyncio.sleep(0)
    r, w = await asyncio.open_connection(*kernel)
    w.write(b"kernel")
    w.write_eof()
    assert (await r.read(-1)).endswith(b" kernel")
    w.close()
    if loop_kind() == "docknet":
        assert names[local_host] == port  # one port number on both paths
        r, w = await asyncio.open_connection(peer.host, peer.port(CONNECT_BACK))
        w.write(b'{"host": "%s", "port": %d, "data": "dn"}\n' % (local_host.encode(), port))
        assert await asyncio.wait_for(r.read(-1), 30) in (b"DockNetTCPTransport dn", b"FastChannelTransport dn")
        w.close()
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert not server.is_serving()


async def test_getaddrinfo_resolves_service_names(peer_ready: dict[str, Any]) -> None:
    """A name has both families' addresses (this test is about both: it
    takes no one family's peer)."""
    loop = asyncio.get_running_loop()
    if loop_kind() != "docknet":
        pytest.skip("service names are DockNet's")
    peer = Peer.from_ready("docknet", *peer_ready["docknet"])
    peer6 = Peer.from_ready("docknet", *peer_ready["docknet"], family=6)
    v4 = (socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP, "", (peer.host, 8080))
    v6 = (socket.AF_INET6, socket.SOCK_STREAM, socket.IPPROTO_TCP, "", (peer6.host, 8080, 0, 0))
    # IPv4 first (RFC 6724 puts it before a unique local IPv6 address).
    assert await loop.getaddrinfo("aiopeer-docknet", 8080, type=socket.SOCK_STREAM) == [v4, v6]
    assert await loop.getaddrinfo("aiopeer-docknet", 8080, type=socket.SOCK_STREAM, family=socket.AF_INET) == [v4]
    assert await loop.getaddrinfo("aiopeer-docknet", 8080, type=socket.SOCK_STREAM, family=socket.AF_INET6) == [v6]
    # A literal is itself, in its family only.
    assert await loop.getaddrinfo(peer6.host, 8080, type=socket.SOCK_STREAM) == [v6]
    with pytest.raises(socket.gaierror):  # as the kernel's resolver answers
        await loop.getaddrinfo(peer6.host, 8080, type=socket.SOCK_STREAM, family=socket.AF_INET)
    for fam, p in ((0, peer), (socket.AF_INET6, peer6)):
        r, w = await asyncio.open_connection("aiopeer-docknet", p.port(ECHO), family=fam)
        expect_transport(w)
        assert w.get_extra_info("peername")[0] == p.host
        w.write(b"by name")
        assert await r.readexactly(7) == b"by name"
        w.close()


async def test_connections_between_endpoints_use_fast_channels(peer: Peer, session_master: Any) -> None:
    """Under DockNetLoop, a connection to an endpoint of the same master is
    carried by a fast channel (the master's API counts it); with fast
    channels off it goes through lwIP and the count does not move."""
    if loop_kind() != "docknet":
        pytest.skip("fast channels are DockNet's")
    from aiodocknet.cli.api_client import ApiClient

    api = ApiClient(os.path.join(session_master.run_dir, "api.sock"))
    before = (await asyncio.to_thread(api.call, "GET", "/v1/status"))["fast_channels"]["made"]
    r, w = await asyncio.open_connection(peer.host, peer.port(ECHO))
    expect_transport(w)
    w.write(b"over shared memory")
    assert await r.readexactly(18) == b"over shared memory"
    w.close()
    after = (await asyncio.to_thread(api.call, "GET", "/v1/status"))["fast_channels"]["made"]
    fast = asyncio.get_running_loop()._dn_fast_channels  # type: ignore[attr-defined]
    assert after - before == (1 if fast else 0)
