"""TLS over every loop of the suite: asyncio's and uvloop's over kernel
loopback (the references), DockNetLoop through the switch and on a fast
channel, the far end another process of the same kind (tests/aio_peer.py
for echo and STARTTLS, tests/tls_peer.py for the rest).

On DockNet the TLS protocol must be uvloop's compiled one
(``uvloop.loop.SSLProtocol``, what uvloop itself uses), on both paths and
on both sides of a connection; the behaviour asked of it is uvloop's.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import os
import ssl
import sys
import tempfile
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest
import pytest_asyncio

from conformance_util import Peer, loop_kind
from dn_harness import Master, Proc, self_signed

from aiodocknet.transports.sockets import DockNetSocket

TESTS = Path(__file__).resolve().parent.parent
TLS, STARTTLS = 7, 8  # tests/aio_peer.py's services
MTLS_ECHO, SEND_AND_CLOSE, TLS_DIAL = range(3)  # tests/tls_peer.py's
NAME = "peer.test"
MIB = 1 << 20

# X509_V_ERR_* (OpenSSL's x509_vfy.h), the verify_code of a refusal.
SELF_SIGNED = 18
HOSTNAME_MISMATCH = 62


class Certs:
    def __init__(self, server: tuple[str, str], client: tuple[str, str], rogue: tuple[str, str]) -> None:
        self.server, self.client, self.rogue = server, client, rogue

    def client_context(self, *, cafile: str | None = None, with_cert: bool = False) -> ssl.SSLContext:
        ctx = ssl.create_default_context(cafile=cafile or self.server[0])
        if with_cert:
            ctx.load_cert_chain(*self.client)
        return ctx

    def server_context(self, *, require_client: bool = False) -> ssl.SSLContext:
        ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH, cafile=self.client[0] if require_client else None)
        ctx.load_cert_chain(*self.server)
        if require_client:
            ctx.verify_mode = ssl.CERT_REQUIRED
        return ctx


@pytest.fixture(scope="module")
def certs(tls_files: tuple[str, str]) -> Iterator[Certs]:
    """The peers' certificate (tls_files, for peer.test), a client's, and a
    stranger's that also says peer.test but nobody trusts."""
    with tempfile.TemporaryDirectory(prefix="dn-tls-client-") as c, \
            tempfile.TemporaryDirectory(prefix="dn-tls-rogue-") as r:
        yield Certs(tls_files, self_signed(c, "client.test"), self_signed(r, NAME))


@pytest.fixture(scope="module")
def tls_peers(session_master: Master, certs: Certs) -> Iterator[dict[str, Peer]]:
    out: dict[str, Peer] = {}
    procs = []
    try:
        for kind in ("asyncio", "uvloop", "docknet"):
            env = dict(session_master.env, DOCKNET_ENDPOINT=f"tlspeer-{kind}")
            p = Proc([sys.executable, str(TESTS / "tls_peer.py"), "--kind", kind,
                      "--cert", certs.server[0], "--key", certs.server[1], "--client-ca", certs.client[0],
                      "--client-cert", certs.client[0], "--client-key", certs.client[1]], env, f"tls-peer-{kind}")
            procs.append(p)
            out[kind] = Peer.from_ready(kind, p.expect("ready", timeout=60), p)
        yield out
    finally:
        for p in procs:
            p.stop()


@pytest_asyncio.fixture
async def tpeer(tls_peers: dict[str, Peer]) -> Peer:
    return tls_peers[loop_kind()]


def path_of(transport: asyncio.BaseTransport) -> str:
    """Which way the bytes under a TLS transport go: "fast" (a fast
    channel), "switch" (lwIP) or "kernel"."""
    sock = transport.get_extra_info("socket")
    if not isinstance(sock, DockNetSocket):
        return "kernel"
    return "fast" if repr(sock) == "<DockNetSocket fast channel>" else "switch"


def expect_tls(transport: asyncio.BaseTransport) -> None:
    """The connection took the loop's path, under the loop's TLS protocol:
    uvloop's compiled one on DockNet and uvloop, asyncio's on asyncio."""
    loop = asyncio.get_running_loop()
    kind = loop_kind()
    if kind == "docknet":
        want = "fast" if loop._dn_fast_channels else "switch"  # type: ignore[attr-defined]
    else:
        want = "kernel"
    assert path_of(transport) == want
    module = type(transport).__module__
    assert module == ("asyncio.sslproto" if kind == "asyncio" else "uvloop.loop"), module


class Recorder(asyncio.Protocol):
    def __init__(self) -> None:
        self.calls: list[str] = []
        self.data = bytearray()
        self.lost: asyncio.Future[BaseException | None] = asyncio.get_running_loop().create_future()

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.calls.append("made")
        self.transport = transport

    def data_received(self, data: bytes) -> None:
        if self.calls[-1] != "data":
            self.calls.append("data")
        self.data += data

    def eof_received(self) -> bool:
        self.calls.append("eof")
        return False

    def connection_lost(self, exc: BaseException | None) -> None:
        self.calls.append("lost")
        self.lost.set_result(exc)


def pattern(n: int) -> bytes:
    return (bytes(range(256)) * (n // 256 + 1))[:n]


async def test_handshake_and_extra_info(peer: Peer, certs: Certs) -> None:
    r, w = await asyncio.open_connection(peer.host, peer.port(TLS), ssl=certs.client_context(), server_hostname=NAME)
    expect_tls(w.transport)
    obj = w.get_extra_info("ssl_object")
    assert isinstance(obj, ssl.SSLObject) and obj.server_hostname == NAME
    assert obj.version() == "TLSv1.3"
    assert dict(x[0] for x in w.get_extra_info("peercert")["subject"])["commonName"] == NAME
    name, version, bits = w.get_extra_info("cipher")
    assert version == "TLSv1.3" and bits >= 128 and name == obj.cipher()[0]
    assert isinstance(w.get_extra_info("sslcontext"), ssl.SSLContext)
    assert w.get_extra_info("peername") == (peer.host, peer.port(TLS))
    assert not w.transport.can_write_eof()
    w.close()
    await w.wait_closed()


async def test_echo_1mib_intact(peer: Peer, certs: Certs) -> None:
    r, w = await asyncio.open_connection(peer.host, peer.port(TLS), ssl=certs.client_context(), server_hostname=NAME)
    payload = os.urandom(MIB)
    w.write(payload)
    got = await asyncio.wait_for(r.readexactly(MIB), 30)
    assert hashlib.sha256(got).digest() == hashlib.sha256(payload).digest()
    # Small records after a big one, in order.
    for size in (1, 64, 16385):
        msg = os.urandom(size)
        w.write(msg)
        assert await asyncio.wait_for(r.readexactly(size), 10) == msg
    w.close()
    await w.wait_closed()


async def test_peer_close_notify_is_eof(tpeer: Peer, certs: Certs) -> None:
    """The peer sends, then closes its TLS session: the bytes, then
    eof_received (close_notify), then connection_lost(None)."""
    loop = asyncio.get_running_loop()
    t, p = await loop.create_connection(Recorder, tpeer.host, tpeer.port(SEND_AND_CLOSE),
                                        ssl=certs.client_context(), server_hostname=NAME)
    expect_tls(t)
    t.write(b"300000\n")
    assert await asyncio.wait_for(p.lost, 30) is None
    assert p.calls == ["made", "data", "eof", "lost"]
    assert bytes(p.data) == pattern(300000)
    with pytest.raises(NotImplementedError):
        t.write_eof()


async def test_buffered_protocol_over_tls(tpeer: Peer, certs: Certs) -> None:
    """A BufferedProtocol under TLS gets the decrypted bytes in its own
    buffer, all of them, then eof_received."""
    loop = asyncio.get_running_loop()

    class Buffered(asyncio.BufferedProtocol):
        def __init__(self) -> None:
            self.buf = bytearray(16384)
            self.got = bytearray()
            self.eof = False
            self.done: asyncio.Future[BaseException | None] = loop.create_future()

        def get_buffer(self, sizehint: int) -> bytearray:
            return self.buf

        def buffer_updated(self, nbytes: int) -> None:
            self.got += self.buf[:nbytes]

        def eof_received(self) -> bool:
            self.eof = True
            return False

        def connection_lost(self, exc: BaseException | None) -> None:
            self.done.set_result(exc)

    t, p = await loop.create_connection(Buffered, tpeer.host, tpeer.port(SEND_AND_CLOSE),
                                        ssl=certs.client_context(), server_hostname=NAME)
    t.write(b"%d\n" % MIB)
    assert await asyncio.wait_for(p.done, 30) is None
    assert p.eof and bytes(p.got) == pattern(MIB)


async def dial(tpeer: Peer, host: str, port: int, nbytes: int, client_cert: bool = False) -> dict[str, Any]:
    """Ask the peer to connect to us over TLS and send nbytes; its report."""
    r, w = await asyncio.open_connection(tpeer.host, tpeer.port(TLS_DIAL))
    try:
        w.write(json.dumps({"host": host, "port": port, "bytes": nbytes, "client_cert": client_cert}).encode() + b"\n")
        return dict(json.loads(await asyncio.wait_for(r.readline(), 30)))
    finally:
        w.close()


class Answerer(Recorder):
    """Our server's protocol: after `expect` bytes, sends 1 MiB and closes."""

    expect = 100_000
    answer = pattern(MIB)

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        super().connection_made(transport)
        # Here: once the connection is lost the TLS transport has no
        # transport under it to tell.
        self.peercert = transport.get_extra_info("peercert")
        expect_tls(transport)

    def data_received(self, data: bytes) -> None:
        super().data_received(data)
        if len(self.data) == self.expect:
            self.transport.write(self.answer)  # type: ignore[attr-defined]
            self.transport.close()  # type: ignore[attr-defined]


@contextlib.asynccontextmanager
async def serving_tls(host: str, certs: Certs, *, require_client: bool = False,
                      ) -> AsyncIterator[tuple[int, list[Recorder]]]:
    """A TLS server of ours on host (asking for a client certificate with
    require_client): its port and the protocols of what it accepted."""
    loop = asyncio.get_running_loop()
    protocols: list[Recorder] = []

    def make() -> Recorder:
        protocols.append(Answerer())
        return protocols[-1]

    server = await loop.create_server(make, host, 0, ssl=certs.server_context(require_client=require_client))
    try:
        yield server.sockets[0].getsockname()[1], protocols
    finally:
        for p in protocols:
            if p.calls and not p.lost.done():  # (made: its handshake went through)
                p.transport.abort()  # type: ignore[attr-defined]
        server.close()
        await asyncio.wait_for(server.wait_closed(), 10)


async def test_server_side_and_our_close_notify(tpeer: Peer, local_host: str, certs: Certs) -> None:
    """Our create_server(ssl=): the peer connects over TLS, sends, and reads
    our 1 MiB answer to a clean end (our close() sends close_notify first)."""
    async with serving_tls(local_host, certs) as (port, protocols):
        await _answered_once(tpeer, local_host, port, protocols)


async def _answered_once(tpeer: Peer, local_host: str, port: int, protocols: list[Recorder]) -> None:
    report = await dial(tpeer, local_host, port, Answerer.expect)
    assert report["ended"] == "eof", report
    assert report["received"] == MIB and report["sha256"] == hashlib.sha256(Answerer.answer).hexdigest()
    assert report["cipher"][1] == "TLSv1.3"
    (p,) = protocols
    assert await asyncio.wait_for(p.lost, 10) is None
    # The peer's close_notify in answer to ours is an eof_received, on
    # every loop.
    assert p.calls == ["made", "data", "eof", "lost"]


async def test_mutual_tls_our_server(tpeer: Peer, local_host: str, certs: Certs) -> None:
    """Our server asks for a client certificate: with one the conversation
    goes through, and the client's certificate is the peercert; without,
    the server refuses it and nothing reaches our protocol (and nothing
    reaches the exception handler: a failed handshake is that connection's
    business)."""
    async with serving_tls(local_host, certs, require_client=True) as (port, protocols):
        report = await dial(tpeer, local_host, port, Answerer.expect, client_cert=True)
        assert report["ended"] == "eof" and report["received"] == MIB, report
        (p,) = protocols
        assert dict(x[0] for x in p.peercert["subject"])["commonName"] == "client.test"
        report = await dial(tpeer, local_host, port, Answerer.expect, client_cert=False)
        assert report["received"] == 0, report
        assert [q.calls for q in protocols[1:]] == [[]]  # never made


async def test_mutual_tls_peer_server(tpeer: Peer, certs: Certs) -> None:
    """The peer asks for a client certificate: ours is accepted and the
    echo works; without one, the peer's refusal reaches us as an SSLError
    on the first read, never as data."""
    r, w = await asyncio.open_connection(tpeer.host, tpeer.port(MTLS_ECHO), ssl=certs.client_context(with_cert=True),
                                         server_hostname=NAME)
    expect_tls(w.transport)
    w.write(b"mutual" * 1000)
    assert await asyncio.wait_for(r.readexactly(6000), 10) == b"mutual" * 1000
    w.close()
    await w.wait_closed()
    # TLS 1.3: the client's handshake ends before the server has seen
    # (no) certificate; its refusal comes after, as the end of the
    # connection (uvloop, and DockNet as uvloop) or a reset (asyncio).
    r, w = await asyncio.open_connection(tpeer.host, tpeer.port(MTLS_ECHO), ssl=certs.client_context(),
                                         server_hostname=NAME)
    w.write(b"hello")
    try:
        echoed = await asyncio.wait_for(r.read(100), 10)
    except ConnectionResetError:
        assert loop_kind() == "asyncio"
        echoed = b""
    assert echoed == b""
    w.close()


async def test_wrong_hostname_refused(peer: Peer, certs: Certs) -> None:
    with pytest.raises(ssl.SSLCertVerificationError) as info:
        await asyncio.wait_for(asyncio.open_connection(peer.host, peer.port(TLS), ssl=certs.client_context(),
                                                       server_hostname="other.test"), 10)
    assert info.value.verify_code == HOSTNAME_MISMATCH
    await still_serving(peer, certs)


async def test_untrusted_certificate_refused(peer: Peer, certs: Certs) -> None:
    """A certificate for the right name that the client does not trust."""
    with pytest.raises(ssl.SSLCertVerificationError) as info:
        await asyncio.wait_for(asyncio.open_connection(peer.host, peer.port(TLS),
                                                       ssl=certs.client_context(cafile=certs.rogue[0]),
                                                       server_hostname=NAME), 10)
    assert info.value.verify_code == SELF_SIGNED
    await still_serving(peer, certs)


async def still_serving(peer: Peer, certs: Certs) -> None:
    """The refusal cost the peer nothing: a good client is served."""
    r, w = await asyncio.open_connection(peer.host, peer.port(TLS), ssl=certs.client_context(), server_hostname=NAME)
    w.write(b"after")
    assert await asyncio.wait_for(r.readexactly(5), 10) == b"after"
    w.close()
    await w.wait_closed()


async def test_start_tls_upgrade(peer: Peer, certs: Certs) -> None:
    """A plain connection upgraded in place: the TLS transport under the
    loop's protocol, 1 MiB through it intact, the plain bytes before it
    not mixed in."""
    r, w = await asyncio.open_connection(peer.host, peer.port(STARTTLS))
    assert w.get_extra_info("ssl_object") is None
    w.write(b"STARTTLS\n")
    assert await r.readline() == b"OK\n"
    await w.start_tls(certs.client_context(), server_hostname=NAME)
    expect_tls(w.transport)
    assert w.get_extra_info("ssl_object").version() == "TLSv1.3"
    payload = os.urandom(MIB)
    w.write(payload)
    assert await asyncio.wait_for(r.readexactly(MIB), 30) == payload
    w.close()
    await w.wait_closed()


async def test_start_tls_refused_certificate(peer: Peer, certs: Certs) -> None:
    r, w = await asyncio.open_connection(peer.host, peer.port(STARTTLS))
    w.write(b"STARTTLS\n")
    assert await r.readline() == b"OK\n"
    with pytest.raises(ssl.SSLCertVerificationError):
        await asyncio.wait_for(w.start_tls(certs.client_context(cafile=certs.rogue[0]), server_hostname=NAME), 10)
    w.close()
