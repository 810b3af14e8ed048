"""asyncio Protocol ping-pong (64 bytes by default): the Python path, end to end.

    python bench/py_pingpong.py serve --loop docknet|uvloop|asyncio --host H --port P
    python bench/py_pingpong.py client --loop ... --host H --port P --seconds S --conns N --size B

The server echoes; the client keeps one message of B bytes in flight per
connection and prints one JSON line: round trips/s, p50/p99 and the
percentiles 1..99 of the round-trip latency (``pct_us``, enough for a
distribution plot without keeping every sample). The same program runs on
DockNetLoop (through the master) and on uvloop or default asyncio over
kernel namespaces, so the rows compare like with like.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import socket
import time


class Echo(asyncio.Protocol):
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.t = transport

    def data_received(self, data: bytes) -> None:
        self.t.write(data)  # type: ignore[attr-defined]


class Pinger(asyncio.Protocol):
    def __init__(self, end: float, done: asyncio.Future[None], size: int) -> None:
        self.end = end
        self.done = done
        self.msg = b"p" * size
        self.got = 0
        self.samples: list[float] = []

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.t = transport
        self.sent = time.perf_counter()
        self.t.write(self.msg)  # type: ignore[attr-defined]

    def data_received(self, data: bytes) -> None:
        self.got += len(data)
        while self.got >= len(self.msg):
            self.got -= len(self.msg)
            now = time.perf_counter()
            self.samples.append(now - self.sent)
            if now >= self.end:
                if not self.done.done():
                    self.done.set_result(None)
                return
            self.sent = now
            self.t.write(self.msg)  # type: ignore[attr-defined]


async def serve(args: argparse.Namespace) -> None:
    loop = asyncio.get_running_loop()
    host = args.host
    if args.loop == "docknet":
        ep = loop._docknet()  # type: ignore[attr-defined]
        if ep is None:
            raise SystemExit("py_pingpong: DockNet is not available")
        # Both of the endpoint's addresses: the IPv6 rows dial the other.
        host = [ep.address] + ([ep.address6] if ep.address6 else [])
    server = await loop.create_server(Echo, host, args.port)
    print(json.dumps({"event": "ready", "host": host}), flush=True)
    async with server:
        await server.serve_forever()


async def client(args: argparse.Namespace) -> None:
    loop = asyncio.get_running_loop()
    end = time.perf_counter() + args.seconds + 0.3
    pingers = []
    for _ in range(args.conns):
        done: asyncio.Future[None] = loop.create_future()
        _, p = await loop.create_connection(lambda d=done: Pinger(end, d, args.size), args.host, args.port,
                                            family=socket.AF_INET6 if args.family == 6 else 0)
        pingers.append(p)
    await asyncio.sleep(0.3)  # warm-up, not counted
    start = time.perf_counter()
    counted = [len(p.samples) for p in pingers]
    await asyncio.gather(*(p.done for p in pingers))
    elapsed = time.perf_counter() - start
    samples = sorted(s for p, c in zip(pingers, counted) for s in p.samples[c:])
    n = len(samples)
    print(json.dumps({"event": "result", "loop": args.loop, "conns": args.conns, "size": args.size,
                      "round_trips": n, "seconds": round(elapsed, 3), "rt_per_s": round(n / elapsed, 1),
                      "p50_us": round(samples[n // 2] * 1e6, 1), "p99_us": round(samples[int(n * 0.99)] * 1e6, 1),
                      "pct_us": percentiles_us(samples)}),
          flush=True)


def percentiles_us(sorted_samples: list[float]) -> list[float]:
    """Percentiles 1..99 in µs (nearest rank, like p50/p99 above)."""
    n = len(sorted_samples)
    return [round(sorted_samples[n * q // 100] * 1e6, 1) for q in range(1, 100)]


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("mode", choices=["serve", "client"])
    p.add_argument("--loop", choices=["docknet", "uvloop", "asyncio"], required=True)
    p.add_argument("--host", default="0.0.0.0")
    p.add_argument("--port", type=int, default=7300)
    p.add_argument("--seconds", type=float, default=3.0)
    p.add_argument("--conns", type=int, default=1)
    p.add_argument("--size", type=int, default=64)
    p.add_argument("--family", type=int, choices=[0, 6], default=0, help="6: dial the host's IPv6 address")
    args = p.parse_args()
    import aiodocknet

    aiodocknet.run_on(args.loop, serve(args) if args.mode == "serve" else client(args))


if __name__ == "__main__":
    main()
