"""The far end of the TLS conformance tests (tests/conformance/test_tls.py):
an asyncio process (DockNetLoop, plain uvloop or asyncio's default loop)
with one TLS service per port.

    python tests/tls_peer.py --kind docknet|uvloop|asyncio --cert C --key K --client-ca CA

Prints ``{"event": "ready", "host": ..., "ports": {n: port}}``. Services:
  0 mtls echo       TLS with a client certificate required (verified
                    against --client-ca); every byte back; close_notify ->
                    close
  1 send and close  TLS; reads a line "N\\n", sends N bytes, then closes
                    (close_notify, then the connection)
  2 tls dial        plain; reads a JSON line {"host", "port", "bytes",
                    "client_cert"}, connects there over TLS (the server's
                    certificate verified against --cert for the name
                    peer.test; with "client_cert", presenting --client-cert),
                    sends that many bytes, reads to the end and answers
                    {"received", "sha256", "ended": "eof" | exception name,
                    "cipher"} on the plain connection; closes
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

NAME = "peer.test"


async def echo(r: asyncio.StreamReader, w: asyncio.StreamWriter) -> None:
    try:
        while data := await r.read(256 * 1024):
            w.write(data)
            await w.drain()
    except ConnectionError:
        pass
    w.close()


async def send_and_close(r: asyncio.StreamReader, w: asyncio.StreamWriter) -> None:
    n = int(await r.readline())
    w.write((bytes(range(256)) * (n // 256 + 1))[:n])
    await w.drain()
    w.close()
    await w.wait_closed()


def dial(args: argparse.Namespace):  # type: ignore[no-untyped-def]
    async def handle(r: asyncio.StreamReader, w: asyncio.StreamWriter) -> None:
        req = json.loads(await r.readline())
        ctx = ssl.create_default_context(cafile=args.cert)
        if req.get("client_cert"):
            ctx.load_cert_chain(args.client_cert, args.client_key)
        received, h, cipher = 0, hashlib.sha256(), None
        try:
            r2, w2 = await asyncio.open_connection(req["host"], req["port"], ssl=ctx, server_hostname=NAME)
            cipher = w2.get_extra_info("cipher")
            w2.write(os.urandom(req["bytes"]))
            await w2.drain()
            while data := await r2.read(256 * 1024):
                received += len(data)
                h.update(data)
            ended = "eof"
            w2.close()
        except (OSError, ssl.SSLError) as e:
            ended = type(e).__name__
        w.write(json.dumps({"received": received, "sha256": h.hexdigest(), "ended": ended,
                            "cipher": cipher}).encode() + b"\n")
        await w.drain()
        w.close()

    return handle


async def main(args: argparse.Namespace) -> None:
    loop = asyncio.get_running_loop()
    host = "127.0.0.1"
    if args.kind == "docknet":
        ep = loop._docknet()  # type: ignore[attr-defined]
        if ep is None:
            raise SystemExit("tls_peer: DockNet is not available")
        host = ep.address
    server_ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    server_ctx.load_cert_chain(args.cert, args.key)
    mtls_ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH, cafile=args.client_ca)
    mtls_ctx.load_cert_chain(args.cert, args.key)
    mtls_ctx.verify_mode = ssl.CERT_REQUIRED
    servers = [
        await asyncio.start_server(echo, host, 0, ssl=mtls_ctx),
        await asyncio.start_server(send_and_close, host, 0, ssl=server_ctx),
        await asyncio.start_server(dial(args), host, 0),
    ]
    ports = {n: s.sockets[0].getsockname()[1] for n, s in enumerate(servers)}
    print(json.dumps({"event": "ready", "host": host, "ports": ports, "pid": os.getpid()}), flush=True)
    await asyncio.Event().wait()


if __name__ == "__main__":
    p = argparse.ArgumentParser()
    p.add_argument("--kind", choices=["docknet", "uvloop", "asyncio"], required=True)
    p.add_argument("--cert", required=True)
    p.add_argument("--key", required=True)
    p.add_argument("--client-ca", required=True)
    p.add_argument("--client-cert", required=True)
    p.add_argument("--client-key", required=True)
    args = p.parse_args()
    import aiodocknet

    aiodocknet.run_on(args.kind, main(args))
