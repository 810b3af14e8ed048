"""TCP transports, protocols, streams and servers: the asyncio contract,
under uvloop (kernel) and DockNetLoop (through the master)."""

from __future__ import annotations

import asyncio
import hashlib
import os
import signal
import socket
import ssl
import sys
from pathlib import Path
from typing import Any

import pytest

from conformance_util import Peer, expect_transport, json_line, loop_kind
from dn_harness import Proc

TESTS = Path(__file__).resolve().parent.parent

ECHO, COUNT, RESET, SLOW, SOURCE, CONNECT_BACK, UDP, TLS, STARTTLS = range(9)


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
    assert peername == (peer.host, peer.port(ECHO))
    assert isinstance(sockname[1], int) and sockname[1] > 0
    sock = w.get_extra_info("socket")
    assert sock.family == socket.AF_INET
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


async def test_eof_received_true_keeps_write_side_open(peer: Peer) -> None:
    loop = asyncio.get_running_loop()

    class KeepOpen(Recorder):
        def eof_received(self) -> bool:
            super().eof_received()
            self.transport.write(b"after-eof")  # type: ignore[attr-defined]
            return True

    t, p = await loop.create_connection(KeepOpen, peer.host, peer.port(ECHO))
    t.write(b"ping")
    t.write_eof()
    await asyncio.wait_for(p.lost, 10)
    assert p.calls[:3] == ["made", "data", "eof"]
    assert bytes(p.data) == b"ping"


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


async def test_abort_resets_peer(peer: Peer) -> None:
    """Our abort(): the echo service sees a reset; we see lost(None)."""
    loop = asyncio.get_running_loop()
    t, p = await loop.create_connection(Recorder, peer.host, peer.port(ECHO))
    t.write(b"x")
    await asyncio.sleep(0.01)
    t.abort()
    assert t.is_closing()
    assert await asyncio.wait_for(p.lost, 10) is None


async def test_connection_refused(peer: Peer) -> None:
    with pytest.raises(ConnectionRefusedError):
        await asyncio.open_connection(peer.host, peer.port(90))


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


async def test_pause_reading_stops_data(peer: Peer) -> None:
    loop = asyncio.get_running_loop()
    t, p = await loop.create_connection(Recorder, peer.host, peer.port(SOURCE))
    t.pause_reading()
    assert not t.is_reading()
    t.write((1 << 20).to_bytes(8, "big"))
    await asyncio.sleep(0.2)
    assert len(p.data) == 0
    t.resume_reading()
    assert t.is_reading()
    await asyncio.wait_for(p.lost, 30)
    assert len(p.data) == 1 << 20


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
    however much is waiting; each resume lets the next chunk through, and
    4 MiB arrive whole and in order."""
    loop = asyncio.get_running_loop()

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
        await asyncio.sleep(0.005)
        assert p.chunks == seen + 1, "data_received ran while reading was paused"
        t.resume_reading()
    assert await p.lost is None
    assert bytes(p.data) == bytes(range(256)) * (4 << 12)


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
    base = 29100 if kind == "uvloop" else 9300
    env = dict(session_master.env, DOCKNET_ENDPOINT=f"victim-{kind}")
    victim = Proc([sys.executable, str(TESTS / "aio_peer.py"), "--kind", kind, "--base", str(base)],
                  env, f"victim-{kind}")
    try:
        ready = victim.expect("ready", timeout=60)
        loop = asyncio.get_running_loop()
        t_idle, p_idle = await loop.create_connection(Recorder, ready["host"], base + ECHO)
        t_busy, p_busy = await loop.create_connection(Recorder, ready["host"], base + SLOW)
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


async def test_wildcard_server_listens_on_both(peer: Peer, local_host: str) -> None:
    """A wildcard bind serves the kernel (127.0.0.1) and, under DockNetLoop,
    the DockNet endpoint too, on one port number; serve_forever ends with a
    cancellation that closes the server."""
    loop = asyncio.get_running_loop()

    async def handle(r: asyncio.StreamReader, w: asyncio.StreamWriter) -> None:
        w.write(type(w.transport).__name__.encode() + b" " + await r.read(-1))
        await w.drain()
        w.close()

    server = await asyncio.start_server(handle, None, 0)
    names = {s.getsockname()[0]: s.getsockname()[1] for s in server.sockets}
    port = names["0.0.0.0"]
    assert "0.0.0.0" in names
    task = loop.create_task(server.serve_forever())
    await asyncio.sleep(0)
    r, w = await asyncio.open_connection("127.0.0.1", port)
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


async def test_getaddrinfo_resolves_service_names(peer: Peer) -> None:
    loop = asyncio.get_running_loop()
    if loop_kind() != "docknet":
        pytest.skip("service names are DockNet's")
    infos = await loop.getaddrinfo("aiopeer-docknet", 8080, type=socket.SOCK_STREAM)
    assert infos == [(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP, "", (peer.host, 8080))]
    r, w = await asyncio.open_connection("aiopeer-docknet", peer.port(ECHO))
    expect_transport(w)
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
