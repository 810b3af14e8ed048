"""A protocol that raises ends its own connection, never its neighbours'.

The poller hands out a batch of events at a time, already drained from C
(and a fast-channel pass serves every channel in one call): each test
opens many connections at once, makes every other protocol raise, and
checks that the others are served in full, that each raising one is
reported to the loop's exception handler and closed as uvloop closes it,
and that nothing else is reported. The same tests run under plain uvloop
(the reference) and DockNetLoop on both paths.
"""

from __future__ import annotations

import asyncio
import json
import os
import socket
import tempfile
import threading
from collections.abc import AsyncIterator
from typing import Any

import pytest
import pytest_asyncio

from conformance_util import Peer, loop_kind

ECHO, CONNECT_BACK, UDP = 0, 5, 6
CONNS = 16


class Boom(Exception):
    """What a misbehaving protocol raises here."""


@pytest_asyncio.fixture
async def handled() -> AsyncIterator[list[dict[str, Any]]]:
    """Every call of the loop's exception handler during the test."""
    loop = asyncio.get_running_loop()
    contexts: list[dict[str, Any]] = []
    old = loop.get_exception_handler()
    loop.set_exception_handler(lambda _loop, ctx: contexts.append(ctx))
    yield contexts
    loop.set_exception_handler(old)


def raised(contexts: list[dict[str, Any]]) -> list[BaseException]:
    return [ctx["exception"] for ctx in contexts if "exception" in ctx]


class Echoed(asyncio.Protocol):
    """Waits for its message to come back; raises from `where` if bad."""

    def __init__(self, i: int, where: str | None) -> None:
        loop = asyncio.get_running_loop()
        self.i, self.where = i, where
        self.msg = b"message %d " % i * 50
        self.got = bytearray()
        self.done: asyncio.Future[bytes] = loop.create_future()
        self.lost: asyncio.Future[BaseException | None] = loop.create_future()
        self.exc = Boom(f"{where} of connection {i}")

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport
        if self.where == "connection_made":
            raise self.exc

    def data_received(self, data: bytes) -> None:
        if self.where == "data_received":
            raise self.exc
        self.got += data
        if len(self.got) >= len(self.msg) and not self.done.done():
            self.done.set_result(bytes(self.got))

    def eof_received(self) -> bool | None:
        if self.where == "eof_received":
            raise self.exc
        return None

    def connection_lost(self, exc: BaseException | None) -> None:
        self.lost.set_result(exc)


class BufferedEchoed(asyncio.BufferedProtocol, Echoed):
    """The same, reading into its own buffer (a fast channel serves these
    from its Python half: the C pass hands every event to it)."""

    def get_buffer(self, sizehint: int) -> bytearray:
        self.buf = bytearray(64 * 1024)
        return self.buf

    def buffer_updated(self, nbytes: int) -> None:
        self.data_received(bytes(self.buf[:nbytes]))


async def open_many(peer: Peer, where: str, kind: type[Echoed] = Echoed) -> list[Echoed]:
    loop = asyncio.get_running_loop()
    protocols = []
    for i in range(CONNS):
        _, p = await loop.create_connection(lambda i=i: kind(i, where if i % 2 == 0 else None),
                                            peer.host, peer.port(ECHO))
        protocols.append(p)
    return protocols


@pytest.mark.parametrize("where", ["data_received", "eof_received"])
async def test_a_raising_stream_protocol_spares_the_others(peer: Peer, handled: list[dict[str, Any]],
                                                           where: str) -> None:
    protocols = await open_many(peer, where)
    # All at once: the echoes come back together, in as few batches as
    # the loop makes of them.
    for p in protocols:
        p.transport.write(p.msg)  # type: ignore[attr-defined]
        p.transport.write_eof()  # type: ignore[attr-defined]
    good = [p for p in protocols if p.where is None]
    bad = [p for p in protocols if p.where is not None]
    for p in good:
        assert await asyncio.wait_for(p.done, 30) == p.msg
        assert await asyncio.wait_for(p.lost, 30) is None
    for p in bad:
        assert await asyncio.wait_for(p.lost, 30) is p.exc
        assert p.transport.is_closing()
    assert sorted(map(str, raised(handled))) == sorted(str(p.exc) for p in bad)
    for ctx in handled:
        assert ctx["transport"] is next(p.transport for p in bad if p.exc is ctx["exception"])
        assert "protocol" in ctx and ctx["message"]


async def test_a_raising_connection_made_is_reported_and_spares_the_others(
        peer: Peer, handled: list[dict[str, Any]]) -> None:
    """Reported, and the transport is left for the protocol to close (as
    asyncio and uvloop leave it: it was made, nothing failed in it)."""
    protocols = await open_many(peer, "connection_made")
    await asyncio.sleep(0)
    for p in protocols:
        p.transport.write(p.msg)  # type: ignore[attr-defined]
    for p in protocols:
        if p.where is None:
            assert await asyncio.wait_for(p.done, 30) == p.msg
    bad = [p for p in protocols if p.where is not None]
    assert sorted(map(str, raised(handled))) == sorted(str(p.exc) for p in bad)
    for p in protocols:
        p.transport.close()
        assert await asyncio.wait_for(p.lost, 30) is None


class Datagrams(asyncio.DatagramProtocol):
    def __init__(self, i: int, bad: bool) -> None:
        loop = asyncio.get_running_loop()
        self.i, self.bad = i, bad
        self.msg = b"datagram %d" % i
        self.done: asyncio.Future[bytes] = loop.create_future()
        self.lost: asyncio.Future[BaseException | None] = loop.create_future()
        self.exc = Boom(f"datagram_received of endpoint {i}")

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport

    def datagram_received(self, data: bytes, addr: Any) -> None:
        if self.bad:
            raise self.exc
        if not self.done.done():
            self.done.set_result(data)

    def connection_lost(self, exc: BaseException | None) -> None:
        self.lost.set_result(exc)


async def test_a_raising_datagram_protocol_spares_the_others(peer: Peer, handled: list[dict[str, Any]]) -> None:
    """Each raise is reported, and every endpoint stays open (as asyncio
    and uvloop keep theirs: one bad datagram does not end a socket)."""
    loop = asyncio.get_running_loop()
    protocols: list[Datagrams] = []
    for i in range(CONNS):
        _, p = await loop.create_datagram_endpoint(lambda i=i: Datagrams(i, i % 2 == 0),
                                                   remote_addr=(peer.host, peer.port(UDP)))
        protocols.append(p)
    good = [p for p in protocols if not p.bad]
    bad = [p for p in protocols if p.bad]
    # Datagrams may be lost: each endpoint sends until it is answered (a
    # bad one: until its protocol has raised).
    for _ in range(100):
        said = set(map(str, raised(handled)))
        waiting = [p for p in protocols if not p.done.done() and str(p.exc) not in said]
        if not waiting:
            break
        for p in waiting:
            p.transport.sendto(p.msg)  # type: ignore[attr-defined]
        await asyncio.sleep(0.05)
    for p in good:
        assert await asyncio.wait_for(p.done, 5) == p.msg
    assert set(map(str, raised(handled))) == {str(p.exc) for p in bad}
    if loop_kind() == "docknet":  # (uvloop's context names no transport)
        for ctx in handled:
            assert ctx["transport"] is next(p.transport for p in bad if p.exc is ctx["exception"])
    for p in protocols:
        assert not p.transport.is_closing()
        p.transport.close()
        assert await asyncio.wait_for(p.lost, 5) is None


async def test_a_raising_factory_spares_the_other_accepts(peer: Peer, local_host: str,
                                                          handled: list[dict[str, Any]]) -> None:
    """Our server's factory fails for every other connection the peer makes
    to it (over a fast channel under docknet-fast): those connections end,
    each reported once, and every other one is served."""
    if loop_kind() != "docknet":
        pytest.skip("uvloop's accept failures are its own (a kernel server)")
    loop = asyncio.get_running_loop()
    calls = 0

    class Answer(asyncio.Protocol):
        def connection_made(self, transport: asyncio.BaseTransport) -> None:
            self.transport = transport
            self.data = bytearray()

        def data_received(self, data: bytes) -> None:
            self.data += data

        def eof_received(self) -> bool:
            self.transport.write(b"server saw " + self.data)  # type: ignore[attr-defined]
            self.transport.close()
            return True

    def factory() -> asyncio.Protocol:
        nonlocal calls
        calls += 1
        if calls % 2 == 0:
            raise Boom(f"factory call {calls}")
        return Answer()

    server = await loop.create_server(factory, local_host, 0)
    port = server.sockets[0].getsockname()[1]

    async def connect_back(i: int) -> bytes:
        r, w = await asyncio.open_connection(peer.host, peer.port(CONNECT_BACK))
        w.write(json.dumps({"host": local_host, "port": port, "data": str(i)}).encode() + b"\n")
        try:
            return await asyncio.wait_for(r.read(-1), 30)
        finally:
            w.close()

    async with server:
        answers = await asyncio.gather(*(connect_back(i) for i in range(CONNS)))
        served = [a for a in answers if a.startswith(b"server saw ")]
        assert len(served) == calls - calls // 2, answers
        assert len({a for a in served}) == len(served) and all(a[11:].isdigit() for a in served), answers
        failures = raised(handled)
        assert len(failures) == calls // 2 and all(isinstance(e, Boom) for e in failures), handled
        assert all(ctx.get("server") is server for ctx in handled)
        # And the server still serves (the next call or the one after is
        # one the factory does not fail).
        answers = [await connect_back(99)]
        if answers[0] != b"server saw 99":
            answers.append(await connect_back(99))
        assert answers[-1] == b"server saw 99", answers


class SlowMaster:
    """A real unix socket the test answers resolve requests on, late: only
    once the test says so."""

    def __init__(self, address: str) -> None:
        self.dir = tempfile.TemporaryDirectory(prefix="dn-slow-master-")
        self.path = os.path.join(self.dir.name, "master.sock")
        self.address = address
        self.asked: list[dict[str, Any]] = []
        self.answer = threading.Event()
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        self.sock.bind(self.path)
        self.sock.listen(8)
        self.sock.settimeout(30)
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def _serve(self) -> None:
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            with conn:
                self.asked.append(json.loads(conn.recv(65536)))
                self.answer.wait(30)
                conn.send(json.dumps({"ok": True, "address": self.address}).encode())

    def close(self) -> None:
        self.answer.set()
        self.sock.shutdown(socket.SHUT_RDWR)  # wakes the accept
        self.sock.close()
        self.thread.join(5)
        self.dir.cleanup()


async def test_name_resolution_does_not_block_the_loop() -> None:
    """While the master takes its time over a name, the loop runs on (a
    timer fires before the answer comes); callers of one name share one
    question, and the answer is cached."""
    if loop_kind() != "docknet":
        pytest.skip("names are DockNet's only under DockNetLoop")
    loop = asyncio.get_running_loop()
    ep = loop._docknet()  # type: ignore[attr-defined]
    assert ep is not None
    name = f"slow-service-{os.getpid()}"
    slow = SlowMaster(ep.address)
    real, ep.master = ep.master, slow.path
    order: list[str] = []
    try:
        async def resolve(who: str) -> list[Any]:
            infos = await loop.getaddrinfo(name, 80, type=socket.SOCK_STREAM)
            order.append(who)
            return infos

        first = asyncio.create_task(resolve("first answer"))
        second = asyncio.create_task(resolve("second answer"))

        def timer() -> None:
            order.append("timer")
            slow.answer.set()  # only now may the master answer

        loop.call_later(0.05, timer)
        infos = await asyncio.wait_for(first, 30)
        await asyncio.wait_for(second, 30)
        assert order == ["timer", "first answer", "second answer"]
        assert infos[0][4] == (ep.address, 80)
        assert [m["name"] for m in slow.asked] == [name]
        # A cached answer asks nobody.
        assert (await loop.getaddrinfo(name, 81, type=socket.SOCK_STREAM))[0][4] == (ep.address, 81)
        assert len(slow.asked) == 1
    finally:
        ep.master = real
        ep._names.pop(name, None)
        slow.close()


async def test_the_poller_contains_a_transport_that_raises(peer: Peer, handled: list[dict[str, Any]]) -> None:
    """The last line: a transport's own event handling lets an exception
    out (here made to, for every other connection). The poller's batch
    and the fast-channel pass in C go on; that transport takes its
    fatal-error path."""
    if loop_kind() != "docknet":
        pytest.skip("the poller is DockNet's")
    protocols = await open_many(peer, "transport", BufferedEchoed)
    for p in protocols:
        if p.where is not None:
            t = p.transport

            def broken(*args: Any, exc: Boom = p.exc) -> None:
                raise exc

            # lwIP's events reach _read_ready from the poller's batch; a
            # fast channel's (for a buffered protocol) reach _fc_ready from
            # the C pass.
            t._read_ready = broken  # type: ignore[attr-defined]
            t._fc_ready = broken  # type: ignore[attr-defined]
    for p in protocols:
        p.transport.write(p.msg)  # type: ignore[attr-defined]
        p.transport.write_eof()  # type: ignore[attr-defined]
    for p in protocols:
        if p.where is None:
            assert await asyncio.wait_for(p.done, 30) == p.msg
            assert await asyncio.wait_for(p.lost, 30) is None
        else:
            assert await asyncio.wait_for(p.lost, 30) is p.exc
    # (Each raise is reported: an lwIP connection may have had more than
    # one event in flight when it was closed.)
    assert set(map(str, raised(handled))) == {str(p.exc) for p in protocols if p.where is not None}
