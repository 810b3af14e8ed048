"""The processes of the several-processes-per-endpoint tests.

    python tests/mp_peer.py server --echo-ip A     # one aiohttp worker (run_app, reuse_port=True)
    python tests/mp_peer.py load                   # echo servers, then the load on "go N K" lines

A server answers ``GET /pid`` with its pid. Before it serves it calls out
from its endpoint, as every worker of a real service does: an HTTP request
to the load process's echo server and a UDP datagram to its echo port, and
prints ``{"event": "probe", ...}`` with what came back; then ``ready``.

The load process is an endpoint of its own with an aiohttp echo server
(8081) and a UDP echo (9999); it prints ``ready``, then for each ``go N K
URL`` line on stdin sends N requests to URL from 32 tasks, each on a
connection of its own that it replaces every 10 requests (so the master
and the switch spread a thousand connections), prints ``progress`` once K
are answered (K 0: never), and ``result`` at the end: the pid that answered each
request, and for each failed attempt the pid its connection had been
answered by (null: none yet). A failed request is tried again on a new
connection until it is answered (at most five times).
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import json
import os
import sys
import time
from collections import Counter
from typing import Any

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from aiohttp import ClientSession, ClientTimeout, web  # noqa: E402

import aiodocknet  # noqa: E402
from aiodocknet.aiohttp import DockNetConnector  # noqa: E402
from aiodocknet.endpoint import ProcessEndpoint  # noqa: E402

PORT = 8080
ECHO_PORT = 8081
UDP_PORT = 9999
TASKS = 32
PER_CONNECTION = 10
TRIES = 5


def emit(event: str, **kw: Any) -> None:
    print(json.dumps({"event": event, **kw}), flush=True)


def endpoint() -> ProcessEndpoint:
    ep = ProcessEndpoint.get()
    if ep is None:
        raise SystemExit("mp_peer: DockNet is not available")
    return ep


# ---- a worker of the service ----

async def pid(request: web.Request) -> web.Response:
    return web.json_response({"pid": os.getpid()})


class _Echo(asyncio.DatagramProtocol):
    def __init__(self) -> None:
        self.got: asyncio.Future[bytes] = asyncio.get_running_loop().create_future()

    def datagram_received(self, data: bytes, addr: Any) -> None:
        if not self.got.done():
            self.got.set_result(data)


async def probe(echo_ip: str) -> dict[str, Any]:
    """What this worker's own outgoing connection and datagram got back."""
    loop = asyncio.get_running_loop()
    out: dict[str, Any] = {"pid": os.getpid()}
    async with ClientSession(connector=DockNetConnector()) as s:
        async with s.get(f"http://{echo_ip}:{ECHO_PORT}/hello", timeout=ClientTimeout(total=10)) as r:
            out["http"] = await r.json()
    transport, proto = await loop.create_datagram_endpoint(_Echo, remote_addr=(echo_ip, UDP_PORT))
    try:
        want = f"from {os.getpid()}".encode()
        for _ in range(20):  # datagrams may be lost; one answer is enough
            transport.sendto(want)
            try:
                got = await asyncio.wait_for(asyncio.shield(proto.got), 0.25)
                out["udp"] = got.decode()
                break
            except TimeoutError:
                continue
        out["udp_local_port"] = transport.get_extra_info("sockname")[1]
    finally:
        transport.close()
    return out


def serve(args: argparse.Namespace) -> None:
    ep = endpoint()

    async def on_startup(app: web.Application) -> None:
        try:
            emit("probe", ok=True, **await probe(args.echo_ip))
        except Exception as exc:
            emit("probe", ok=False, pid=os.getpid(), error=repr(exc))

    def ready(_banner: str) -> None:
        emit("ready", pid=os.getpid(), address=ep.address, port=PORT)

    app = web.Application()
    app.router.add_get("/pid", pid)
    app.on_startup.append(on_startup)
    # What a pre-fork server's workers each do: the same port, reuse_port.
    web.run_app(app, port=PORT, reuse_port=True, print=ready, loop=aiodocknet.new_event_loop(),
                access_log=None, handle_signals=True)


# ---- the load ----

async def hello(request: web.Request) -> web.Response:
    peer = request.transport.get_extra_info("peername") if request.transport else None
    return web.json_response({"hello": list(peer) if peer else None})


class _EchoServer(asyncio.DatagramProtocol):
    def connection_made(self, transport: Any) -> None:
        self.transport = transport

    def datagram_received(self, data: bytes, addr: Any) -> None:
        self.transport.sendto(data, addr)


async def run_load(url: str, n: int, report_at: int) -> dict[str, Any]:
    numbers = itertools.count()
    answered: list[int | None] = [None] * n
    failures: list[dict[str, Any]] = []
    done = 0
    reported = False
    started = time.monotonic()

    async def task() -> None:
        nonlocal done, reported
        session: ClientSession | None = None
        used = 0
        last: int | None = None
        try:
            while (i := next(numbers)) < n:
                for attempt in range(TRIES):
                    if session is None or used >= PER_CONNECTION:
                        if session is not None:
                            await session.close()
                        session = ClientSession(connector=DockNetConnector(limit=1))
                        used, last = 0, None
                    try:
                        async with session.get(url, timeout=ClientTimeout(total=15)) as r:
                            body = await r.json()
                        answered[i] = last = int(body["pid"])
                        used += 1
                        break
                    except Exception as exc:
                        failures.append({"request": i, "attempt": attempt, "conn_pid": last,
                                         "error": type(exc).__name__, "t": time.monotonic() - started})
                        await session.close()
                        session = None
                done += 1
                if not reported and 0 < report_at <= done:
                    reported = True
                    emit("progress", done=done)
        finally:
            if session is not None:
                await session.close()

    await asyncio.gather(*(task() for _ in range(TASKS)))
    elapsed = time.monotonic() - started
    return {"answered": answered, "failures": failures, "seconds": elapsed,
            "by_pid": {str(k): v for k, v in Counter(answered).items()}}


async def load() -> None:
    loop = asyncio.get_running_loop()
    ep = endpoint()
    app = web.Application()
    app.router.add_get("/hello", hello)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    await web.TCPSite(runner, ep.address, ECHO_PORT).start()
    udp, _ = await loop.create_datagram_endpoint(_EchoServer, local_addr=(ep.address, UDP_PORT))
    emit("ready", pid=os.getpid(), address=ep.address)
    reader = asyncio.StreamReader()
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin)
    while line := await reader.readline():
        words = line.decode().split()
        if words and words[0] == "go":
            emit("result", **await run_load(words[3], int(words[1]), int(words[2])))
    udp.close()
    await runner.cleanup()


def main() -> None:
    p = argparse.ArgumentParser()
    sub = p.add_subparsers(dest="role", required=True)
    srv = sub.add_parser("server")
    srv.add_argument("--echo-ip", required=True)
    sub.add_parser("load")
    args = p.parse_args()
    if args.role == "server":
        serve(args)
    else:
        aiodocknet.run(load())


if __name__ == "__main__":
    main()
