"""Services for the peer-link tests: a DockNetLoop process with its own
endpoint (DOCKNET_ENDPOINT), fast channels off, so TCP and UDP go over the
switch or a peer link. JSON lines on stdout; commands on stdin.

    python tests/pl_peer.py server --port P
        A TCP echo server and a UDP echo on P, on both of the endpoint's
        addresses. Prints {"event": "ready", "address", "address6", "port"}; "stats" on stdin prints {"event": "stats", ...}
        (the stack's counters, the peer links it holds, its CPU time).
    python tests/pl_peer.py client --host H --port P
        Connects; then, per line on stdin:
          "pingpong N"   N 64-byte round trips on the connection; prints
                         {"event": "pingpong", "ok": all echoes intact}
          "udp N"        N datagrams to H:P, each waited for
          "bulk N"       N bytes written and their echo read back; prints
                         {"event": "bulk", "ok", "seconds"}
          "reconnect"    a new connection (the old one closed)
          "stats"        as the server's
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import resource
import sys
from typing import Any

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import aiodocknet  # noqa: E402


def say(event: str, **kw: Any) -> None:
    print(json.dumps({"event": event, **kw}), flush=True)


def stats() -> None:
    loop = asyncio.get_running_loop()
    ep = loop._docknet()  # type: ignore[attr-defined]
    ru = resource.getrusage(resource.RUSAGE_SELF)
    say("stats", **ep.stack.stats(), links=sorted(ep.stack.peer_links.values()), cpu=ru.ru_utime + ru.ru_stime)


async def stdin_lines() -> asyncio.StreamReader:
    reader = asyncio.StreamReader()
    await asyncio.get_running_loop().connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin)
    return reader


class UdpEcho(asyncio.DatagramProtocol):
    def connection_made(self, transport: Any) -> None:
        self.transport = transport

    def datagram_received(self, data: bytes, addr: Any) -> None:
        self.transport.sendto(data, addr)


async def handle(r: asyncio.StreamReader, w: asyncio.StreamWriter) -> None:
    try:
        while data := await r.read(65536):
            w.write(data)
            await w.drain()
    except ConnectionError:
        pass
    finally:
        w.close()


async def serve(args: argparse.Namespace) -> None:
    loop = asyncio.get_running_loop()
    ep = loop._docknet()  # type: ignore[attr-defined]
    servers = [await asyncio.start_server(handle, ep.address, args.port)]
    await loop.create_datagram_endpoint(UdpEcho, local_addr=(ep.address, args.port))
    if ep.address6 is not None:
        servers.append(await asyncio.start_server(handle, ep.address6, args.port))
        await loop.create_datagram_endpoint(UdpEcho, local_addr=(ep.address6, args.port))
    say("ready", address=ep.address, address6=ep.address6, port=args.port)
    cmds = await stdin_lines()
    while line := await cmds.readline():
        if line.strip() == b"stats":
            stats()
    for server in servers:
        server.close()


class UdpClient(asyncio.DatagramProtocol):
    def __init__(self) -> None:
        self.got: asyncio.Queue[bytes] = asyncio.Queue()

    def datagram_received(self, data: bytes, addr: Any) -> None:
        self.got.put_nowait(data)


async def client(args: argparse.Namespace) -> None:
    loop = asyncio.get_running_loop()
    r, w = await asyncio.open_connection(args.host, args.port)
    say("connected")
    cmds = await stdin_lines()
    while line := await cmds.readline():
        if not line.strip():
            continue
        cmd, *rest = line.decode().split()
        if cmd == "pingpong":
            ok = True
            for i in range(int(rest[0])):
                msg = i.to_bytes(8, "big") * 8
                w.write(msg)
                ok = ok and await asyncio.wait_for(r.readexactly(64), 10) == msg
            say("pingpong", ok=ok)
        elif cmd == "udp":
            t, p = await loop.create_datagram_endpoint(UdpClient, remote_addr=(args.host, args.port))
            ok = True
            for i in range(int(rest[0])):
                msg = i.to_bytes(8, "big") * 4
                t.sendto(msg)
                ok = ok and await asyncio.wait_for(p.got.get(), 10) == msg
            t.close()
            say("udp", ok=ok)
        elif cmd == "bulk":
            n = int(rest[0])
            t0 = loop.time()

            async def pump() -> None:
                left = n
                while left:
                    w.write(b"x" * min(65536, left))
                    left -= min(65536, left)
                    await w.drain()

            sender = asyncio.ensure_future(pump())
            got = 0
            while got < n and (data := await asyncio.wait_for(r.read(1 << 20), 30)):
                got += len(data)
            await sender
            say("bulk", ok=got == n, seconds=loop.time() - t0)
        elif cmd == "reconnect":
            w.close()
            r, w = await asyncio.open_connection(args.host, args.port)
            say("connected")
        elif cmd == "stats":
            stats()


def main() -> None:
    p = argparse.ArgumentParser()
    sub = p.add_subparsers(dest="role", required=True)
    s = sub.add_parser("server")
    s.add_argument("--port", type=int, required=True)
    c = sub.add_parser("client")
    c.add_argument("--host", required=True)
    c.add_argument("--port", type=int, required=True)
    args = p.parse_args()
    aiodocknet.run(serve(args) if args.role == "server" else client(args))


if __name__ == "__main__":
    main()
