"""The far end for the conformance suite: an asyncio process (DockNetLoop,
plain uvloop or asyncio's default loop) with one service per port.

    python tests/aio_peer.py --kind docknet|uvloop|asyncio [--base PORT]

Prints ``{"event": "ready", "host": ..., "ports": {n: port}, "host6": ...,
"ports6": {n: port}}``: each service listens on IPv4 and on IPv6 (``::1``
for the kernel's loops, the endpoint's IPv6 address under DockNet; no
"host6" if the endpoint has none). Service n listens at ``base + n``
(IPv6: ``base + 100 + n``), or on a port of the system's choosing with
``--base 0`` (the default, so that two runs on one machine never collide):
  0 echo            every byte back; EOF -> EOF
  1 count           reads to EOF, answers {"bytes", "sha256"}, closes
  2 reset           aborts each connection as soon as it is accepted
  3 slow            reads 16 KiB every 10 ms (a slow reader), answers like count
  4 source          sends N bytes (N = the 8-byte big-endian request) and closes
  5 connect-back    reads a JSON line {"host", "port", "data"}, connects there,
                    sends data, half-closes, relays the answer back (or
                    "connect-back failed: <error>"), closes
  6 udp echo        (datagram) every datagram back to its sender
  7 tls echo        echo over TLS (with --tls-cert/--tls-key)
  8 starttls        reads "STARTTLS\n", answers "OK\n", upgrades, then echoes
  9 dial            reads a JSON line {"host", "port", "bytes"}, connects there,
                    waits for a line "go", sends that many bytes, then tells
                    on this connection what happened: {"sent": n} once they
                    are written, then
                    {"ended": "eof" | exception name, "received": n} when the
                    dialled connection ends; closes both
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import json
import os
import ssl
import sys
from typing import Any

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


async def echo(r: asyncio.StreamReader, w: asyncio.StreamWriter) -> None:
    while data := await r.read(256 * 1024):
        w.write(data)
        await w.drain()
    w.write_eof()
    w.close()


async def count(r: asyncio.StreamReader, w: asyncio.StreamWriter, slow: bool = False) -> None:
    h = hashlib.sha256()
    n = 0
    while True:
        data = await r.read(16 * 1024 if slow else 256 * 1024)
        if not data:
            break
        h.update(data)
        n += len(data)
        if slow:
            await asyncio.sleep(0.01)
    w.write(json.dumps({"bytes": n, "sha256": h.hexdigest()}).encode())
    await w.drain()
    w.close()


async def reset(r: asyncio.StreamReader, w: asyncio.StreamWriter) -> None:
    w.transport.abort()


async def source(r: asyncio.StreamReader, w: asyncio.StreamWriter) -> None:
    n = int.from_bytes(await r.readexactly(8), "big")
    block = bytes(range(256)) * 256
    while n > 0:
        w.write(block[: min(n, len(block))])
        n -= min(n, len(block))
        await w.drain()
    w.close()


async def connect_back(r: asyncio.StreamReader, w: asyncio.StreamWriter) -> None:
    req = json.loads(await r.readline())
    try:
        r2, w2 = await asyncio.open_connection(req["host"], req["port"])
        w2.write(req["data"].encode())
        w2.write_eof()
        answer = await r2.read(-1)
        w2.close()
    except OSError as exc:
        # Said, not swallowed: the test waits for an answer either way.
        answer = f"connect-back failed: {type(exc).__name__}".encode()
    w.write(answer)
    await w.drain()
    w.close()


async def dial(r: asyncio.StreamReader, w: asyncio.StreamWriter) -> None:
    req = json.loads(await r.readline())
    r2, w2 = await asyncio.open_connection(req["host"], req["port"])
    received = 0
    try:
        await r.readline()
        w2.write(bytes(range(256)) * (req["bytes"] // 256) + bytes(req["bytes"] % 256))
        await w2.drain()
        w.write(json.dumps({"sent": req["bytes"]}).encode() + b"\n")
        await w.drain()
        while data := await r2.read(256 * 1024):
            received += len(data)
        ended = "eof"
    except ConnectionError as e:
        ended = type(e).__name__
    w.write(json.dumps({"ended": ended, "received": received}).encode() + b"\n")
    await w.drain()
    w2.close()
    w.close()


def starttls(ctx: ssl.SSLContext):  # type: ignore[no-untyped-def]
    async def handle(r: asyncio.StreamReader, w: asyncio.StreamWriter) -> None:
        if await r.readline() != b"STARTTLS\n":
            w.close()
            return
        w.write(b"OK\n")
        await w.drain()
        await w.start_tls(ctx)
        await echo(r, w)

    return handle


class UdpEcho(asyncio.DatagramProtocol):
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport

    def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:
        self.transport.sendto(data, addr)  # type: ignore[attr-defined]


async def main(args: argparse.Namespace) -> None:
    loop = asyncio.get_running_loop()
    host, host6 = "127.0.0.1", "::1"
    if args.kind == "docknet":
        ep = loop._docknet()  # type: ignore[attr-defined]
        if ep is None:
            raise SystemExit("aio_peer: DockNet is not available")
        host, host6 = ep.address, ep.address6
    servers: list[Any] = []
    ready: dict[str, Any] = {"event": "ready", "pid": os.getpid()}
    ready["host"], ready["ports"] = host, await services(loop, args, host, args.base, servers)
    if host6 is not None:
        ready["host6"], ready["ports6"] = host6, await services(loop, args, host6, args.base + 100 if args.base else 0,
                                                                servers)
    print(json.dumps(ready), flush=True)
    await asyncio.Event().wait()


async def services(loop: asyncio.AbstractEventLoop, args: argparse.Namespace, host: str, b: int,
                   servers: list[Any]) -> dict[int, int]:
    """Every service on host: their ports."""
    ports: dict[int, int] = {}

    async def serve(n: int, handler, **kw) -> None:  # type: ignore[no-untyped-def]
        server = await asyncio.start_server(handler, host, b + n if b else 0, **kw)
        servers.append(server)
        ports[n] = server.sockets[0].getsockname()[1]

    await serve(0, echo)
    await serve(1, count)
    await serve(2, reset)
    await serve(3, lambda r, w: count(r, w, slow=True))
    await serve(4, source)
    await serve(5, connect_back)
    await serve(9, dial)
    if args.tls_cert:
        ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        ctx.load_cert_chain(args.tls_cert, args.tls_key)
        await serve(7, echo, ssl=ctx)
        await serve(8, starttls(ctx))
    try:
        udp, _ = await loop.create_datagram_endpoint(UdpEcho, local_addr=(host, b + 6 if b else 0))
        servers.append(udp)
        ports[6] = udp.get_extra_info("sockname")[1]
    except (NotImplementedError, OSError):
        pass
    return ports


if __name__ == "__main__":
    p = argparse.ArgumentParser()
    p.add_argument("--kind", choices=["docknet", "uvloop", "asyncio"], required=True)
    p.add_argument("--base", type=int, default=0)
    p.add_argument("--tls-cert")
    p.add_argument("--tls-key")
    args = p.parse_args()
    if args.kind == "docknet":
        import aiodocknet

        aiodocknet.run(main(args))
    elif args.kind == "uvloop":
        import uvloop

        uvloop.run(main(args))
    else:
        asyncio.run(main(args))
