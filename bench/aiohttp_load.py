"""aiohttp requests/s: a small JSON API and a closed-loop load client.

    python bench/aiohttp_load.py serve --loop docknet|uvloop|asyncio --host H --port P [--reuse-port]
    python bench/aiohttp_load.py client --loop ... --url URL --conns N --seconds S

The server answers GET /item/{n} with a ~300-byte JSON body built from a dict
look-up (the kind of handler a microservice has). The client keeps N
requests in flight over keep-alive connections for S seconds and prints one
JSON line: requests/s, p50/p99 latency, and its own CPU seconds. The same
program runs on DockNetLoop and on uvloop or asyncio over kernel namespaces.
With --reuse-port several servers share the port, as a pre-fork server's
workers do (on DockNet: the processes of one endpoint).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import resource
import ssl
import time

from aiohttp import ClientSession, web

ITEMS = {n: {"id": n, "name": f"item-{n}", "tags": ["a", "b", "c"][: 1 + n % 3], "price": n * 1.25,
             "stock": (n * 7919) % 101, "description": "x" * 160} for n in range(1000)}


async def item(request: web.Request) -> web.Response:
    n = int(request.match_info["n"]) % 1000
    return web.json_response(ITEMS[n])


async def serve(args: argparse.Namespace) -> None:
    loop = asyncio.get_running_loop()
    host = args.host
    if args.loop == "docknet":
        ep = loop._docknet()  # type: ignore[attr-defined]
        if ep is None:
            raise SystemExit("aiohttp_load: DockNet is not available")
        host = ep.address
    app = web.Application()
    app.router.add_get("/item/{n}", item)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    tls = None
    if args.tls_cert:  # HTTPS (the TLS rows, bench/tls_rows.py)
        tls = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        tls.load_cert_chain(args.tls_cert, args.tls_key)
    await web.TCPSite(runner, host, args.port, ssl_context=tls, reuse_port=args.reuse_port or None).start()
    print(json.dumps({"event": "ready", "host": host}), flush=True)
    await asyncio.Event().wait()


def cpu_seconds() -> float:
    ru = resource.getrusage(resource.RUSAGE_SELF)
    return ru.ru_utime + ru.ru_stime


async def client(args: argparse.Namespace) -> None:
    from aiodocknet.aiohttp import DockNetConnector

    samples: list[float] = []
    counting = False
    # HTTPS: the chain is verified; the name is not (the kernel rows dial an address).
    tls: ssl.SSLContext | bool = True
    if args.tls_ca:
        tls = ssl.create_default_context(cafile=args.tls_ca)
        tls.check_hostname = False
    errors = 0

    async def worker(session: ClientSession, k: int, end: float) -> None:
        nonlocal errors
        i = k
        while True:
            t0 = time.perf_counter()
            if t0 >= end:
                return
            async with session.get(f"{args.url}/item/{i}", ssl=tls) as r:
                body = await r.json()
            if body.get("id") != i % 1000:
                errors += 1
            if counting:
                samples.append(time.perf_counter() - t0)
            i += args.conns

    async with ClientSession(connector=DockNetConnector(limit=args.conns)) as session:
        warm = time.perf_counter() + 0.5
        await asyncio.gather(*(worker(session, k, warm) for k in range(args.conns)))
        counting = True
        cpu0, t0 = cpu_seconds(), time.perf_counter()
        await asyncio.gather(*(worker(session, k, t0 + args.seconds) for k in range(args.conns)))
        elapsed, cpu = time.perf_counter() - t0, cpu_seconds() - cpu0
    samples.sort()
    n = len(samples)
    print(json.dumps({"event": "result", "loop": args.loop, "conns": args.conns, "requests": n,
                      "seconds": round(elapsed, 3), "req_per_s": round(n / elapsed, 1),
                      "p50_us": round(samples[n // 2] * 1e6, 1), "p99_us": round(samples[int(n * 0.99)] * 1e6, 1),
                      "client_cpu_s": round(cpu, 3), "errors": errors}), flush=True)


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("mode", choices=["serve", "client"])
    p.add_argument("--loop", choices=["docknet", "uvloop", "asyncio"], required=True)
    p.add_argument("--host", default="0.0.0.0")
    p.add_argument("--port", type=int, default=8080)
    p.add_argument("--url")
    p.add_argument("--seconds", type=float, default=3.0)
    p.add_argument("--conns", type=int, default=16)
    p.add_argument("--tls-cert", help="serve HTTPS with this certificate (and --tls-key)")
    p.add_argument("--tls-key")
    p.add_argument("--tls-ca", help="the client's CA file for an https:// URL")
    p.add_argument("--reuse-port", action="store_true")
    args = p.parse_args()
    import aiodocknet

    aiodocknet.run_on(args.loop, serve(args) if args.mode == "serve" else client(args))


if __name__ == "__main__":
    main()
