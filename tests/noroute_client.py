"""A DockNetLoop client for tests/test_no_master.py: tries every way out to
DockNet addresses and prints, per attempt, the errno and how long it took.

``python tests/noroute_client.py ADDRESS...`` tries each address with no
master to be had; with ``--attach`` it first attaches (through a wildcard
server), prints ``attached``, waits for a line on stdin (the test stops
the master meanwhile), lets the loop see the master gone, then tries.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import socket
import sys
import time
from collections.abc import Awaitable, Callable
from typing import Any

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from aiodocknet.loop import DockNetLoop  # noqa: E402


def say(**kw: Any) -> None:
    print(json.dumps(kw), flush=True)


async def attempt(how: str, address: str, run: Callable[[], Awaitable[Any]]) -> None:
    start = time.monotonic()
    try:
        await asyncio.wait_for(run(), 5)
        outcome: dict[str, Any] = {"errno": None}
    except OSError as exc:
        outcome = {"errno": exc.errno, "message": str(exc)}
    except asyncio.TimeoutError:
        outcome = {"errno": None, "message": "timed out"}
    say(event="attempt", how=how, address=address, seconds=time.monotonic() - start, **outcome)


async def try_all(address: str) -> None:
    loop = asyncio.get_running_loop()
    await attempt("open_connection", address, lambda: asyncio.open_connection(address, 80))
    await attempt("create_connection", address,
                  lambda: loop.create_connection(asyncio.Protocol, address, 443))
    await attempt("datagram remote_addr", address,
                  lambda: loop.create_datagram_endpoint(asyncio.DatagramProtocol, remote_addr=(address, 53)))
    s = socket.socket(socket.AF_INET6 if ":" in address else socket.AF_INET, socket.SOCK_STREAM)
    s.setblocking(False)
    try:
        await attempt("sock_connect", address, lambda: loop.sock_connect(s, (address, 80)))
    finally:
        s.close()
    await attempt("datagram sendto", address, lambda: unconnected_sendto(address))


class Errors(asyncio.DatagramProtocol):
    def __init__(self) -> None:
        self.error: asyncio.Future[Exception] = asyncio.get_running_loop().create_future()

    def error_received(self, exc: Exception) -> None:
        if not self.error.done():
            self.error.set_result(exc)


async def unconnected_sendto(address: str) -> None:
    """A datagram from a socket bound to the wildcard, with no remote: the
    refusal comes to the protocol, as the kernel's errors for datagrams do."""
    transport, protocol = await asyncio.get_running_loop().create_datagram_endpoint(
        Errors, local_addr=("::" if ":" in address else "0.0.0.0", 0))
    try:
        transport.sendto(b"x", (address, 9))
        raise await asyncio.wait_for(protocol.error, 2)
    finally:
        transport.close()


async def main(args: argparse.Namespace) -> None:
    if args.attach:
        server = await asyncio.start_server(lambda r, w: None, "0.0.0.0", 0)
        say(event="attached")
        await asyncio.get_running_loop().run_in_executor(None, sys.stdin.readline)
        # The loop learns of the master's end from its control connection.
        await asyncio.sleep(0.5)
        server.close()
    for address in args.addresses:
        await try_all(address)
    say(event="done")


if __name__ == "__main__":
    p = argparse.ArgumentParser()
    p.add_argument("addresses", nargs="+")
    p.add_argument("--attach", action="store_true")
    loop = DockNetLoop()
    try:
        loop.run_until_complete(main(p.parse_args()))
    finally:
        loop.close()
