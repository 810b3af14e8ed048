"""asyncio Protocol ping-pong over TLS: bench/py_pingpong.py's echo and
pinger with ``ssl=`` on both ends.

    python bench/tls_pingpong.py serve --loop docknet|uvloop|asyncio --host H --port P --cert C --key K
    python bench/tls_pingpong.py client --loop ... --host H --port P --ca C --seconds S --conns N --size B

The client verifies the server's certificate against ``--ca`` for the name
``--server-hostname``. Handshakes happen before the measured time (all
connections are made, then the warm-up): the figures are the per-message
cost of TLS records on each path, which is what a mesh with long-lived
TLS connections pays. Prints one JSON line as py_pingpong.py does.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import resource
import ssl
import time

from py_pingpong import Echo, Pinger, percentiles_us


def server_context(cert: str, key: str) -> ssl.SSLContext:
    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ctx.load_cert_chain(cert, key)
    return ctx


def client_context(ca: str) -> ssl.SSLContext:
    return ssl.create_default_context(cafile=ca)


def cpu_seconds() -> float:
    ru = resource.getrusage(resource.RUSAGE_SELF)
    return ru.ru_utime + ru.ru_stime


async def serve(args: argparse.Namespace) -> None:
    loop = asyncio.get_running_loop()
    host = args.host
    if args.loop == "docknet":
        ep = loop._docknet()  # type: ignore[attr-defined]
        if ep is None:
            raise SystemExit("tls_pingpong: DockNet is not available")
        host = ep.address
    server = await loop.create_server(Echo, host, args.port, ssl=server_context(args.cert, args.key))
    print(json.dumps({"event": "ready", "host": host}), flush=True)
    async with server:
        await server.serve_forever()


async def client(args: argparse.Namespace) -> None:
    loop = asyncio.get_running_loop()
    ctx = client_context(args.ca)
    pingers: list[Pinger] = []
    transports = []
    for _ in range(args.conns):
        done: asyncio.Future[None] = loop.create_future()
        t, p = await loop.create_connection(lambda d=done: Pinger(float("inf"), d, args.size), args.host, args.port,
                                            ssl=ctx, server_hostname=args.server_hostname)
        pingers.append(p)
        transports.append(t)
    # Each connection pings from the end of its handshake; the clock of the
    # measurement starts once all are made.
    end = time.perf_counter() + args.seconds + 0.3
    for p in pingers:
        p.end = end
    await asyncio.sleep(0.3)  # warm-up, not counted
    start, cpu0 = time.perf_counter(), cpu_seconds()
    counted = [len(p.samples) for p in pingers]
    await asyncio.gather(*(p.done for p in pingers))
    elapsed, cpu = time.perf_counter() - start, cpu_seconds() - cpu0
    samples = sorted(s for p, c in zip(pingers, counted) for s in p.samples[c:])
    n = len(samples)
    # Whose TLS this was (uvloop's compiled protocol or asyncio's).
    kind = type(transports[0])
    for t in transports:
        t.close()
    print(json.dumps({"event": "result", "loop": args.loop, "conns": args.conns, "size": args.size, "tls": True,
                      "round_trips": n, "seconds": round(elapsed, 3), "rt_per_s": round(n / elapsed, 1),
                      "p50_us": round(samples[n // 2] * 1e6, 1), "p99_us": round(samples[int(n * 0.99)] * 1e6, 1),
                      "pct_us": percentiles_us(samples), "client_cpu_s": round(cpu, 3),
                      "tls_transport": f"{kind.__module__}.{kind.__qualname__}"}),
          flush=True)


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("mode", choices=["serve", "client"])
    p.add_argument("--loop", choices=["docknet", "uvloop", "asyncio"], required=True)
    p.add_argument("--host", default="0.0.0.0")
    p.add_argument("--port", type=int, default=7343)
    p.add_argument("--cert")
    p.add_argument("--key")
    p.add_argument("--ca")
    p.add_argument("--server-hostname", default="bench.test")
    p.add_argument("--seconds", type=float, default=3.0)
    p.add_argument("--conns", type=int, default=1)
    p.add_argument("--size", type=int, default=64)
    args = p.parse_args()
    import aiodocknet

    aiodocknet.run_on(args.loop, serve(args) if args.mode == "serve" else client(args))


if __name__ == "__main__":
    main()
