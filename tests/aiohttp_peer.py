"""Both ends of the aiohttp tests, each a DockNet endpoint of its own.

    python tests/aiohttp_peer.py server --style run_app|runner [--tls-cert C --tls-key K]
    python tests/aiohttp_peer.py client --name N --ip A --port P --kernel-port K
                                        [--tls-port T --cafile C]

The server serves one app on its DockNet address (port 8080, TLS on 8443 if
given) and on a kernel socket on 127.0.0.1, either with ``web.run_app`` or
with ``AppRunner`` + ``TCPSite``, and prints ``{"event": "ready", ...}``.
The client calls it with ``ClientSession(connector=DockNetConnector())`` and
prints one ``{"event": "result", ...}`` line of facts for the test to check.
Both refuse to run unless their endpoint is attached, so a DockNet address is
never dialled through the kernel.
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import json
import os
import random
import signal
import socket
import ssl
import sys
from collections.abc import AsyncIterator
from typing import Any

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from aiohttp import ClientSession, WSMsgType, web  # noqa: E402

import aiodocknet  # noqa: E402
from aiodocknet.aiohttp import DockNetConnector  # noqa: E402
from aiodocknet.endpoint import ProcessEndpoint  # noqa: E402

DN_PORT = 8080
TLS_PORT = 8443
CHUNK = 64 * 1024
BIG = 10 * 1024 * 1024
WS_CLOSES = web.AppKey("ws_closes", list[int | None])
WS_TRANSPORTS = web.AppKey("ws_transports", list[str])


def payload(seed: int, n: int) -> bytes:
    """The same bytes on both sides, without shipping them around."""
    return random.Random(seed).randbytes(n)


def emit(event: str, **kw: Any) -> None:
    print(json.dumps({"event": event, **kw}), flush=True)


def endpoint() -> ProcessEndpoint:
    ep = ProcessEndpoint.get()
    if ep is None:
        raise SystemExit("aiohttp_peer: DockNet is not available (is DOCKNET_MASTER set?)")
    return ep


# ---- server ----

def conn_info(request: web.Request) -> dict[str, Any]:
    t = request.transport
    assert t is not None
    return {
        "transport": type(t).__name__,
        "socket": type(t.get_extra_info("socket")).__name__,
        "peer": list(t.get_extra_info("peername")),
        "sockname": list(t.get_extra_info("sockname")),
        "tls": t.get_extra_info("sslcontext") is not None,
    }


async def info(request: web.Request) -> web.Response:
    return web.json_response(conn_info(request))


async def echo_json(request: web.Request) -> web.Response:
    return web.json_response({"echo": await request.json(), "conn": conn_info(request)})


async def upload(request: web.Request) -> web.Response:
    h = hashlib.sha256()
    n = chunks = 0
    async for chunk in request.content.iter_chunked(CHUNK):
        h.update(chunk)
        n += len(chunk)
        chunks += 1
    return web.json_response({"bytes": n, "sha256": h.hexdigest(), "chunks": chunks,
                              "chunked": request.headers.get("Transfer-Encoding") == "chunked",
                              "conn": conn_info(request)})


async def download(request: web.Request) -> web.StreamResponse:
    n = int(request.query["bytes"])
    data = payload(int(request.query["seed"]), n)
    resp = web.StreamResponse(headers={"X-SHA256": hashlib.sha256(data).hexdigest(),
                                       "X-Transport": type(request.transport).__name__})
    await resp.prepare(request)
    view = memoryview(data)
    for i in range(0, n, CHUNK):
        await resp.write(view[i:i + CHUNK])
    await resp.write_eof()
    return resp


async def ws_echo(request: web.Request) -> web.WebSocketResponse:
    ws = web.WebSocketResponse()
    await ws.prepare(request)
    request.app[WS_TRANSPORTS].append(type(request.transport).__name__)
    async for msg in ws:
        if msg.type == WSMsgType.TEXT:
            await ws.send_str(msg.data)
        elif msg.type == WSMsgType.BINARY:
            await ws.send_bytes(msg.data)
    request.app[WS_CLOSES].append(ws.close_code)
    return ws


async def stats(request: web.Request) -> web.Response:
    return web.json_response({"ws_closes": request.app[WS_CLOSES],
                              "ws_transports": request.app[WS_TRANSPORTS]})


def make_app() -> web.Application:
    app = web.Application(client_max_size=BIG * 2)
    app[WS_CLOSES] = []
    app[WS_TRANSPORTS] = []
    app.router.add_get("/info", info)
    app.router.add_post("/json", echo_json)
    app.router.add_post("/upload", upload)
    app.router.add_get("/download", download)
    app.router.add_get("/ws", ws_echo)
    app.router.add_get("/stats", stats)
    return app


def serve_run_app() -> None:
    ep = endpoint()
    kernel = socket.socket()
    kernel.bind(("127.0.0.1", 0))
    kport = kernel.getsockname()[1]

    def ready(_banner: str) -> None:
        emit("ready", style="run_app", address=ep.address, address6=ep.address6, port=DN_PORT, kernel_port=kport,
             loop=type(asyncio.get_running_loop()).__name__)

    # Both DockNet addresses, as run_app binds a list of hosts.
    hosts = [ep.address] + ([ep.address6] if ep.address6 else [])
    web.run_app(make_app(), host=hosts, port=DN_PORT, sock=kernel, print=ready,
                loop=aiodocknet.new_event_loop(), access_log=None)


async def serve_runner(args: argparse.Namespace) -> None:
    loop = asyncio.get_running_loop()
    ep = endpoint()
    runner = web.AppRunner(make_app(), access_log=None)
    await runner.setup()
    sites = [web.TCPSite(runner, ep.address, DN_PORT), web.TCPSite(runner, "127.0.0.1", 0)]
    if ep.address6:
        sites.append(web.TCPSite(runner, ep.address6, DN_PORT))
    if args.tls_cert:
        ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        ctx.load_cert_chain(args.tls_cert, args.tls_key)
        sites.append(web.TCPSite(runner, ep.address, TLS_PORT, ssl_context=ctx))
    for site in sites:
        await site.start()
    stop = asyncio.Event()
    loop.add_signal_handler(signal.SIGTERM, stop.set)
    kport = sites[1].port
    emit("ready", style="runner", address=ep.address, address6=ep.address6, port=DN_PORT, kernel_port=kport,
         tls_port=TLS_PORT if args.tls_cert else None, addresses=[list(a) for a in runner.addresses],
         loop=type(loop).__name__)
    await stop.wait()
    await runner.cleanup()


# ---- client ----

class RecordingConnector(DockNetConnector):
    """Notes each connection it opens: the client's view of the path taken."""

    opened: list[dict[str, Any]]

    async def _create_connection(self, req: Any, traces: Any, timeout: Any) -> Any:
        proto = await super()._create_connection(req, traces, timeout)
        t = proto.transport
        self.opened.append({
            "url": str(req.url.origin()),
            "transport": type(t).__name__,
            "socket": type(t.get_extra_info("socket")).__name__,
            "sockname": list(t.get_extra_info("sockname")),
            "peer": list(t.get_extra_info("peername")),
        })
        return proto


async def chunks(data: bytes) -> AsyncIterator[bytes]:
    view = memoryview(data)
    for i in range(0, len(data), CHUNK):
        yield bytes(view[i:i + CHUNK])


async def client(args: argparse.Namespace) -> None:
    ep = asyncio.get_running_loop()._docknet()  # type: ignore[attr-defined]
    if ep is None or not ep.is_docknet_ip(args.ip):
        # Never let the kernel route a DockNet address off the machine.
        raise SystemExit(f"aiohttp_peer: DockNet did not attach, or {args.ip} is not on it")
    by_name = f"http://{args.name}:{args.port}"
    by_ip = f"http://{args.ip}:{args.port}"
    kernel = f"http://127.0.0.1:{args.kernel_port}"
    out: dict[str, Any] = {"address": ep.address, "address6": ep.address6}
    connector = RecordingConnector()
    connector.opened = []
    async with ClientSession(connector=connector) as s:
        for label, base in (("name", by_name), ("ip", by_ip), ("kernel", kernel)):
            async with s.get(f"{base}/info") as r:
                r.raise_for_status()
                out[f"info_{label}"] = await r.json()

        docs = [{"n": i, "text": "héllo" * i, "list": list(range(i)), "nested": {"ok": True}} for i in range(12)]
        replies = await asyncio.gather(*(
            s.post(f"{by_name if i % 2 else by_ip}/json", json=d) for i, d in enumerate(docs)))
        out["json_ok"] = []
        for d, r in zip(docs, replies):
            async with r:
                body = await r.json()
                out["json_ok"].append(body["echo"] == d and body["conn"]["transport"])

        up = payload(1, BIG)
        async with s.post(f"{by_name}/upload", data=chunks(up)) as r:
            out["upload"] = await r.json()
        out["upload_expected"] = hashlib.sha256(up).hexdigest()

        h = hashlib.sha256()
        n = 0
        async with s.get(f"{by_ip}/download", params={"bytes": BIG, "seed": 2}) as r:
            async for chunk in r.content.iter_chunked(CHUNK):
                h.update(chunk)
                n += len(chunk)
            out["download"] = {"bytes": n, "sha256": h.hexdigest(), "header": r.headers["X-SHA256"],
                               "server_transport": r.headers["X-Transport"],
                               "chunked": r.headers.get("Transfer-Encoding") == "chunked"}
        out["download_expected"] = hashlib.sha256(payload(2, BIG)).hexdigest()

        msgs: list[str | bytes] = ["hi", "", "ü" * 1000, "x" * 70000, "last text",
                                   b"\x00", b"", os.urandom(1500), os.urandom(200_000), b"bye"]
        async with s.ws_connect(f"{by_name}/ws") as ws:
            out["ws_socket"] = type(ws.get_extra_info("socket")).__name__
            echoed = []
            for m in msgs:
                await (ws.send_str(m) if isinstance(m, str) else ws.send_bytes(m))
                reply = await ws.receive(timeout=10)
                echoed.append(reply.data == m and reply.type == (WSMsgType.TEXT if isinstance(m, str)
                                                                  else WSMsgType.BINARY))
            out["ws_echo"] = echoed
            out["ws_close_result"] = await ws.close()
            out["ws_close_code"] = ws.close_code
        for _ in range(50):  # the server notes the close after answering it
            async with s.get(f"{by_ip}/stats") as r:
                out["ws_stats"] = await r.json()
            if out["ws_stats"]["ws_closes"]:
                break
            await asyncio.sleep(0.05)

        try:  # nothing listens there: lwIP's RST, as aiohttp reports a refused connect
            async with s.get(f"http://{args.ip}:9/info") as r:
                out["refused"] = ["no error"]
        except Exception as exc:
            os_error = getattr(exc, "os_error", None)
            out["refused"] = [type(exc).__name__, getattr(os_error, "errno", None)]

        if args.tls_port:
            ctx = ssl.create_default_context(cafile=args.cafile)
            async with s.get(f"https://{args.name}:{args.tls_port}/info", ssl=ctx) as r:
                out["tls_name"] = await r.json()
            async with s.get(f"https://{args.ip}:{args.tls_port}/info", ssl=ctx, server_hostname=args.name) as r:
                out["tls_ip_server_hostname"] = await r.json()
            try:
                async with s.get(f"https://{args.ip}:{args.tls_port}/info", ssl=ctx) as r:
                    out["tls_ip_unverified"] = "no error"
            except Exception as exc:  # the certificate names the service, not its address
                out["tls_ip_unverified"] = type(exc).__name__
        if args.ip6:
            await over_ipv6(s, args, out)
    out["opened"] = connector.opened
    emit("result", **out)


async def over_ipv6(s: ClientSession, args: argparse.Namespace, out: dict[str, Any]) -> None:
    """The same service on its IPv6 address: a literal in brackets, and its
    name with a connector asking for IPv6."""
    by_ip6 = f"http://[{args.ip6}]:{args.port}"
    async with s.get(f"{by_ip6}/info") as r:
        r.raise_for_status()
        out["info_ip6"] = await r.json()
    up = payload(3, BIG)
    async with s.post(f"{by_ip6}/upload", data=chunks(up)) as r:
        out["upload6"] = await r.json()
    out["upload6_expected"] = hashlib.sha256(up).hexdigest()
    async with ClientSession(connector=DockNetConnector(family=socket.AF_INET6)) as s6:
        async with s6.get(f"http://{args.name}:{args.port}/info") as r:
            out["info_name6"] = await r.json()


def main() -> None:
    p = argparse.ArgumentParser()
    sub = p.add_subparsers(dest="role", required=True)
    srv = sub.add_parser("server")
    srv.add_argument("--style", choices=["run_app", "runner"], required=True)
    srv.add_argument("--tls-cert")
    srv.add_argument("--tls-key")
    cli = sub.add_parser("client")
    cli.add_argument("--name", required=True)
    cli.add_argument("--ip", required=True)
    cli.add_argument("--ip6")
    cli.add_argument("--port", type=int, required=True)
    cli.add_argument("--kernel-port", type=int, required=True)
    cli.add_argument("--tls-port", type=int)
    cli.add_argument("--cafile")
    args = p.parse_args()
    if args.role == "server" and args.style == "run_app":
        serve_run_app()
    elif args.role == "server":
        aiodocknet.run(serve_runner(args))
    else:
        aiodocknet.run(client(args))


if __name__ == "__main__":
    main()
