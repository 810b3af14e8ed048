"""The far end for the conformance suite: an asyncio process (DockNetLoop or
plain uvloop) with one service per port.

    python tests/aio_peer.py --kind docknet|uvloop --base PORT

Prints ``{"event": "ready", "host": ..., "base": ...}``. Services, at
``base + n``:
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
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import json
import os
import ssl
import sys

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
    host = "127.0.0.1"
    if args.kind == "docknet":
        ep = loop._docknet()  # type: ignore[attr-defined]
        if ep is None:
            raise SystemExit("aio_peer: DockNet is not available")
        host = ep.address
    b = args.base
    servers = [
        await asyncio.start_server(echo, host, b),
        await asyncio.start_server(count, host, b + 1),
        await asyncio.start_server(reset, host, b + 2),
        await asyncio.start_server(lambda r, w: count(r, w, slow=True), host, b + 3),
        await asyncio.start_server(source, host, b + 4),
        await asyncio.start_server(connect_back, host, b + 5),
    ]
    if args.tls_cert:
        ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        ctx.load_cert_chain(args.tls_cert, args.tls_key)
        servers.append(await asyncio.start_server(echo, host, b + 7, ssl=ctx))
        servers.append(await asyncio.start_server(starttls(ctx), host, b + 8))
    try:
        await loop.create_datagram_endpoint(UdpEcho, local_addr=(host, b + 6))
    except (NotImplementedError, OSError):
        pass
    print(json.dumps({"event": "ready", "host": host, "base": b, "pid": os.getpid()}), flush=True)
    await asyncio.Event().wait()


if __name__ == "__main__":
    p = argparse.ArgumentParser()
    p.add_argument("--kind", choices=["docknet", "uvloop"], required=True)
    p.add_argument("--base", type=int, required=True)
    p.add_argument("--tls-cert")
    p.add_argument("--tls-key")
    args = p.parse_args()
    if args.kind == "docknet":
        import aiodocknet

        aiodocknet.run(main(args))
    else:
        import uvloop

        uvloop.run(main(args))
